"""Library code for the platform's stages: data, media, shards, preprocessing, training, registry."""
