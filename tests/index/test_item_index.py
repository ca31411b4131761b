"""ItemIndex against real FAISS on small random data."""

from __future__ import annotations

import json

import faiss
import numpy as np
import polars as pl
import pytest

from recsys.errors import ManifestMismatchError, RecsysError
from recsys.index import backend
from recsys.index import faiss_index as fi
from recsys.index.faiss_index import MISSING_INT_ID, ItemIndex

DIM = 24


def _random(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def _clustered(n: int, seed: int = 0, clusters: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, DIM)).astype(np.float32)
    return (centres[rng.integers(0, clusters, n)] + 0.35 * rng.standard_normal((n, DIM))).astype(np.float32)


def _normalised(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute_force(items: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    s = _normalised(queries) @ _normalised(items).T
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, top, axis=1), top


@pytest.fixture(scope="module")
def items() -> np.ndarray:
    return _random(800)


@pytest.fixture()
def flat(items: np.ndarray) -> ItemIndex:
    return ItemIndex.build(items, np.arange(800) * 10, index_type="flat", model_fingerprint="model-a", device="cpu", progress=False)


def test_exact_search_equals_brute_force_top_k(flat: ItemIndex, items: np.ndarray) -> None:
    queries = _random(30, seed=1)
    scores, ids = flat.search(queries, 10)
    want_scores, want_rows = _brute_force(items, queries, 10)
    assert scores.dtype == np.float32 and ids.dtype == np.int64 and ids.shape == (30, 10)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)
    for got, want in zip(ids, want_rows * 10):
        assert set(got.tolist()) == set(want.tolist())
    assert flat.info()["type"] == "flat" and "recall_at_100" not in flat.info()


def test_auto_is_exact_for_small_catalogues(items: np.ndarray) -> None:
    index = ItemIndex.build(items, np.arange(800), model_fingerprint="m", device="cpu", progress=False)
    assert index.index_type == "flat"


def test_save_load_gives_identical_results(flat: ItemIndex, tmp_path) -> None:
    queries = _random(12, seed=2)
    before = flat.search(queries, 20, exclude=[np.array([0, 10])] * 12)
    flat.save(tmp_path / "idx")
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["kind"] == "index" and manifest["model_fingerprint"] == "model-a"
    assert manifest["dimension"] == DIM and manifest["count"] == 800 and manifest["metric"] == "inner_product"
    loaded = ItemIndex.load(tmp_path / "idx", expected_model_fingerprint="model-a", device="cpu")
    after = loaded.search(queries, 20, exclude=[np.array([0, 10])] * 12)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    assert pl.read_parquet(tmp_path / "idx" / "item_ids.parquet").schema["item_id"] == pl.Int64


@pytest.mark.parametrize("index_type", ["flat", "ivf", "hnsw"])
def test_add_replace_remove_without_rebuild(index_type: str, tmp_path) -> None:
    x = _clustered(2000, seed=3)
    ids = [f"item-{i}" for i in range(2000)]
    index = ItemIndex.build(x, ids, index_type=index_type, model_fingerprint="m", device="cpu", progress=False)

    # a new item becomes retrievable
    new = _random(1, seed=4) * 5
    counts = index.add_items(new, ["new-item"])
    assert counts == {"added": 1, "replaced": 0} and len(index) == 2001
    _, got = index.search(new, 1)
    assert got[0, 0] == "new-item"

    # replacing an item changes its vector, keeps the count, and the old vector no longer answers for it
    old_vec = index.get_vectors(["item-7"])[0]
    replacement = -x[7:8]
    assert index.add_items(replacement, ["item-7"]) == {"added": 0, "replaced": 1}
    assert len(index) == 2001
    np.testing.assert_allclose(index.get_vectors(["item-7"])[0], _normalised(replacement)[0], atol=1e-6)
    assert not np.allclose(old_vec, index.get_vectors(["item-7"])[0])
    _, got = index.search(x[7:8], 50)
    assert "item-7" not in got[0].tolist()
    _, got = index.search(replacement, 1)
    assert got[0, 0] == "item-7"

    # removing makes an item unreachable, also after a save/load round trip
    assert index.remove_items(["item-9", "new-item"]) == 2
    assert len(index) == 1999 and "item-9" not in index
    _, got = index.search(np.vstack([x[9], new[0]]), 20)
    assert "item-9" not in got.tolist()[0] and "new-item" not in got.tolist()[1]
    loaded = ItemIndex.load(index.save(tmp_path / index_type), device="cpu")
    assert len(loaded) == 1999
    _, got = loaded.search(np.vstack([x[9], new[0]]), 20)
    assert "item-9" not in got.tolist()[0] and "new-item" not in got.tolist()[1]
    if index_type == "hnsw":
        assert loaded.info()["tombstones"] == 3  # old item-7, item-9, new-item
    # a loaded index stays updatable
    loaded.remove_items(["item-11"])
    loaded.add_items(x[9:10], ["item-9"])
    _, got = loaded.search(x[9:11], 1)
    assert got[0, 0] == "item-9" and "item-11" not in loaded.search(x[11:12], 20)[1][0].tolist()


