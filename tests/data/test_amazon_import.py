"""`recsys data import amazon`: both releases, plain and gzipped, streamed in batches, duplicates, k-core, meta text."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from recsys.cli import app
from recsys.data.importers.amazon import import_amazon, k_core
from recsys.errors import DataValidationError, RecsysError

runner = CliRunner()
T0 = 1_400_000_000

# (user, item, seconds after T0, rating); the 4th row repeats the 3rd (a duplicate of user, item, time)
EVENTS = [("U1", "A", 0, 5.0), ("U1", "B", 100, 4.0), ("U2", "A", 200, 3.0), ("U2", "A", 200, 3.0), ("U2", "C", 300, 2.0), ("U3", "B", 400, 1.0)]


def _write(path: Path, records: list[dict]) -> Path:
    text = "\n".join(json.dumps(r) for r in records) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def reviews_2018(path: Path) -> Path:
    return _write(path, [
        {"reviewerID": u, "asin": i, "overall": r, "unixReviewTime": T0 + t, "reviewText": "words", "style": {"Color:": "red"}, "vote": "2"}
        for u, i, t, r in EVENTS
    ])


def reviews_2023(path: Path) -> Path:
    return _write(path, [
        {"user_id": u, "asin": i + "-variant", "parent_asin": i, "rating": r, "timestamp": (T0 + t) * 1000, "text": "words", "images": []}
        for u, i, t, r in EVENTS
    ])


def meta_2018(path: Path) -> Path:
    return _write(path, [
        {"asin": "A", "title": "Red <b>stapler</b>", "brand": "Acme", "category": ["Office", "Staplers"],
         "description": ["Staples &amp; more", "\"Heavy\" duty"], "feature": ["20 sheets"]},
        {"asin": "Z", "title": "an item nobody reviewed"},
        {"asin": "B", "title": "Pen", "categories": [["Office", "Pens"], ["Writing"]], "description": "Blue ink"},
        {"asin": "A", "title": "a second record of A (ignored)"},
    ])


def meta_2023(path: Path) -> Path:
    return _write(path, [
        {"parent_asin": "A", "title": "Red stapler", "store": "Acme", "categories": ["Office", "Staplers"],
         "description": ["Staples & more", "\"Heavy\" duty"], "features": ["20 sheets"], "main_category": "Office"},
        {"parent_asin": "Z", "title": "an item nobody reviewed"},
        {"parent_asin": "B", "title": "Pen", "categories": ["Office", "Pens", "Writing"], "description": [], "features": []},
    ])


@pytest.mark.parametrize(
    ("release", "reviews", "meta", "suffix"),
    [("2018", reviews_2018, meta_2018, ".json"), ("2018", reviews_2018, meta_2018, ".json.gz"),
     ("2023", reviews_2023, meta_2023, ".jsonl"), ("2023", reviews_2023, meta_2023, ".jsonl.gz")],
)
def test_both_releases_plain_and_gzipped(tmp_path, release, reviews, meta, suffix):
    r = reviews(tmp_path / f"Office_Products{suffix}")
    m = meta(tmp_path / f"meta_Office_Products{suffix}")
    ds, source = import_amazon(r, m, batch_bytes=150)  # several batches, lines cut at batch edges
    inter = ds.interactions
    assert inter.columns == ["user_id", "item_id", "timestamp", "rating"]
    assert inter.rows() == [
        (u, i, dt.datetime.fromtimestamp(T0 + t, dt.timezone.utc), rating) for k, (u, i, t, rating) in enumerate(EVENTS) if k != 3
    ]
    assert source["format"] == f"amazon-{release}" and source["records"] == 6 and source["duplicates_dropped"] == 1
    assert source["timestamps"]["synthetic"] is False and source["name"] == "Office_Products"
    assert ds.items["item_id"].to_list() == ["A", "B", "C"]  # first appearance; Z (not reviewed) skipped
    a, b, c = ds.items.to_dicts()
    assert a == {"item_id": "A", "title": "Red stapler", "brand": "Acme", "categories": ["Office", "Staplers"],
                 "description": 'Staples & more "Heavy" duty', "features": ["20 sheets"]}
    assert b["title"] == "Pen" and b["categories"] == ["Office", "Pens", "Writing"] and b["brand"] is None
    assert c["title"] is None  # no meta record: empty text
    assert source["meta"]["items_with_meta"] == 2 and source["meta"]["items_without_meta"] == 1


def test_k_core_iterates_to_a_fixed_point():
    # 2-core: U3 has one interaction -> removed; then item B has one left (U1) -> removed; then U1 has one -> removed
    inter = pl.DataFrame({"user_id": ["U1", "U1", "U2", "U2", "U3", "U4", "U4"], "item_id": ["A", "B", "A", "C", "B", "A", "C"]})
    kept, rounds = k_core(inter, 2, 2)
    assert kept.rows() == [("U2", "A"), ("U2", "C"), ("U4", "A"), ("U4", "C")]
    assert rounds == 4  # three rounds remove something, the fourth confirms the fixed point
    once = inter.filter((pl.len().over("user_id") >= 2) & (pl.len().over("item_id") >= 2))
    assert once.height > kept.height  # a single pass would not be enough


def test_cli_import_with_k_core_and_json(tmp_path):
    pairs = [("U1", "A"), ("U1", "B"), ("U2", "A"), ("U2", "C"), ("U3", "B"), ("U4", "A"), ("U4", "C"), ("U4", "C")]
    r = _write(tmp_path / "r.jsonl.gz", [
        {"user_id": u, "parent_asin": i, "rating": 4.0, "timestamp": (T0 + (k if k < 7 else 6)) * 1000} for k, (u, i) in enumerate(pairs)
    ])
    m = meta_2023(tmp_path / "m.jsonl")
    human = runner.invoke(app, ["data", "import", "amazon", str(r), "--meta", str(m), "--out", str(tmp_path / "ds"), "--min-user", "2", "--min-item", "2"])
    assert human.exit_code == 0, human.output
    assert "wrote" in human.output and "4 interactions, 2 items, 2 users" in human.output
    assert "1 duplicate (user, item, time) rows dropped; 2/2-core removed 3 interactions in 4 rounds" in human.output
    assert "  A: Red stapler | Office, Staplers | Staples & more \"Heavy\" duty | 20 sheets" in human.output
    machine = runner.invoke(app, ["data", "import", "amazon", str(r), "--meta", str(m), "--out", str(tmp_path / "ds2"), "--json"])
    assert machine.exit_code == 0, machine.output
    out = json.loads(machine.stdout)
    assert out["source"]["duplicates_dropped"] == 1 and out["counts"]["interactions"] == 7
    assert out["source"]["k_core"] == {"min_user": 1, "min_item": 1, "rounds": 0, "interactions_removed": 0}
    assert out["item_text"]["samples"][0] == {"item_id": "A", "text": 'Red stapler | Office, Staplers | Staples & more "Heavy" duty | 20 sheets'}


def test_k_core_that_leaves_nothing_is_a_clear_error(tmp_path):
    r = reviews_2018(tmp_path / "r.json")
    with pytest.raises(RecsysError, match="no interaction is left after the 5/5-core"):
        import_amazon(r, min_user=5, min_item=5)


def test_bad_lines_name_the_file_and_line(tmp_path):
    r = tmp_path / "r.json"
    r.write_text(
        json.dumps({"reviewerID": "U1", "asin": "A", "overall": 5.0, "unixReviewTime": T0}) + "\n\n"
        + json.dumps({"reviewerID": "U2", "overall": 5.0, "unixReviewTime": T0}) + "\n"
    )
    with pytest.raises(DataValidationError, match=r"r\.json.*row 3") as exc:
        import_amazon(r)
    assert "asin" in str(exc.value)
    r.write_text(json.dumps({"reviewerID": "U1", "asin": "A", "overall": 5.0, "unixReviewTime": T0}) + "\n{not json\n")
    with pytest.raises(DataValidationError, match="not a JSON line"):
        import_amazon(r)
    other = _write(tmp_path / "o.json", [{"customer": "x", "product": "y"}])
    with pytest.raises(DataValidationError, match="not an Amazon reviews file.*customer, product"):
        import_amazon(other)
