"""`import_table` and `recsys data import table`: CSV and parquet, --map, timestamps, --order-column, row order."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from recsys.data import schema as S
from recsys.data.dataset import Dataset
from recsys.data.importers.table import import_table, parse_mapping
from recsys.errors import RecsysError

UTC = dt.timezone.utc


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "recsys", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


@pytest.fixture
def csv_files(tmp_path: Path) -> dict[str, Path]:
    return {
        "interactions": write(
            tmp_path / "events.csv",
            "user_id,item_id,timestamp,rating,device\n"
            "u2,10,2024-05-01T12:00:00Z,4,mobile\n"
            "u1,10,2024-05-01T10:00:00+02:00,5,desktop\n"
            "u1,11,2024-05-02,3.5,mobile\n"
            "u3,12,2024-05-03 08:30:15.5,1,\n",
        ),
        "items": write(
            tmp_path / "items.csv",
            'item_id,title,genres,year,price\n10,"Red, the Film",Drama|Comedy,1999,9.5\n11,Blue,Drama,2001,4\n12,Green,,,\n',
        ),
        "users": write(tmp_path / "users.csv", "user_id,age,zip\nu1,30,02138\nu2,41,10001\nu3,25,94043\n"),
    }


def test_csv_import_types_order_and_timestamps(csv_files, tmp_path) -> None:
    ds, source = import_table(csv_files["interactions"], csv_files["items"], csv_files["users"])
    inter = ds.interactions
    assert inter.columns == ["user_id", "item_id", "timestamp", "rating", "device"]
    assert inter.schema["user_id"] == pl.String and inter.schema["item_id"] == pl.Int64
    assert inter.schema["timestamp"] == S.TIMESTAMP_DTYPE and inter.schema["rating"] == pl.Float64
    assert inter["user_id"].to_list() == ["u2", "u1", "u1", "u3"]  # source order kept
    assert inter["timestamp"].to_list() == [
        dt.datetime(2024, 5, 1, 12, tzinfo=UTC),
        dt.datetime(2024, 5, 1, 8, tzinfo=UTC),
        dt.datetime(2024, 5, 2, tzinfo=UTC),
        dt.datetime(2024, 5, 3, 8, 30, 15, 500000, tzinfo=UTC),
    ]
    assert inter["device"].to_list() == ["mobile", "desktop", "mobile", None]
    assert ds.items.schema["year"] == pl.Int64 and ds.items.schema["price"] == pl.Float64
    assert ds.items["title"][0] == "Red, the Film"
    assert ds.users is not None and ds.users.schema["zip"] == pl.String  # leading zero kept
    assert ds.users["zip"][0] == "02138"
    assert source["timestamps"] == {"from": "column", "column": "timestamp", "synthetic": False, "type": "iso8601"}
    saved = ds.save(tmp_path / "ds", source=source)
    assert saved.manifest["counts"] == {"interactions": 4, "items": 3, "users": 3, "profiles": 3}
    assert saved.context_columns == ["device"]


def test_parquet_import_with_mapping(tmp_path) -> None:
    inter = pl.DataFrame(
        {
            "customer": pl.Series([7, 8, 7], dtype=pl.Int32),
            "sku": ["a", "b", "b"],
            "when": [1_700_000_000_000, 1_700_000_001_000, 1_700_000_002_000],  # milliseconds
            "qty": [1.0, 2.0, 1.0],
        }
    )
    items = pl.DataFrame({"id": ["a", "b", "c"], "name": ["Apple", "Bread", "Cheese"]})
    inter.write_parquet(tmp_path / "inter.parquet")
    items.write_parquet(tmp_path / "items.parquet")
    mapping = parse_mapping(["user_id=customer,item_id=sku", "timestamp=when,weight=qty,items.item_id=id, title=name"])
    assert mapping == {"user_id": "customer", "item_id": "sku", "timestamp": "when", "weight": "qty", "items.item_id": "id", "title": "name"}
    ds, source = import_table(tmp_path / "inter.parquet", tmp_path / "items.parquet", mapping=mapping)
    assert ds.interactions.columns == ["user_id", "item_id", "timestamp", "weight"]
    assert ds.interactions.schema["user_id"] == pl.Int64
    assert ds.interactions["timestamp"][0] == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert source["timestamps"]["unit"] == "ms"
    assert ds.items.columns == ["item_id", "title"]
    ds.save(tmp_path / "ds", source=source)


def test_parquet_datetime_and_int_float_ids(tmp_path) -> None:
    """pandas-style float ids (1.0) and a naive datetime column; the items' string ids force String everywhere."""
    pl.DataFrame(
        {
            "user_id": [1.0, 2.0],
            "item_id": [5, 6],
            "timestamp": [dt.datetime(2020, 1, 1, 12), dt.datetime(2020, 1, 2)],
        }
    ).write_parquet(tmp_path / "i.parquet")
    pl.DataFrame({"item_id": ["5", "6"]}).write_parquet(tmp_path / "items.parquet")
    ds, _ = import_table(tmp_path / "i.parquet", tmp_path / "items.parquet")
    assert ds.interactions.schema["user_id"] == pl.Int64
    assert ds.interactions.schema["item_id"] == pl.String
    assert ds.interactions["item_id"].to_list() == ["5", "6"]
    assert ds.interactions["timestamp"][0] == dt.datetime(2020, 1, 1, 12, tzinfo=UTC)