def test_remove_unknown_id_names_it_and_changes_nothing(flat: ItemIndex) -> None:
    with pytest.raises(RecsysError, match="item id 12345"):
        flat.remove_items([0, 12345])
    assert len(flat) == 800 and 0 in flat


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
    s = _normalised(queries) @ _normalised(items).T
    for i in range(5):
        s[i, exclude[i][exclude[i] < 8000] // 10] = -np.inf
    want = np.argsort(-s, axis=1)[:, :30] * 10
    for got, w in zip(ids, want):
        assert set(got.tolist()) == set(w.tolist())


@pytest.mark.parametrize("id_offset", [0, 10_000_000_000])  # dense ids (table lookup) and sparse ones (sorted lookup)
@pytest.mark.parametrize("mask_bytes", [1 << 23, 3000])  # one mask block, or a block of a few queries at a time
def test_many_query_exclusions_match_brute_force(monkeypatch: pytest.MonkeyPatch, id_offset: int, mask_bytes: int) -> None:
    monkeypatch.setattr(fi, "_MASK_BYTES", mask_bytes)
    monkeypatch.setattr(fi._scratch, "mask", None, raising=False)
    rng = np.random.default_rng(3)
    x = _random(900, seed=3)
    ids = np.arange(900, dtype=np.int64) * 3 + id_offset
    index = ItemIndex.build(x, ids, index_type="flat", model_fingerprint="m", device="cpu", progress=False)
    index.remove_items(ids[:50].tolist())  # removed items leave holes in the faiss id space
    queries = _random(120, seed=4)
    exclude = [rng.choice(ids, size=rng.integers(0, 60), replace=True) for _ in range(120)]  # duplicates too
    exclude[7] = np.zeros(0, dtype=np.int64)
    exclude[8] = np.concatenate([exclude[8], np.array([id_offset + 1, -5])])  # ids not in the index are ignored
    scores, got = index.search(queries, 25, exclude=exclude)
    s = _normalised(queries) @ _normalised(x).T
    s[:, :50] = -np.inf
    for q in range(120):
        known = exclude[q][np.isin(exclude[q], ids)]
        s[q, (known - id_offset) // 3] = -np.inf
    want = ids[np.argsort(-s, axis=1, kind="stable")[:, :25]]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(scores, np.take_along_axis(s, np.argsort(-s, axis=1, kind="stable")[:, :25], axis=1), atol=1e-5)


@pytest.mark.parametrize("index_type", ["ivf", "hnsw"])
def test_exclusions_fill_k_on_approximate_indexes(index_type: str) -> None:
    x = _clustered(1500, seed=5)
    index = ItemIndex.build(x, np.arange(1500), index_type=index_type, model_fingerprint="m", device="cpu", progress=False)
    _, top = index.search(x[:3], 300)
    scores, ids = index.search(x[:3], 50, exclude=[top[0], top[1, :10], None])
    assert np.isfinite(scores).all()
    assert not set(ids[0].tolist()) & set(top[0].tolist())
    assert len(set(ids[0].tolist())) == 50


def test_padding_only_when_catalogue_too_small() -> None:
    index = ItemIndex.build(_random(5), ["a", "b", "c", "d", "e"], index_type="flat", model_fingerprint="m", device="cpu", progress=False)
    scores, ids = index.search(_random(2, seed=9), 4, exclude=[["a", "b"], None])
    assert np.isfinite(scores[0, :3]).all() and scores[0, 3] == -np.inf and ids[0, 3] is None
    assert np.isfinite(scores[1]).all() and None not in ids[1].tolist()
    assert not {"a", "b"} & set(ids[0, :3].tolist())
    int_index = ItemIndex.build(_random(3), [1, 2, 3], index_type="flat", model_fingerprint="m", device="cpu", progress=False)
    scores, ids = int_index.search(_random(1, seed=9), 5)
    assert scores[0, 3:].tolist() == [-np.inf, -np.inf] and ids[0, 3:].tolist() == [MISSING_INT_ID] * 2


@pytest.mark.parametrize("index_type", ["ivf", "hnsw"])
def test_approximate_recall_recorded_and_high(index_type: str, tmp_path) -> None:
    x = _clustered(6000, seed=6)
    index = ItemIndex.build(x, np.arange(6000), index_type=index_type, model_fingerprint="m", device="cpu", progress=False)
    info = index.info()
    assert info["type"] == index_type and info["recall_at_100"] >= 0.9
    assert ("nprobe" in info["params"]) if index_type == "ivf" else ("ef_search" in info["params"])
    manifest = json.loads((index.save(tmp_path / "a") / "manifest.json").read_text())
    assert manifest["recall_at_100"] == info["recall_at_100"]
    # the recorded figure is honest: re-measure against brute force
    queries = x[:200]
    _, ids = index.search(queries, 100)
    _, want = _brute_force(x, queries, 100)
    measured = np.mean([len(set(a.tolist()) & set(b.tolist())) / 100 for a, b in zip(ids, want)])
    assert measured >= 0.9


def test_mismatched_model_fingerprint_refused(flat: ItemIndex, tmp_path) -> None:
    flat.save(tmp_path / "idx")
    with pytest.raises(ManifestMismatchError, match="model-a.*model-b"):
        ItemIndex.load(tmp_path / "idx", expected_model_fingerprint="model-b", device="cpu")
    with pytest.raises(ManifestMismatchError):
        fi.add_items_to_saved_index(tmp_path / "idx", _random(1), [5], model_fingerprint="model-b")


def test_failed_save_does_not_clobber_existing_index(flat: ItemIndex, tmp_path, monkeypatch) -> None:
    target = tmp_path / "idx"
    flat.save(target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    flat.remove_items([0, 10, 20])

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(fi, "write_manifest", boom)
    with pytest.raises(OSError, match="disk full"):
        flat.save(target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]  # no temporary directory left behind
    assert len(ItemIndex.load(target, device="cpu")) == 800


def test_corrupted_or_missing_files_named(flat: ItemIndex, tmp_path) -> None:
    target = flat.save(tmp_path / "idx")
    original = (target / "index.faiss").read_bytes()
    data = bytearray(original)
    data[100] ^= 0xFF
    (target / "index.faiss").write_bytes(bytes(data))
    with pytest.raises(RecsysError, match="index.faiss"):
        ItemIndex.load(target, device="cpu")
    (target / "index.faiss").write_bytes(b"garbage")
    with pytest.raises(RecsysError, match="index.faiss"):
        ItemIndex.load(target, device="cpu", verify=False)
    (target / "index.faiss").write_bytes(original)
    (target / "item_ids.parquet").write_bytes(b"not parquet")
    for verify in (True, False):
        with pytest.raises(RecsysError, match="item_ids.parquet"):
            ItemIndex.load(target, device="cpu", verify=verify)
    (target / "item_ids.parquet").unlink()
    with pytest.raises(RecsysError, match="item_ids.parquet"):
        ItemIndex.load(target, device="cpu")


@pytest.mark.parametrize(
    ("vectors", "ids", "message"),
    [
        (np.zeros((3, 0), np.float32), [1, 2, 3], "dimension 0"),
        (np.ones((3, 4), np.float64), [1, 2, 3], "float32"),
        (np.ones(4, np.float32), [1], "2-D"),
        (np.ones((3, 4), np.float32), [1, 2], "3 rows but there are 2"),
        (np.array([[1, 0], [np.nan, 1]], np.float32), ["a", "b"], "item id 'b'.*non-finite"),
        (np.ones((3, 4), np.float32), ["a", "b", "a"], "item id 'a' appears more than once"),
        (np.array([[1, 0], [0, 0]], np.float32), [1, 2], "item id 2 is the zero vector"),
    ],
)
def test_build_validation(vectors, ids, message) -> None:
    with pytest.raises(RecsysError, match=message):
        ItemIndex.build(vectors, ids, index_type="flat", model_fingerprint="m", device="cpu", progress=False)


def test_vectors_are_normalised_and_wrong_id_type_refused(flat: ItemIndex) -> None:
    index = ItemIndex.build(np.array([[3, 4]], np.float32), ["x"], index_type="flat", model_fingerprint="m", device="cpu", progress=False)
    np.testing.assert_allclose(index.get_vectors(["x"]), [[0.6, 0.8]], atol=1e-6)
    with pytest.raises(RecsysError, match="String"):
        flat.add_items(_random(1), ["not-an-int"])
    with pytest.raises(RecsysError, match="dimension"):
        flat.search(np.ones((1, DIM + 1), np.float32), 3)


def test_backend_knows_which_types_run_on_gpu() -> None:
    assert backend.supports_gpu(faiss.IndexIDMap2(faiss.IndexFlatIP(4)))
    assert not backend.supports_gpu(faiss.IndexIDMap2(faiss.IndexHNSWFlat(4, 8, faiss.METRIC_INNER_PRODUCT)))
    assert backend.to_cpu(faiss.IndexFlatIP(4)).d == 4


def test_gpu_requested_without_gpu_is_a_clear_error() -> None:
    if backend.gpu_available():
        pytest.skip("a GPU is available here")
    with pytest.raises(RecsysError, match="gpu"):
        backend.resolve_device("gpu")
    assert backend.resolve_device("auto") == "cpu"
    with pytest.raises(RecsysError, match="unknown device"):
        backend.resolve_device("tpu")
    with pytest.raises(RecsysError, match="gpu"):
        ItemIndex.build(_random(10), np.arange(10), index_type="flat", model_fingerprint="m", device="gpu", progress=False)


@pytest.mark.skipif(
    not backend.gpu_available(),
    reason="needs faiss-gpu and a visible GPU (installed FAISS has GPU support: "
    f"{backend.faiss_has_gpu_support()}, GPUs seen: {backend.num_gpus()})",
)
def test_gpu_search_matches_cpu(items: np.ndarray, tmp_path) -> None:
    ids = np.arange(800)
    cpu = ItemIndex.build(items, ids, index_type="flat", model_fingerprint="m", device="cpu", progress=False)
    gpu = ItemIndex.build(items, ids, index_type="flat", model_fingerprint="m", device="gpu", progress=False)
    assert gpu.info()["device"] == "gpu"
    queries = _random(16, seed=11)
    s_cpu, i_cpu = cpu.search(queries, 10, exclude=[ids[:5]] * 16)
    s_gpu, i_gpu = gpu.search(queries, 10, exclude=[ids[:5]] * 16)
    np.testing.assert_allclose(s_cpu, s_gpu, atol=1e-4)
    assert (i_cpu == i_gpu).mean() > 0.99
    gpu.remove_items([int(i_gpu[0, 0])])  # mutations drop the GPU replica; the next search re-clones
    assert int(i_gpu[0, 0]) not in gpu.search(queries[:1], 10)[1][0].tolist()
    loaded = ItemIndex.load(gpu.save(tmp_path / "g"), device="gpu")
    np.testing.assert_array_equal(loaded.search(queries, 10)[1], gpu.search(queries, 10)[1])
    assert isinstance(backend.to_cpu(backend.to_gpu(faiss.IndexFlatIP(DIM))), faiss.IndexFlatIP)
