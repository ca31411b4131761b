"""train retriever -> build-index -> retrieve -> index add-items through the real CLI (CliRunner)."""

from __future__ import annotations

import json

import polars as pl
import pytest
from typer.testing import CliRunner

from recsys.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-retrieve")
    ok = lambda r: r.exit_code == 0 or pytest.fail(r.output)  # noqa: E731
    ok(runner.invoke(app, ["data", "demo", "--out", str(root / "ds"), "--users", "120", "--items", "100", "--interactions-per-user", "10"]))
    ok(runner.invoke(app, ["train", "retriever", str(root / "ds"), "--out", str(root / "run"), "--epochs", "1", "--max-steps", "5", "--json"]))
    result = runner.invoke(app, ["build-index", str(root / "run"), "-d", str(root / "ds"), "-o", str(root / "index"), "--json"])
    ok(result)
    assert json.loads(result.stdout)["count"] == 100
    return root


def test_retrieve_json(built):
    result = runner.invoke(app, ["retrieve", "-i", str(built / "index"), "--user", "3", "-k", "7", "--context", "time=morning", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [r["rank"] for r in out["items"]] == list(range(1, 8))
    assert all(r["title"] for r in out["items"])


def test_retrieve_table_and_errors(built):
    result = runner.invoke(app, ["retrieve", "-i", str(built / "index"), "--user", "3", "-k", "3"])
    assert result.exit_code == 0 and "rank" in result.output
    bad_user = runner.invoke(app, ["retrieve", "-i", str(built / "index"), "--user", "nosuch"])
    assert bad_user.exit_code == 2 and "not an integer" in bad_user.output
    unknown = runner.invoke(app, ["retrieve", "-i", str(built / "index"), "--user", "987654"])
    assert unknown.exit_code == 2 and "unknown user 987654" in unknown.output
    bad_ctx = runner.invoke(app, ["retrieve", "-i", str(built / "index"), "--user", "3", "--context", "time=noonish"])
    assert bad_ctx.exit_code == 2 and "time='noonish'" in bad_ctx.output


def test_index_add_items_then_info(built, tmp_path):
    items = tmp_path / "new.csv"
    pl.DataFrame({"item_id": [5000, 5001], "title": ["Moonlit Harp Sonata", "Quantum Garden Trowel"]}).write_csv(items)
    result = runner.invoke(app, ["index", "add-items", str(built / "index"), str(items), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["count"] == 102
    info = runner.invoke(app, ["index", "info", str(built / "index"), "--json"])
    assert json.loads(info.stdout)["count"] == 102
    missing = runner.invoke(app, ["index", "add-items", str(built / "index"), str(tmp_path / "nope.csv")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_retrieve_with_rerank_and_explain(ranking_stack):
    root, ds = ranking_stack
    user = str(ds.interactions["user_id"].min())
    base = ["retrieve", "-i", str(root / "index"), "--user", user, "-k", "4", "--context", "time=evening,device=mobile"]
    result = runner.invoke(app, [*base, "--rerank", str(root / "rank"), "--candidates", "8", "--explain", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["ranker"]["candidates"] == 8 and out["ranker"]["fingerprint"]
    scores = [r["rerank_score"] for r in out["items"]]
    assert len(scores) == 4 and scores == sorted(scores, reverse=True)
    assert all(r["reasons"]["history"] and r["reasons"]["ranker"] and r["reasons"]["sources"] for r in out["items"])
    table = runner.invoke(app, [*base, "--rerank", str(root / "rank"), "--explain"])
    assert table.exit_code == 0 and "retrieval" in table.output and "because of" in table.output and "proposed by:" in table.output
    bad = runner.invoke(app, [*base, "--rerank", str(root / "nope")])
    assert bad.exit_code == 2 and "does not exist" in bad.output and "recsys train ranker" in bad.output
    deep = runner.invoke(app, [*base, "--rerank", str(root / "rank"), "--candidates", "31"])
    assert deep.exit_code == 2 and "1-30" in deep.output


def test_batch_score_with_rerank(ranking_stack, tmp_path):
    root, ds = ranking_stack
    users = tmp_path / "users.csv"
    pl.DataFrame({"user_id": ds.interactions["user_id"].unique().sort().head(3)}).write_csv(users)
    result = runner.invoke(app, ["batch-score", "-i", str(root / "index"), "-o", str(tmp_path / "c"), "--users", str(users), "-k", "6",
                                 "--rerank", str(root / "rank"), "--rerank-depth", "3", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["users"] == 3
    out = pl.read_parquet(tmp_path / "c" / "part-00000.parquet")
    # every list is the ranker's (3 retrieved items plus the other sources' candidates), ordered by its score
    assert out.height == 18 and out["rerank_score"].null_count() == 0
    assert out.group_by("user_id").agg(ok=(pl.col("rerank_score").diff().fill_null(0) <= 0).all())["ok"].all()
    assert out.group_by("user_id").agg(n=pl.col("retrieval_score").is_not_null().sum())["n"].max() <= 3
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert manifest["inputs"]["ranker_fingerprint"] and manifest["inputs"]["rerank_depth"] == 3
