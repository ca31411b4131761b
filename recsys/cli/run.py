"""``recsys run``: run a pipeline TOML's stages in order, skipping up-to-date ones."""
