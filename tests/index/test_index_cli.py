"""``recsys index info`` and ``remove-items``, invoking the sub-app directly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from recsys.cli.index import app
from recsys.errors import RecsysError
from recsys.index import ItemIndex

runner = CliRunner()


@pytest.fixture()
def saved(tmp_path):
    x = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    index = ItemIndex.build(
        x, np.arange(100, 150), index_type="flat", model_fingerprint="fp-1", metadata={"dataset": "data/demo"}, device="cpu", progress=False
    )
    return index.save(tmp_path / "idx"), x


def test_info_json_and_text(saved) -> None:
    path, _ = saved
    result = runner.invoke(app, ["info", str(path), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["count"] == 50 and info["dim"] == 8 and info["type"] == "flat"
    assert info["metric"] == "inner_product" and info["model_fingerprint"] == "fp-1"
    assert info["metadata"] == {"dataset": "data/demo"}
    result = runner.invoke(app, ["info", str(path)])
    assert result.exit_code == 0 and "fp-1" in result.output and "inner_product" in result.output


def test_info_missing_index_is_a_recsys_error(tmp_path) -> None:
    result = runner.invoke(app, ["info", str(tmp_path / "nope")])
    assert result.exit_code != 0 and isinstance(result.exception, RecsysError)


def test_remove_items_comma_list_and_file(saved, tmp_path) -> None:
    path, x = saved
    result = runner.invoke(app, ["remove-items", str(path), "100,101"])
    assert result.exit_code == 0, result.output
    assert "48 remain" in result.output
    id_file = tmp_path / "ids.txt"
    id_file.write_text("102\n\n103\n")
    result = runner.invoke(app, ["remove-items", str(path), f"@{id_file}", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["count"] == 46
    index = ItemIndex.load(path, device="cpu")
    assert len(index) == 46 and not {100, 101, 102, 103} & set(index.search(x[:4], 46)[1].ravel().tolist())


def test_remove_unknown_or_malformed_id_changes_nothing(saved) -> None:
    path, _ = saved
    before = (path / "index.faiss").read_bytes()
    result = runner.invoke(app, ["remove-items", str(path), "100,999"])
    assert isinstance(result.exception, RecsysError) and "999" in str(result.exception)
    result = runner.invoke(app, ["remove-items", str(path), "abc"])
    assert isinstance(result.exception, RecsysError) and "'abc' is not an integer" in str(result.exception)
    assert (path / "index.faiss").read_bytes() == before
