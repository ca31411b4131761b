"""The co-occurrence candidate source equals the harness's ItemKNN, fits in blocks, and saves/loads safely."""

from __future__ import annotations

import json

import numpy as np
import pytest

import recsys.service.cooccurrence as co
from recsys.service.cooccurrence import CooccurrenceSource
from recsys.data.demo import generate_demo
from recsys.errors import ManifestMismatchError


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    ds, src = generate_demo(users=120, items=80, seed=5, interactions_per_user=10)
    return ds.save(tmp_path_factory.mktemp("co") / "ds", source=src)


def test_scores_equal_the_harness_itemknn(demo):
    from recsys.evaluation.split import encode, leave_one_out
    from recsys.models.itemknn import ItemKNN

    split = leave_one_out(encode(demo))
    knn = ItemKNN(k=7).fit(split.train_full)
    ids = split.train_full.items["item_id"].to_list()
    source = CooccurrenceSource.from_matrix(split.train_full.items["item_id"], split.train_full.matrix, neighbours=7)
    expected = knn.score(split.test)
    for case in range(0, len(split.test), 17):
        hist = [ids[i] for i in split.test.history.row(case)]
        got_ids, got = source.candidates(hist, 1000)
        want = expected[case].copy()
        want[split.test.history.row(case)] = 0
        by_id = dict(zip(ids, want))
        assert got_ids, "every history has co-occurring items here"
        np.testing.assert_allclose(got, [by_id[i] for i in got_ids], rtol=1e-4, atol=1e-6)
        # and every positive ItemKNN score is among the candidates
        assert {i for i, s in by_id.items() if s > 1e-6} == set(got_ids)


def test_block_fit_equals_one_block(demo, monkeypatch):
    whole = CooccurrenceSource.fit(demo, neighbours=5).matrix
    monkeypatch.setattr(co, "BLOCK_FLOATS", 3 * 80)  # three rows per block
    blocked = CooccurrenceSource.fit(demo, neighbours=5).matrix
    assert (whole != blocked).nnz == 0


def test_candidates_exclude_history_and_given_items(demo):
    source = CooccurrenceSource.fit(demo, neighbours=20)
    hist = demo.interactions["item_id"].head(5).to_list()
    ids, scores = source.candidates(hist, 10)
    assert len(ids) == 10 and not set(hist) & set(ids) and list(scores) == sorted(scores, reverse=True)
    ids2, _ = source.candidates(hist, 10, exclude=ids[:3])
    assert not set(ids[:3]) & set(ids2)
    assert source.candidates([10**9], 5) == ([], pytest.approx(np.zeros(0)))


def test_save_load_round_trip_and_mismatch(demo, tmp_path):
    source = CooccurrenceSource.fit(demo, neighbours=5)
    source.save(tmp_path / "co")
    again = CooccurrenceSource.load(tmp_path / "co", dataset_fingerprint=demo.fingerprint)
    assert (again.matrix != source.matrix).nnz == 0 and again.item_ids.to_list() == source.item_ids.to_list()
    with pytest.raises(ManifestMismatchError, match="rebuild"):
        CooccurrenceSource.load(tmp_path / "co", dataset_fingerprint="f" * 16)
    (tmp_path / "co" / "items.parquet").write_bytes(b"garbage")
    with pytest.raises(Exception, match="fingerprint"):
        CooccurrenceSource.load(tmp_path / "co")
    manifest = json.loads((tmp_path / "co" / "manifest.json").read_text())
    assert manifest["kind"] == "cooccurrence" and manifest["neighbours"] == 5
