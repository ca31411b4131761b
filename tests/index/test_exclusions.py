"""Per-query exclusions (``recsys.index.exclusions``): excluded ids never come back, ``k`` is still filled, the answer equals brute force."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.index import MISSING_INT_ID, ItemIndex, exclusions
from tests.index.random_data import clustered, normalised, random_vectors


def test_excluded_ids_never_returned_and_k_still_filled(flat: ItemIndex, items: np.ndarray) -> None:
    queries = items[:5]
    _, top = flat.search(queries, 60)
    exclude = [top[i, : 40 + 5 * i] for i in range(5)]  # exclude most of each query's own top list
    exclude[2] = np.concatenate([exclude[2], np.array([999_999])])  # unknown ids are ignored
    scores, ids = flat.search(queries, 30, exclude=exclude)
    for row, banned in zip(ids, exclude):
        assert not set(row.tolist()) & set(banned.tolist())
    assert np.isfinite(scores).all() and (ids != MISSING_INT_ID).all()
    # the answer equals brute force over the non-excluded items
    s = normalised(queries) @ normalised(items).T
    for i in range(5):
        s[i, exclude[i][exclude[i] < 8000] // 10] = -np.inf
    want = np.argsort(-s, axis=1)[:, :30] * 10
    for got, w in zip(ids, want):
        assert set(got.tolist()) == set(w.tolist())


@pytest.mark.parametrize("id_offset", [0, 10_000_000_000])  # dense ids (table lookup) and sparse ones (sorted lookup)
@pytest.mark.parametrize("mask_bytes", [1 << 23, 3000])  # one mask block, or a block of a few queries at a time
def test_many_query_exclusions_match_brute_force(monkeypatch: pytest.MonkeyPatch, id_offset: int, mask_bytes: int) -> None:
    monkeypatch.setattr(exclusions, "_MASK_BYTES", mask_bytes)
    monkeypatch.setattr(exclusions._scratch, "mask", None, raising=False)
    rng = np.random.default_rng(3)
    x = random_vectors(900, seed=3)
    ids = np.arange(900, dtype=np.int64) * 3 + id_offset
    index = ItemIndex.build(x, ids, index_type="flat", model_fingerprint="m", device="cpu", progress=False)
    index.remove_items(ids[:50].tolist())  # removed items leave holes in the faiss id space
    queries = random_vectors(120, seed=4)
    exclude = [rng.choice(ids, size=rng.integers(0, 60), replace=True) for _ in range(120)]  # duplicates too
    exclude[7] = np.zeros(0, dtype=np.int64)
    exclude[8] = np.concatenate([exclude[8], np.array([id_offset + 1, -5])])  # ids not in the index are ignored
    scores, got = index.search(queries, 25, exclude=exclude)
    s = normalised(queries) @ normalised(x).T
    s[:, :50] = -np.inf
    for q in range(120):
        known = exclude[q][np.isin(exclude[q], ids)]
        s[q, (known - id_offset) // 3] = -np.inf
    want = ids[np.argsort(-s, axis=1, kind="stable")[:, :25]]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(scores, np.take_along_axis(s, np.argsort(-s, axis=1, kind="stable")[:, :25], axis=1), atol=1e-5)


@pytest.mark.parametrize("index_type", ["ivf", "hnsw"])
def test_exclusions_fill_k_on_approximate_indexes(index_type: str) -> None:
    x = clustered(1500, seed=5)
    index = ItemIndex.build(x, np.arange(1500), index_type=index_type, model_fingerprint="m", device="cpu", progress=False)
    _, top = index.search(x[:3], 300)
    scores, ids = index.search(x[:3], 50, exclude=[top[0], top[1, :10], None])
    assert np.isfinite(scores).all()
    assert not set(ids[0].tolist()) & set(top[0].tolist())
    assert len(set(ids[0].tolist())) == 50


def test_padding_only_when_catalogue_too_small() -> None:
    index = ItemIndex.build(random_vectors(5), ["a", "b", "c", "d", "e"], index_type="flat", model_fingerprint="m", device="cpu", progress=False)
    scores, ids = index.search(random_vectors(2, seed=9), 4, exclude=[["a", "b"], None])
    assert np.isfinite(scores[0, :3]).all() and scores[0, 3] == -np.inf and ids[0, 3] is None
    assert np.isfinite(scores[1]).all() and None not in ids[1].tolist()
    assert not {"a", "b"} & set(ids[0, :3].tolist())
    int_index = ItemIndex.build(random_vectors(3), [1, 2, 3], index_type="flat", model_fingerprint="m", device="cpu", progress=False)
    scores, ids = int_index.search(random_vectors(1, seed=9), 5)
    assert scores[0, 3:].tolist() == [-np.inf, -np.inf] and ids[0, 3:].tolist() == [MISSING_INT_ID] * 2
