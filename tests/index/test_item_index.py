"""ItemIndex against real FAISS on small random data: exact search, updates without a rebuild, devices."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from recsys.errors import RecsysError
from recsys.index import ItemIndex, backend
from tests.index.random_data import DIM, brute_force, clustered, normalised, random_vectors


def test_exact_search_equals_brute_force_top_k(flat: ItemIndex, items: np.ndarray) -> None:
    queries = random_vectors(30, seed=1)
    scores, ids = flat.search(queries, 10)
    want_scores, want_rows = brute_force(items, queries, 10)
    assert scores.dtype == np.float32 and ids.dtype == np.int64 and ids.shape == (30, 10)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)
    for got, want in zip(ids, want_rows * 10):
        assert set(got.tolist()) == set(want.tolist())
    assert flat.info()["type"] == "flat" and "recall_at_100" not in flat.info()


def test_auto_is_exact_for_small_catalogues(items: np.ndarray) -> None:
    index = ItemIndex.build(items, np.arange(800), model_fingerprint="m", device="cpu", progress=False)
    assert index.index_type == "flat"


@pytest.mark.parametrize("index_type", ["flat", "ivf", "hnsw"])
def test_add_replace_remove_without_rebuild(index_type: str, tmp_path) -> None:
    x = clustered(2000, seed=3)
    ids = [f"item-{i}" for i in range(2000)]
    index = ItemIndex.build(x, ids, index_type=index_type, model_fingerprint="m", device="cpu", progress=False)

    # a new item becomes retrievable
    new = random_vectors(1, seed=4) * 5
    counts = index.add_items(new, ["new-item"])
    assert counts == {"added": 1, "replaced": 0} and len(index) == 2001
    _, got = index.search(new, 1)
    assert got[0, 0] == "new-item"

    # replacing an item changes its vector, keeps the count, and the old vector no longer answers for it
    old_vec = index.get_vectors(["item-7"])[0]
    replacement = -x[7:8]
    assert index.add_items(replacement, ["item-7"]) == {"added": 0, "replaced": 1}
    assert len(index) == 2001
    np.testing.assert_allclose(index.get_vectors(["item-7"])[0], normalised(replacement)[0], atol=1e-6)
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
        ItemIndex.build(random_vectors(10), np.arange(10), index_type="flat", model_fingerprint="m", device="gpu", progress=False)


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
    queries = random_vectors(16, seed=11)
    s_cpu, i_cpu = cpu.search(queries, 10, exclude=[ids[:5]] * 16)
    s_gpu, i_gpu = gpu.search(queries, 10, exclude=[ids[:5]] * 16)
    np.testing.assert_allclose(s_cpu, s_gpu, atol=1e-4)
    assert (i_cpu == i_gpu).mean() > 0.99
    gpu.remove_items([int(i_gpu[0, 0])])  # mutations drop the GPU replica; the next search re-clones
    assert int(i_gpu[0, 0]) not in gpu.search(queries[:1], 10)[1][0].tolist()
    loaded = ItemIndex.load(gpu.save(tmp_path / "g"), device="gpu")
    np.testing.assert_array_equal(loaded.search(queries, 10)[1], gpu.search(queries, 10)[1])
    assert isinstance(backend.to_cpu(backend.to_gpu(faiss.IndexFlatIP(DIM))), faiss.IndexFlatIP)
