"""`--item-text`: which item columns the text models read, on train retriever / build-index, and
recorded in the run and index manifests (real one-step training)."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from recsys.cli import app
from recsys.data.dataset import Dataset

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(30), 8)
    items = np.concatenate([rng.choice(24, 8, replace=False) for _ in range(30)])
    inter = pl.DataFrame({"user_id": users, "item_id": items, "timestamp": np.arange(len(users)) * 3600 + 1_700_000_000})
    inter = inter.with_columns(pl.from_epoch("timestamp", time_unit="s").dt.cast_time_unit("us").dt.replace_time_zone("UTC"))
    catalogue = pl.DataFrame({
        "item_id": np.arange(24),
        "name": [f"office thing {i}" for i in range(24)],
        "brand": [["Acme", "Bic", "Zeta"][i % 3] for i in range(24)],
        "category": [["Office", ["Pens", "Paper"][i % 2]] for i in range(24)],
    })
    root = tmp_path_factory.mktemp("shop")
    Dataset(inter.cast({"user_id": pl.Int64, "item_id": pl.Int64}), catalogue.cast({"item_id": pl.Int64})).save(root / "ds", source={"name": "shop"})
    run = root / "run"
    result = runner.invoke(app, ["train", "retriever", str(root / "ds"), "--out", str(run), "--epochs", "1", "--max-steps", "1", "--item-text", "brand,name", "--json"])
    assert result.exit_code == 0, result.output
    return root


def test_item_text_reaches_the_settings_and_the_manifest(shop):
    config = json.loads((shop / "run" / "config.json").read_text())
    manifest = json.loads((shop / "run" / "manifest.json").read_text())
    assert config["templates"]["item_fields"] == ["brand", "name"]
    assert manifest["item_text"] == {"fields": ["brand", "name"], "empty_share": 0.0}
    state = json.loads((shop / "run" / "state.json").read_text())
    assert state["item_texts"][0] == "Acme | office thing 0"


def test_build_index_with_other_item_text_is_recorded(shop):
    same = runner.invoke(app, ["build-index", str(shop / "run"), "-d", str(shop / "ds"), "-o", str(shop / "index"), "--json"])
    assert same.exit_code == 0, same.output
    meta = json.loads((shop / "index" / "manifest.json").read_text())["metadata"]
    assert meta["item_text_fields"] == meta["run_item_text_fields"] == ["brand", "name"] and meta["text_encoded_items"] == 0
    other = runner.invoke(app, ["build-index", str(shop / "run"), "-d", str(shop / "ds"), "-o", str(shop / "index2"), "--item-text", "name"])
    assert other.exit_code == 0, other.output
    meta = json.loads((shop / "index2" / "manifest.json").read_text())["metadata"]
    assert meta["item_text_fields"] == ["name"] and meta["run_item_text_fields"] == ["brand", "name"]
    assert meta["text_encoded_items"] == 24
    assert "note: item text rendered from name" in other.output


def test_unknown_item_text_column_is_a_clean_error(shop, tmp_path):
    result = runner.invoke(app, ["train", "retriever", str(shop / "ds"), "--out", str(tmp_path / "out"), "--item-text", "title,brand"])
    assert result.exit_code == 2
    assert "--item-text names title, not a column of the items (found: name, brand, category)" in result.output
    assert not (tmp_path / "out").exists()
