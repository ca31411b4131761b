"""``recsys train reranker`` and ``recsys rerank`` end to end on tiny demo data (a few training steps)."""

from __future__ import annotations

import json

import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from recsys.cli import rerank as rerank_cli

pytestmark = pytest.mark.slow


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("train-reranker")(rerank_cli.train_reranker_cmd)
    app.command("rerank")(rerank_cli.rerank_cmd)
    return app


def test_train_then_rerank(tmp_path):
    from recsys.data.dataset import Dataset
    from recsys.data.demo import generate_demo
    from recsys.retriever import RetrieverTrainingArguments
    from recsys.retriever.run import train_run

    ds, source = generate_demo(users=40, items=36, seed=1, interactions_per_user=8)
    saved = ds.save(tmp_path / "ds", source=source)
    ds = Dataset.load(saved.path)
    train_run(ds, tmp_path / "ret", RetrieverTrainingArguments(d_model=16, layers=1, heads=2, max_len=8, epochs=1, threads=1))
    (tmp_path / "rr.toml").write_text("[reranker]\nrating_max_steps = 2\nbatch_size = 8\n[reranker.templates]\nhistory_max_items = 3\n")
    runner = CliRunner()
    res = runner.invoke(
        _app(),
        ["train-reranker", str(saved.path), "--retriever", str(tmp_path / "ret"), "--out", str(tmp_path / "rr"), "--config", str(tmp_path / "rr.toml"),
         "--max-steps", "2", "--max-length", "64", "--positives-per-user", "1", "--rating-head", "--eval-cases", "10", "--json"],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout[res.stdout.index("{"):])
    assert 0.0 <= summary["metrics"]["val_win_rate"] <= 1.0
    assert summary["metrics"]["rating_RMSE"] is not None and summary["retriever_fingerprint"]
    manifest = json.loads((tmp_path / "rr" / "manifest.json").read_text())
    assert manifest["kind"] == "reranker" and manifest["rating_head"] is True and manifest["settings"]["max_steps"] == 2

    cands = pl.DataFrame({"user_id": [1, 1, 1, 2, 2], "rank": [1, 2, 3, 1, 2], "item_id": [3, 5, 7, 2, 4]})
    cands.write_parquet(tmp_path / "cands.parquet")
    res = runner.invoke(
        _app(),
        ["rerank", str(tmp_path / "rr"), str(tmp_path / "cands.parquet"), "--out", str(tmp_path / "out.parquet"), "--context", "time=evening,device=mobile", "--explain", "--json"],
    )
    assert res.exit_code == 0, res.output
    out = pl.read_parquet(tmp_path / "out.parquet")
    assert out.height == 5 and set(out.columns) >= {"user_id", "item_id", "rank", "retrieval_rank", "rerank_score", "reasons"}
    for _, g in out.group_by("user_id"):
        g = g.sort("rank")
        assert g["rerank_score"].to_list() == sorted(g["rerank_score"].to_list(), reverse=True)
    reasons = json.loads(out["reasons"][0])
    assert {"rerank_score", "history", "context"} <= set(reasons)
    assert "device" in reasons["context"]

    # the served score fuses a retrieval_score column with the run's validated weight
    from recsys.reranker.config import FUSION_GRID

    w = json.loads((tmp_path / "rr" / "config.json").read_text())["retrieval_weight"]
    assert w == summary["retrieval_weight"] and w in FUSION_GRID and manifest["metrics"]["fusion"]["retrieval_weight"] == w
    cands.with_columns(retrieval_score=pl.Series([0.9, 0.5, 0.1, 0.8, 0.2])).write_parquet(tmp_path / "cands_scored.parquet")
    res = runner.invoke(_app(), ["rerank", str(tmp_path / "rr"), str(tmp_path / "cands_scored.parquet"), "--out", str(tmp_path / "fused.parquet"), "--context", "time=evening,device=mobile"])
    assert res.exit_code == 0, res.output
    plain = out.select("user_id", "item_id", logit="rerank_score")
    fused = pl.read_parquet(tmp_path / "fused.parquet").join(plain, on=["user_id", "item_id"])
    diff = (fused["rerank_score"] - fused["logit"]).to_numpy()
    assert diff == pytest.approx(w * fused["retrieval_score"].to_numpy(), abs=1e-3)
