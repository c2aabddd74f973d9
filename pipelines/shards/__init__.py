"""WebDataset shards as the shard contract defines them: names, writer, reader, manifest."""
from pipelines.shards.contract import FORMAT_VERSION, assign_keys, sample_key, shard_name

__all__ = ["FORMAT_VERSION", "assign_keys", "sample_key", "shard_name"]
