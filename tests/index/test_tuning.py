"""Recall tuning of approximate indexes (``recsys.index.tuning``): the recorded recall@100 is high and honest."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recsys.errors import RecsysError
from recsys.index import ItemIndex
from recsys.index.tuning import tune
from tests.index.random_data import brute_force, clustered


@pytest.mark.parametrize("index_type", ["ivf", "hnsw"])
def test_approximate_recall_recorded_and_high(index_type: str, tmp_path) -> None:
    x = clustered(6000, seed=6)
    index = ItemIndex.build(x, np.arange(6000), index_type=index_type, model_fingerprint="m", device="cpu", progress=False)
    info = index.info()
    assert info["type"] == index_type and info["recall_at_100"] >= 0.9
    assert ("nprobe" in info["params"]) if index_type == "ivf" else ("ef_search" in info["params"])
    manifest = json.loads((index.save(tmp_path / "a") / "manifest.json").read_text())
    assert manifest["recall_at_100"] == info["recall_at_100"]
    # the recorded figure is honest: re-measure against brute force
    queries = x[:200]
    _, ids = index.search(queries, 100)
    _, want = brute_force(x, queries, 100)
    measured = np.mean([len(set(a.tolist()) & set(b.tolist())) / 100 for a, b in zip(ids, want)])
    assert measured >= 0.9


def test_tune_takes_the_smallest_power_of_two_that_reaches_the_target() -> None:
    asked: list[int] = []

    def recall_of(v: int) -> float:
        asked.append(v)
        return min(1.0, v / 40)  # reaches 0.95 from 38 on

    assert tune(recall_of, given=None, start=4, limit=1024, target=0.95, what="nprobe") == (64, 1.0)
    assert asked == [4, 8, 16, 32, 64]
    assert tune(recall_of, given=None, start=4, limit=20, target=0.95, what="nprobe") == (20, 0.5)  # capped: best it can
    assert tune(recall_of, given=10, start=4, limit=1024, target=0.95, what="nprobe") == (10, 0.25)
    with pytest.raises(RecsysError, match="nprobe must be at least 1"):
        tune(recall_of, given=0, start=4, limit=1024, target=0.95, what="nprobe")
