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


def test_retrieve_with_rerank_and_explain(rerank_stack):
    root, ds = rerank_stack
    user = str(ds.interactions["user_id"].min())
    base = ["retrieve", "-i", str(root / "index"), "--user", user, "-k", "4", "--context", "time=evening,device=mobile"]
    result = runner.invoke(app, [*base, "--rerank", str(root / "rerank"), "--candidates", "8", "--explain", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["reranker"]["candidates"] == 8 and out["reranker"]["fingerprint"]
    scores = [r["rerank_score"] for r in out["items"]]
    assert len(scores) == 4 and scores == sorted(scores, reverse=True)
    assert all(r["reasons"]["history"] and "device" in r["reasons"]["context"] for r in out["items"])
    table = runner.invoke(app, [*base, "--rerank", str(root / "rerank"), "--explain"])
    assert table.exit_code == 0 and "retrieval" in table.output and "because of" in table.output and "context:" in table.output
    bad = runner.invoke(app, [*base, "--rerank", str(root / "nope")])
    assert bad.exit_code == 2 and "does not exist" in bad.output
    bad_inf = runner.invoke(app, [*base, "--rerank", str(root / "rerank"), "--inference", "fp8"])
    assert bad_inf.exit_code == 2 and "fp32" in bad_inf.output


def test_batch_score_with_rerank(rerank_stack, tmp_path):
    root, ds = rerank_stack
    users = tmp_path / "users.csv"
    pl.DataFrame({"user_id": ds.interactions["user_id"].unique().sort().head(3)}).write_csv(users)
    result = runner.invoke(app, ["batch-score", "-i", str(root / "index"), "-o", str(tmp_path / "c"), "--users", str(users), "-k", "6",
                                 "--rerank", str(root / "rerank"), "--rerank-depth", "3", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["users"] == 3
    out = pl.read_parquet(tmp_path / "c" / "part-00000.parquet")
    assert out.height == 18 and out["rerank_score"].null_count() == 9


def test_build_cooccurrence_then_retrieve_and_batch_with_it(rerank_stack, tmp_path):
    root, ds = rerank_stack
    result = runner.invoke(app, ["build-cooccurrence", str(root / "ds"), "--out", str(tmp_path / "co"), "--neighbours", "10", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["items"] == ds.items.height
    user = str(ds.interactions["user_id"].min())
    base = ["retrieve", "-i", str(root / "index"), "--user", user, "-k", "30", "--cooccurrence", str(tmp_path / "co")]
    needs = runner.invoke(app, base)
    assert needs.exit_code == 2 and "needs --rerank" in needs.output
    result = runner.invoke(app, [*base, "--rerank", str(root / "rerank"), "--candidates", "4", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["reranker"]["cooccurrence"]["fingerprint"]
    sources = {r["reasons"]["source"] for r in out["items"]}
    assert sources & {"co-occurrence", "both"} and len(out["items"]) > 4
    users = tmp_path / "users.csv"
    pl.DataFrame({"user_id": ds.interactions["user_id"].unique().sort().head(2)}).write_csv(users)
    res = runner.invoke(app, ["batch-score", "-i", str(root / "index"), "-o", str(tmp_path / "c"), "--users", str(users), "-k", "8",
                              "--rerank", str(root / "rerank"), "--rerank-depth", "3", "--cooccurrence", str(tmp_path / "co"), "--json"])
    assert res.exit_code == 0, res.output
    got = pl.read_parquet(tmp_path / "c" / "part-00000.parquet")
    assert got.height == 16 and got.group_by("user_id").agg(pl.col("item_id").n_unique())["item_id"].to_list() == [8, 8]
    # the pool (3 two-tower + up to 3 co-occurrence items) is reranked, the rest follow in retrieval order
    assert got["rerank_score"].null_count() <= 16 - 2 * 3
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert manifest["inputs"]["cooccurrence_fingerprint"]
