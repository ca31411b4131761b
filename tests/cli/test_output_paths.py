"""Commands that write an artefact directory never delete a directory recsys did not write (through the real CLI)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from recsys.cli import app

runner = CliRunner()


def _precious(path: Path) -> Path:
    path.mkdir()
    (path / "notes.txt").write_text("keep")
    return path


def _tables(tmp_path: Path) -> tuple[Path, Path]:
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id,timestamp\n1,10,2024-05-01T12:00:00Z\n2,11,2024-05-02T12:00:00Z\n1,11,2024-05-03T12:00:00Z\n")
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\n10,Red\n11,Blue\n")
    return events, items


def test_data_import_refuses_a_directory_it_did_not_write(tmp_path) -> None:
    events, items = _tables(tmp_path)
    precious = _precious(tmp_path / "precious")
    for extra in ([], ["--overwrite"]):
        result = runner.invoke(app, ["data", "import", "table", "-i", str(events), "--items", str(items), "-o", str(precious), *extra])
        assert result.exit_code == 2, result.output
        assert f"{precious} is not a recsys artefact" in result.output and "notes.txt" in result.output
        assert (precious / "notes.txt").read_text() == "keep"
    # a dataset there is replaced; an index there needs --overwrite
    ds = tmp_path / "ds"
    assert runner.invoke(app, ["data", "import", "table", "-i", str(events), "--items", str(items), "-o", str(ds)]).exit_code == 0
    assert runner.invoke(app, ["data", "import", "table", "-i", str(events), "--items", str(items), "-o", str(ds)]).exit_code == 0
    manifest = ds / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "kind": "index"}))
    result = runner.invoke(app, ["data", "import", "table", "-i", str(events), "--items", str(items), "-o", str(ds)])
    assert result.exit_code == 2 and "holds a recsys 'index' artefact" in result.output and "--overwrite" in result.output
    result = runner.invoke(app, ["data", "import", "table", "-i", str(events), "--items", str(items), "-o", str(ds), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert json.loads(manifest.read_text())["kind"] == "dataset"


def test_build_index_refuses_a_directory_it_did_not_write(retrieval_stack, tmp_path) -> None:
    root, _ = retrieval_stack
    precious = _precious(tmp_path / "precious_idx")
    for extra in ([], ["--overwrite"]):
        result = runner.invoke(app, ["build-index", str(root / "run"), "-d", str(root / "ds"), "--out", str(precious), "--device", "cpu", *extra])
        assert result.exit_code == 2, result.output
        assert f"{precious} is not a recsys artefact" in result.output
        assert sorted(p.name for p in precious.iterdir()) == ["notes.txt"]
    # a dataset directory is another kind: refused without --overwrite, before any encoding
    result = runner.invoke(app, ["build-index", str(root / "run"), "-d", str(root / "ds"), "--out", str(root / "ds"), "--device", "cpu"])
    assert result.exit_code == 2 and "holds a recsys 'dataset' artefact" in result.output
    assert json.loads((root / "ds" / "manifest.json").read_text())["kind"] == "dataset"


def test_training_refuses_a_directory_it_did_not_write_before_training(retrieval_stack, tmp_path) -> None:
    root, _ = retrieval_stack
    precious = _precious(tmp_path / "precious_run")
    result = runner.invoke(app, ["train", "retriever", str(root / "ds"), "--out", str(precious)])
    assert result.exit_code == 2 and f"{precious} is not a recsys artefact" in result.output, result.output
    assert sorted(p.name for p in precious.iterdir()) == ["notes.txt"]
