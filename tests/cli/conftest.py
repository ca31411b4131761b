from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsys.data.dataset import Dataset


@pytest.fixture(scope="session")
def tiny_dataset_dir(tmp_path_factory):
    """60 users x 40 items with block structure and ratings; small enough for every CLI test."""
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(60), 12)
    block = (users % 2) * 20
    items = block + np.concatenate([rng.choice(20, 12, replace=False) for _ in range(60)])
    ts = np.tile(np.arange(12), 60) * 3600 + 1_700_000_000
    inter = pl.DataFrame({"user_id": users, "item_id": items, "ts": ts, "rating": rng.integers(1, 6, len(users)).astype(float)})
    inter = inter.select("user_id", "item_id", pl.from_epoch("ts", time_unit="s").dt.cast_time_unit("us").dt.replace_time_zone("UTC").alias("timestamp"), "rating")
    catalogue = pl.DataFrame({"item_id": np.arange(40), "title": [f"item {i}" for i in range(40)]})
    path = tmp_path_factory.mktemp("tiny") / "ds"
    Dataset(inter.cast({"user_id": pl.Int64, "item_id": pl.Int64}), catalogue.cast({"item_id": pl.Int64})).save(path, source={"name": "tiny"})
    return path
