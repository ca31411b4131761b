"""What the text models will read, said at import time; a catalogue without text warns on import and is refused,
with the fix, by the text models (not an IndexError deep inside scoring)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from recsys.cli import app

runner = CliRunner()


def _write(tmp_path, items_csv: str):
    rows = "".join(f"{u},{i},{u * 10 + i}\n" for u in range(6) for i in range(4))
    (tmp_path / "events.csv").write_text("user_id,item_id,position\n" + rows)
    (tmp_path / "items.csv").write_text(items_csv)


def test_import_prints_three_rendered_items_and_the_empty_share(tmp_path):
    _write(tmp_path, "item_id,text,price\n0,Red stapler | Office | Acme,3\n1,Blue pen,1\n2,,2\n3,Paper,5\n")
    args = ["data", "import", "table", "-i", str(tmp_path / "events.csv"), "--items", str(tmp_path / "items.csv"), "--order-column", "position"]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "ds")])
    assert result.exit_code == 0, result.output
    assert "item text (from text; 25.0% of items empty):" in result.output
    assert "  0: Red stapler | Office | Acme\n  1: Blue pen\n  2: (empty)\n" in result.output
    assert "no time-of-day or weekday context" in result.output
    assert "warning" not in result.output
    machine = runner.invoke(app, [*args, "-o", str(tmp_path / "ds2"), "--json"])
    report = json.loads(machine.stdout)["item_text"]
    assert report["fields"] == ["text"] and report["empty_share"] == 0.25
    assert [s["text"] for s in report["samples"]] == ["Red stapler | Office | Acme", "Blue pen", ""]


@pytest.fixture
def no_text(tmp_path):
    _write(tmp_path, "item_id,price\n0,3\n1,1\n2,2\n3,5\n")
    result = runner.invoke(app, ["data", "import", "table", "-i", str(tmp_path / "events.csv"), "--items", str(tmp_path / "items.csv"), "-o", str(tmp_path / "ds")])
    assert result.exit_code == 0, result.output
    return tmp_path / "ds", result


def test_import_without_any_text_warns_and_names_the_fix(no_text):
    _, result = no_text
    assert "warning: no item has any text" in result.output and "--item-text" in result.output


def test_zero_shot_on_a_catalogue_without_text_is_a_clear_error(no_text):
    ds, _ = no_text
    result = runner.invoke(app, ["evaluate", str(ds), "-m", "zero-shot", "--no-cold-start", "-q"])
    assert result.exit_code == 2, result.output
    assert "the zero-shot text model reads item text, but none of the 4 items has any" in result.output
    assert "--item-text" in result.output and "IndexError" not in result.output
