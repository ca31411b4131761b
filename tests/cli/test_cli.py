"""The CLI through CliRunner: every command's --help, exit codes, evaluate and run end to end."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from recsys.cli import app

runner = CliRunner()


def _commands(group=None, prefix=()):
    import typer.main

    group = group or typer.main.get_command(app)
    for name, cmd in group.commands.items():
        path = (*prefix, name)
        yield path
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, path)


ALL_COMMANDS = sorted(_commands())


def test_top_level_help_lists_the_stages():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("data", "evaluate", "run"):
        assert name in result.output


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=[" ".join(p) for p in ALL_COMMANDS])
def test_every_command_has_help(path):
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_missing_dataset_is_a_clean_error(tmp_path):
    result = runner.invoke(app, ["evaluate", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_unknown_model_is_a_clean_error(tiny_dataset_dir):
    result = runner.invoke(app, ["evaluate", str(tiny_dataset_dir), "--models", "popularity,nosuch"])
    assert result.exit_code == 2
    assert "unknown model 'nosuch'" in result.output


def test_evaluate_json_report_shape(tiny_dataset_dir, tmp_path):
    out = tmp_path / "report.json"
    result = runner.invoke(app, ["evaluate", str(tiny_dataset_dir), "-m", "popularity,ease", "--json", str(out), "-q", "--param", "ease.l2=10"])
    assert result.exit_code == 0, result.output
    assert "popularity" in result.output and "ease" in result.output
    report = json.loads(out.read_text())
    assert [r["model"] for r in report["results"]] == ["popularity", "ease"]
    keys = {"HR@10", "HR@20", "NDCG@10", "NDCG@20", "MRR@10", "coverage@10", "cold_HR@10", "cold_HR@20", "cold_NDCG@10", "AUC"}
    for r in report["results"]:
        assert set(r["metrics"]) == keys
        assert {"model", "params", "metrics", "stderr", "fit_seconds", "score_seconds"} <= set(r)
    assert report["results"][1]["params"] == {"l2": 10}
    assert report["dataset"]["test_cases"] > 0


def test_evaluate_json_to_stdout(tiny_dataset_dir):
    result = runner.invoke(app, ["evaluate", str(tiny_dataset_dir), "-m", "popularity", "--json", "-", "-q", "--no-cold-start"])
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["results"][0]["metrics"]["cold_HR@10"] is None
