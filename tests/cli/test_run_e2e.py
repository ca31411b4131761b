"""End to end through the real CLI: `recsys run` of a small copy of pipelines/demo.toml (every stage, real MiniLM
retriever, LightGBM ranker, real FAISS), then the CLI's retrieve on what it built."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

pytestmark = pytest.mark.slow

PIPELINE = """
[pipeline]
name = "e2e"
[data]
source = "demo"
out = "{root}/ds"
users = 60
items = 50
interactions_per_user = 8
[train]
out = "{root}/run"
[train.retriever]
epochs = 2
max_steps = 10
d_model = 32
use_context = true
[ranker]
out = "{root}/rank"
depth = 6
[ranker.ltr]
min_child_samples = 20
n_estimators = 30
[index]
out = "{root}/index"
[retrieve]
out = "{root}/retrieve.json"
k = 4
context = "time=evening,device=mobile"
rerank = true
explain = true
[evaluate]
out = "{root}/evaluation.json"
models = ["popularity", "ease"]
cold_start = false
[batch]
out = "{root}/candidates"
k = 8
chunk_size = 25
rerank = true
rerank_depth = 3
"""


def _recsys(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recsys", *args], cwd=cwd, capture_output=True, text=True, timeout=900)


def test_recsys_run_every_stage_then_retrieve(tmp_path):
    toml = tmp_path / "e2e.toml"
    toml.write_text(PIPELINE.format(root=tmp_path))
    done = _recsys("run", str(toml), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    retrieved = json.loads((tmp_path / "retrieve.json").read_text())["results"]
    assert len(retrieved) == 3
    for r in retrieved:
        scores = [it["rerank_score"] for it in r["items"]]
        assert len(scores) == 4 and scores == sorted(scores, reverse=True)
        assert all("history" in it["reasons"] and it["reasons"]["ranker"] for it in r["items"])
    report = json.loads((tmp_path / "evaluation.json").read_text())
    assert [m["model"] for m in report["results"]] == ["popularity", "ease"]
    cands = pl.read_parquet(sorted((tmp_path / "candidates").glob("part-*.parquet")))
    assert cands["user_id"].n_unique() == 60 and cands.filter(pl.col("rank") <= 3)["rerank_score"].null_count() == 0
    # a second run is all skipped
    again = _recsys("run", str(toml), cwd=tmp_path)
    assert again.returncode == 0 and again.stderr.count("skipped") + again.stdout.count("skipped") >= 7
    # the CLI retrieve on the built index, ranked
    user = str(pl.read_parquet(tmp_path / "ds" / "interactions.parquet")["user_id"].min())
    out = _recsys("retrieve", "-i", str(tmp_path / "index"), "--user", user, "-k", "3", "--rerank", str(tmp_path / "rank"), "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(json.loads(out.stdout)["items"]) == 3