def test_id_types_agree_across_files(tmp_path) -> None:
    """Integer ids in interactions but a non-integer id in items: both become String."""
    i = write(tmp_path / "i.csv", "user_id,item_id,timestamp\n1,2,0\n1,3,1\n")
    it = write(tmp_path / "it.csv", "item_id\n2\n3\nx9\n")
    ds, _ = import_table(i, it)
    assert ds.interactions.schema["item_id"] == pl.String == ds.items.schema["item_id"]
    assert ds.interactions.schema["user_id"] == pl.Int64


def test_epoch_seconds_and_timestamp_format(tmp_path) -> None:
    it = write(tmp_path / "items.csv", "item_id\n1\n")
    secs = write(tmp_path / "s.csv", "user_id,item_id,timestamp\n1,1,881250949\n")
    ds, src = import_table(secs, it)
    assert ds.interactions["timestamp"][0] == dt.datetime(1997, 12, 4, 15, 55, 49, tzinfo=UTC)
    assert src["timestamps"]["unit"] == "s"
    fmt = write(tmp_path / "f.csv", "user_id,item_id,timestamp\n1,1,01/02/2020 10:30\n1,1,31/12/2021 23:59\n")
    ds, src = import_table(fmt, it, timestamp_format="%d/%m/%Y %H:%M")
    assert ds.interactions["timestamp"].to_list() == [
        dt.datetime(2020, 2, 1, 10, 30, tzinfo=UTC),
        dt.datetime(2021, 12, 31, 23, 59, tzinfo=UTC),
    ]
    assert src["timestamps"]["format"] == "%d/%m/%Y %H:%M"


def test_order_column_defines_time(tmp_path) -> None:
    i = write(tmp_path / "i.csv", "user_id,item_id,seq\n1,1,30\n1,2,10\n2,1,20\n2,2,10\n")
    it = write(tmp_path / "items.csv", "item_id\n1\n2\n")
    ds, source = import_table(i, it, order_column="seq")
    assert "seq" not in ds.interactions.columns
    assert ds.interactions["item_id"].to_list() == [1, 2, 1, 2]  # rows not re-ordered
    epoch = dt.datetime(1970, 1, 1, tzinfo=UTC)
    assert ds.interactions["timestamp"].to_list() == [epoch + dt.timedelta(seconds=s) for s in (2, 0, 1, 0)]
    assert source["timestamps"]["from"] == "order_column" and source["timestamps"]["synthetic"] is True


def test_order_column_after_mapping_and_row_order(tmp_path) -> None:
    i = write(tmp_path / "i.csv", "uid,iid,pos\na,1,2.5\nb,1,1.5\n")
    it = write(tmp_path / "items.csv", "item_id\n1\n")
    ds, _ = import_table(i, it, mapping={"user_id": "uid", "item_id": "iid"}, order_column="pos")
    assert ds.interactions["timestamp"].dt.epoch("s").to_list() == [1, 0]
    ds, source = import_table(i, it, mapping={"user_id": "uid", "item_id": "iid"})
    assert ds.interactions["timestamp"].dt.epoch("s").to_list() == [0, 1]
    assert ds.interactions.columns == ["user_id", "item_id", "timestamp", "pos"]
    assert source["timestamps"]["from"] == "row_order"


