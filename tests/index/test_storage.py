"""Saved indexes (``recsys.index.storage``): round trips, model mismatch refused, failed saves clobber nothing, bad files named."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from recsys.errors import ManifestMismatchError, RecsysError
from recsys.index import ItemIndex, add_items_to_saved_index, parse_item_ids, read_index_info, storage
from tests.index.random_data import DIM, random_vectors


def test_save_load_gives_identical_results(flat: ItemIndex, tmp_path) -> None:
    queries = random_vectors(12, seed=2)
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


def test_mismatched_model_fingerprint_refused(flat: ItemIndex, tmp_path) -> None:
    flat.save(tmp_path / "idx")
    with pytest.raises(ManifestMismatchError, match="model-a.*model-b"):
        ItemIndex.load(tmp_path / "idx", expected_model_fingerprint="model-b", device="cpu")
    with pytest.raises(ManifestMismatchError):
        add_items_to_saved_index(tmp_path / "idx", random_vectors(1), [5], model_fingerprint="model-b")


def test_failed_save_does_not_clobber_existing_index(flat: ItemIndex, tmp_path, monkeypatch) -> None:
    target = tmp_path / "idx"
    flat.save(target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    flat.remove_items([0, 10, 20])

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(storage, "write_manifest", boom)
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


def test_info_read_from_the_manifest_alone(flat: ItemIndex, tmp_path) -> None:
    target = flat.save(tmp_path / "idx")
    (target / "index.faiss").write_bytes(b"not read")  # info never opens the FAISS file
    info = read_index_info(target)
    assert info["count"] == 800 and info["dim"] == DIM and info["type"] == "flat" and info["id_dtype"] == "Int64"
    assert info["model_fingerprint"] == "model-a" and "recall_at_100" not in info and info["path"] == str(target)
    with pytest.raises(RecsysError, match="does not exist"):
        read_index_info(tmp_path / "nowhere")


def test_command_line_ids_take_the_index_id_type() -> None:
    assert parse_item_ids([" 3", "", "12 "], pl.Int64) == [3, 12]
    assert parse_item_ids(["a", " b "], "String") == ["a", "b"]
    with pytest.raises(RecsysError, match="item id 'x' is not an integer"):
        parse_item_ids(["1", "x"], "Int64")
