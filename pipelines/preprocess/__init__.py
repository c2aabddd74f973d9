"""The Ray preprocessing job: annotations + videos -> WebDataset shards, manifest, stats.

Import :func:`pipelines.preprocess.job.run_preprocess` for the job; this package import stays
light (no Ray); storage lives in :mod:`pipelines.io`, below every stage.
"""
