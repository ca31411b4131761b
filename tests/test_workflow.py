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
