"""``recsys build-index --inference onnx-int8`` and ``index add-items --inference``, end to end on tiny demo data
(real MiniLM, real onnxruntime, real FAISS): items the run does not store are embedded by the int8 graph, the option
is recorded in the index manifest, and their vectors stay close to the fp32 path's."""

from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from recsys.cli import app
from recsys.data.dataset import Dataset
from recsys.index import ItemIndex
from recsys.onnx import onnx_available

ONNX_OK, ONNX_WHY = onnx_available()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not ONNX_OK, reason=ONNX_WHY)]
runner = CliRunner()

NEW_TITLES = ["Moonlit Harp Sonata", "Quantum Garden Trowel", "Retro Arcade Joystick Deluxe", "Organic Matcha Tea Sampler"]


@pytest.fixture(scope="module")
def grown(retrieval_stack, tmp_path_factory):
    """The stack's dataset plus four new items and one item whose title changed."""
    root, ds = retrieval_stack
    out = tmp_path_factory.mktemp("grown") / "ds"
    start = int(ds.items["item_id"].max()) + 1
    new = pl.DataFrame({"item_id": np.arange(start, start + len(NEW_TITLES)), "title": NEW_TITLES}).cast({"item_id": ds.items.schema["item_id"]})
    items = pl.concat([ds.items, new], how="diagonal_relaxed")
    changed = items["item_id"][0]
    items = items.with_columns(pl.when(pl.col("item_id") == changed).then(pl.lit("Completely Different Title")).otherwise(pl.col("title")).alias("title"))
    Dataset(ds.interactions, items, ds.users).save(out, source={"name": "grown"})
    return root, out, items


def test_build_index_onnx_int8_end_to_end(grown, tmp_path, monkeypatch):
    root, ds_dir, items = grown
    monkeypatch.setenv("RECSYS_CACHE", str(tmp_path / "cache"))
    res = {}
    for opt in ("fp32", "onnx-int8"):
        result = runner.invoke(app, ["build-index", str(root / "run"), "-d", str(ds_dir), "-o", str(tmp_path / opt), "--inference", opt, "--json"])
        assert result.exit_code == 0, result.output
        info = json.loads(result.stdout)
        assert info["count"] == items.height
        res[opt] = ItemIndex.load(tmp_path / opt, device="cpu")
        meta = res[opt].metadata
        assert meta["inference"] == opt and meta["text_encoded_items"] == len(NEW_TITLES) + 1
    assert list((tmp_path / "cache" / "onnx").rglob("model-int8-*.onnx"))
    # each new item, queried by its fp32 vector, is its own nearest neighbour in the int8 index (cosine > 0.97)
    from recsys.retriever.run import load_run

    model, _, _ = load_run(root / "run")
    new = items.tail(len(NEW_TITLES))
    queries = model.encode_items(new)
    scores, ids = res["onnx-int8"].search(queries, 1)
    assert ids[:, 0].tolist() == new["item_id"].to_list() and scores.min() > 0.97, scores
    f_scores, _ = res["fp32"].search(queries, 1)
    np.testing.assert_allclose(f_scores[:, 0], 1.0, atol=1e-4)
    bad = runner.invoke(app, ["build-index", str(root / "run"), "-d", str(ds_dir), "-o", str(tmp_path / "bad"), "--inference", "int4"])
    assert bad.exit_code == 2 and "inference option must be one of" in bad.output and not (tmp_path / "bad").exists()


def test_add_items_records_the_option(grown, tmp_path, monkeypatch):
    root, _, _ = grown
    monkeypatch.setenv("RECSYS_CACHE", str(tmp_path / "cache"))
    shutil.copytree(root / "index", tmp_path / "index")
    csv = tmp_path / "new.csv"
    pl.DataFrame({"item_id": [90001, 90002], "title": ["Velvet Jazz Trumpet Mute", "Solar Camping Lantern"]}).write_csv(csv)
    result = runner.invoke(app, ["index", "add-items", str(tmp_path / "index"), str(csv), "--inference", "onnx", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["inference"] == "onnx" and out["count"] == len(ItemIndex.load(tmp_path / "index", device="cpu"))
    meta = ItemIndex.load(tmp_path / "index", device="cpu").metadata
    assert meta["add_items_inference"] == "onnx" and meta["inference"] == "fp32"
