"""`describe` on a tiny hand-made dataset, with every number computed by hand."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from recsys.data import schema as S
from recsys.data.dataset import Dataset
from recsys.data.describe import describe, format_describe
from recsys.data.importers.table import import_table

UTC = dt.timezone.utc
D0 = dt.datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def tiny(tmp_path: Path) -> Dataset:
    days = [0, 1, 2, 3, 4, 10, 10.5]
    inter = pl.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u2", "u2", "u3", "u3"],
            "item_id": [1, 2, 1, 1, 3, 1, 2],
            "timestamp": pl.Series([D0 + dt.timedelta(days=d) for d in days], dtype=S.TIMESTAMP_DTYPE),
            "rating": [5.0, 4.0, 3.0, 4.0, 2.0, 4.0, 5.0],
            "device": ["mobile", "mobile", "desktop", "mobile", None, "tv", "mobile"],
        }
    )
    items = pl.DataFrame(
        {
            "item_id": [1, 2, 3, 4],
            "title": ["A", "B", "", None],
            "genres": pl.Series([["x"], [], None, ["y", "z"]], dtype=pl.List(pl.String)),
            "description": ["d", "  ", "e", "f"],
            "year": [1999, None, 2000, 2001],
        }
    )
    users = pl.DataFrame({"user_id": ["u1", "u2", "u3"], "age": [20, 30, 40]})
    return Dataset(inter, items, users).save(tmp_path / "tiny", source={"name": "tiny"})


def test_describe_hand_computed(tiny: Dataset) -> None:
    d = describe(tiny)
    assert d["counts"] == {
        "interactions": 7, "users": 3, "items": 4, "profiles": 3,
        "items_with_interactions": 3, "items_without_interactions": 1,
    }
    # distinct (user, item) pairs: (u1,1) (u1,2) (u2,1) (u2,3) (u3,1) (u3,2) = 6 of 3 x 4
    assert d["density"] == pytest.approx(0.5)
    assert d["time"] == {
        "first": "2024-01-01T00:00:00+00:00", "last": "2024-01-11T12:00:00+00:00", "days": 10.5, "synthetic": False, "time_context": True,
    }
    # per user: u1 3, u2 2, u3 2 -> [2, 2, 3]; linear interpolation
    assert d["per_user"] == pytest.approx({"min": 2, "p25": 2, "p50": 2, "p75": 2.5, "p90": 2.8, "max": 3, "mean": 7 / 3})
    # per item: 1 -> 4, 2 -> 2, 3 -> 1 -> [1, 2, 4]
    assert d["per_item"] == pytest.approx({"min": 1, "p25": 1.5, "p50": 2, "p75": 3, "p90": 3.6, "max": 4, "mean": 7 / 3})
    assert d["ratings"]["mean"] == pytest.approx(27 / 7)
    assert [(e["value"], e["count"]) for e in d["ratings"]["distribution"]] == [(2, 1), (3, 1), (4, 3), (5, 2)]
    assert d["ratings"]["distribution"][2]["share"] == pytest.approx(3 / 7)
    assert d["context"] == {
        "device": {
            "dtype": "String", "distinct": 3, "nulls": 1,
            "top": [{"value": "mobile", "count": 4}, {"value": "desktop", "count": 1}, {"value": "tv", "count": 1}],
        }
    }
    assert d["text_coverage"] == pytest.approx({"title": 0.5, "genres": 0.5, "description": 0.75, "year": 0.75})
    # what the model reads: title | genres | year | description (the default fields that are there), first three items
    assert d["item_text"] == {
        "fields": ["title", "genres", "year", "description"],
        "empty_share": 0.0,
        "samples": [{"item_id": 1, "text": "A | x | 1999 | d"}, {"item_id": 2, "text": "B"}, {"item_id": 3, "text": "2000 | e"}],
    }
    json.dumps(d)  # JSON-serialisable as is


def test_format_describe_is_aligned(tiny: Dataset) -> None:
    text = format_describe(describe(tiny))
    lines = text.splitlines()
    assert any(line.split() == ["density", "50.0000%"] for line in lines)
    rows = [line for line in lines if line.split()[:1] in (["user"], ["item"]) and len(line.split()) == 8]
    assert len(rows) == 2 and len({len(r) for r in rows}) == 1  # right-aligned numbers, equal widths
    assert "device" in text and "mobile (4)" in text
    assert "description" in text and "75.0%" in text


def test_describe_flags_synthetic_timestamps(tmp_path: Path) -> None:
    (tmp_path / "i.csv").write_text("user_id,item_id\n1,1\n2,1\n1,2\n")
    (tmp_path / "items.csv").write_text("item_id\n1\n2\n")
    ds, source = import_table(tmp_path / "i.csv", tmp_path / "items.csv")
    d = describe(ds.save(tmp_path / "ds", source=source))
    assert d["time"]["synthetic"] is True and d["time"]["days"] == pytest.approx(2 / 86400)
    assert d["time"]["time_context"] is False
    assert d["ratings"] is None and d["context"] == {}
    text = format_describe(d)
    assert "synthetic timestamps" in text and "no model reads a time of day or weekday" in text
    # no text at all: said, with the fix
    assert d["item_text"]["empty_share"] == 1.0 and d["item_text"]["fields"] == []
    assert "warning: no item has any text" in text and "--item-text" in text


def test_cli_describe(tiny: Dataset) -> None:
    env = {**os.environ, "COLUMNS": "200"}
    human = subprocess.run([sys.executable, "-m", "recsys", "data", "describe", str(tiny.path)], capture_output=True, text=True, env=env, timeout=120)
    assert human.returncode == 0, human.stderr
    assert "interactions" in human.stdout and "density" in human.stdout
    machine = subprocess.run([sys.executable, "-m", "recsys", "data", "describe", str(tiny.path), "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert machine.returncode == 0 and json.loads(machine.stdout)["counts"]["interactions"] == 7
    missing = subprocess.run([sys.executable, "-m", "recsys", "data", "describe", str(tiny.path.parent / "nope")], capture_output=True, text=True, env=env, timeout=120)
    assert missing.returncode == 2 and missing.stderr.startswith("error: ") and "does not exist" in missing.stderr