def test_reimport_gives_byte_identical_parquet(csv_files, tmp_path) -> None:
    dirs = []
    for k in range(2):
        ds, source = import_table(csv_files["interactions"], csv_files["items"], csv_files["users"])
        dirs.append(ds.save(tmp_path / f"out{k}", source=source).path)
    for name in (S.INTERACTIONS_FILE, S.ITEMS_FILE, S.USERS_FILE):
        assert (dirs[0] / name).read_bytes() == (dirs[1] / name).read_bytes()
    m0, m1 = (json.loads((d / "manifest.json").read_text()) for d in dirs)
    assert m0["fingerprint"] == m1["fingerprint"] and m0["files"] == m1["files"]


def test_bad_mapping_spec() -> None:
    with pytest.raises(RecsysError, match="CANONICAL=COLUMN"):
        parse_mapping("user_id")
    with pytest.raises(RecsysError, match="twice"):
        parse_mapping("user_id=a,user_id=b")


def test_cli_import_table_and_failed_import_keeps_dataset(csv_files, tmp_path) -> None:
    out = tmp_path / "dataset"
    ok = run_cli(
        "data", "import", "table", "--interactions", str(csv_files["interactions"]), "--items", str(csv_files["items"]),
        "--users", str(csv_files["users"]), "--out", str(out), "--json",
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["counts"]["interactions"] == 4
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    bad = write(tmp_path / "bad.csv", "user_id,item_id,timestamp\nu1,10,2024-05-01\nu1,99,2024-05-02\n")
    fail = run_cli("data", "import", "table", "-i", str(bad), "--items", str(csv_files["items"]), "--out", str(out))
    assert fail.returncode == 2
    assert fail.stderr.startswith("error: ") and "bad.csv" in fail.stderr and "row 2" in fail.stderr
    assert "Traceback" not in fail.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp dirs left
    assert Dataset.load(out).interactions.height == 4


def test_every_data_command_help_exits_zero() -> None:
    from recsys.cli import app

    root = typer.main.get_command(app)
    data = root.commands["data"]  # type: ignore[attr-defined]
    paths: list[list[str]] = []

    def walk(cmd, prefix: list[str]) -> None:
        paths.append(prefix)
        if getattr(cmd, "commands", None):  # a group (typer vendors its own click)
            for name, sub in cmd.commands.items():
                walk(sub, [*prefix, name])

    walk(data, ["data"])
    assert {"import", "describe", "download"} <= {p[1] for p in paths if len(p) > 1}
    assert ["data", "import", "table"] in paths
    runner = CliRunner()
    for p in paths:
        result = runner.invoke(app, [*p, "--help"])
        assert result.exit_code == 0, (p, result.output)
        assert "Usage" in result.output


def test_tsv_with_bom_and_zoned_parquet_datetimes(tmp_path) -> None:
    (tmp_path / "i.tsv").write_bytes("\ufeffuser_id\titem_id\ttimestamp\n1\tb\t1700000000\n".encode())
    pl.DataFrame({"item_id": ["b"], "title": ["Bee"]}).write_parquet(tmp_path / "items.parquet")
    ds, _ = import_table(tmp_path / "i.tsv", tmp_path / "items.parquet")
    assert ds.interactions.columns[:3] == ["user_id", "item_id", "timestamp"]
    assert ds.interactions["timestamp"][0] == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)

    zoned = pl.Series([dt.datetime(2024, 1, 1, 12)], dtype=pl.Datetime("ms")).dt.replace_time_zone("Europe/Paris")
    pl.DataFrame({"user_id": [1], "item_id": ["b"], "timestamp": zoned}).write_parquet(tmp_path / "z.parquet")
    ds, _ = import_table(tmp_path / "z.parquet", tmp_path / "items.parquet")
    assert ds.interactions.schema["timestamp"] == S.TIMESTAMP_DTYPE
    assert ds.interactions["timestamp"][0] == dt.datetime(2024, 1, 1, 11, tzinfo=UTC)

    pl.DataFrame({"user_id": [1], "item_id": ["b"], "timestamp": [dt.date(2024, 3, 1)]}).write_parquet(tmp_path / "d.parquet")
    ds, src = import_table(tmp_path / "d.parquet", tmp_path / "items.parquet")
    assert ds.interactions["timestamp"][0] == dt.datetime(2024, 3, 1, tzinfo=UTC) and src["timestamps"]["type"] == "date"
