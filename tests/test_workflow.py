"""The pipeline runner: stages run in order, up-to-date stages are skipped, --force and changes rerun."""

from __future__ import annotations

import json

import pytest

from recsys.errors import RecsysError
from recsys.workflow import load_pipeline, run_pipeline

PIPELINE = """
[pipeline]
name = "tiny"
[data]
source = "demo"
out = "{root}/ds"
users = 120
items = 80
interactions_per_user = 12
[evaluate]
out = "{root}/report.json"
models = ["popularity"]
cold_start = false
"""


@pytest.fixture()
def pipeline_file(tmp_path):
    p = tmp_path / "tiny.toml"
    p.write_text(PIPELINE.format(root=tmp_path))
    return p


def _statuses(outcomes):
    return {o.stage: o.status for o in outcomes}


def test_second_run_skips_and_force_reruns(pipeline_file, tmp_path):
    first = run_pipeline(load_pipeline(pipeline_file, env={}))
    assert _statuses(first) == {"data": "ran", "evaluate": "ran"}
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["results"][0]["model"] == "popularity"
    assert report["manifest"]["kind"] == "evaluation"

    second = run_pipeline(load_pipeline(pipeline_file, env={}))
    assert _statuses(second) == {"data": "skipped", "evaluate": "skipped"}

    forced = run_pipeline(load_pipeline(pipeline_file, env={}), force=["evaluate"])
    assert _statuses(forced) == {"data": "skipped", "evaluate": "ran"}


def test_changed_settings_rerun_only_what_depends_on_them(pipeline_file):
    run_pipeline(load_pipeline(pipeline_file, env={}))
    changed = run_pipeline(load_pipeline(pipeline_file, ["evaluate.models=popularity,ease"], env={}))
    assert _statuses(changed) == {"data": "skipped", "evaluate": "ran"}
    regenerated = run_pipeline(load_pipeline(pipeline_file, ["data.seed=5"], env={}))
    assert _statuses(regenerated) == {"data": "ran", "evaluate": "ran"}


def test_unknown_force_stage_is_refused(pipeline_file):
    with pytest.raises(RecsysError, match="unknown stage"):
        run_pipeline(load_pipeline(pipeline_file, env={}), force=["trian"])


FULL = """
[pipeline]
name = "tiny-two-stage"
[data]
source = "demo"
out = "{root}/ds"
users = 120
items = 80
interactions_per_user = 12
[train]
out = "{root}/run"
[train.retriever]
epochs = 2
max_steps = 10
seed = 0
[ranker]
out = "{root}/rank"
depth = 20
[ranker.ltr]
min_child_samples = 20
n_estimators = 50
[index]
out = "{root}/index"
[retrieve]
out = "{root}/retrieve.json"
k = 5
rerank = true
explain = true
[evaluate]
out = "{root}/report.json"
models = ["popularity"]
cold_start = false
[evaluate.second_stage]
candidates = 20
retriever = {{epochs = 2, max_steps = 10, seed = 0}}
ltr = {{min_child_samples = 20, n_estimators = 50}}
[batch]
out = "{root}/cands"
k = 5
rerank = true
"""


@pytest.mark.slow
def test_two_stage_pipeline_trains_the_ranker_serves_with_it_and_reports_what_it_adds(tmp_path):
    p = tmp_path / "full.toml"
    p.write_text(FULL.format(root=tmp_path))
    lines: list[str] = []
    outcomes = run_pipeline(load_pipeline(p, env={}), log=lines.append)
    assert _statuses(outcomes) == dict.fromkeys(["data", "train", "ranker", "index", "retrieve", "evaluate", "batch"], "ran")
    assert json.loads((tmp_path / "rank" / "manifest.json").read_text())["kind"] == "ltr"
    retrieved = json.loads((tmp_path / "retrieve.json").read_text())["results"][0]["items"]
    assert all(r["rerank_score"] is not None and r["reasons"]["ranker"] for r in retrieved)
    report = json.loads((tmp_path / "report.json").read_text())["second_stage"]
    assert {"retriever", "pipeline", "paired_NDCG@10"} <= set(report) and report["test_cases"] == 120
    paired = report["paired_NDCG@10"]["mean"]
    assert paired == pytest.approx(report["pipeline"]["NDCG@10"] - report["retriever"]["NDCG@10"], abs=1e-9) and report["paired_NDCG@10"]["se"] > 0
    text = "\n".join(lines)
    assert "retrieve only" in text and "retrieve + ranker" in text and "(paired)" in text
    # the ranker's stage output feeds retrieve and batch: a changed ranker setting reruns them, not the retriever
    again = run_pipeline(load_pipeline(p, ["ranker.depth=15"], env={}))
    assert _statuses(again)["train"] == "skipped" and _statuses(again)["ranker"] == "ran" and _statuses(again)["batch"] == "ran"
