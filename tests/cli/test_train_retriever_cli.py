"""`recsys train retriever`: the text fine-tune flags reach the saved settings (real one-step training)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from recsys.cli import app

pytestmark = pytest.mark.slow
pytest.importorskip("datasets")
pytest.importorskip("accelerate")
runner = CliRunner()


def test_text_finetune_flags_reach_the_settings_and_the_manifest(tmp_path, tiny_dataset_dir):
    out = tmp_path / "run"
    result = runner.invoke(app, [
        "train", "retriever", str(tiny_dataset_dir), "--out", str(out), "--epochs", "1", "--max-steps", "1",
        "--text-finetune-steps", "1", "--text-finetune-batch-size", "4", "--logq", "--hard-negatives", "3",
        "--cached", "--mini-batch-size", "2", "--json",
    ])
    assert result.exit_code == 0, result.output
    expected = {
        "text_finetune_steps": 1, "text_finetune_batch_size": 4, "text_finetune_logq": True, "text_finetune_hard_negatives": 3,
        "text_finetune_cached": True, "text_finetune_mini_batch_size": 2,
    }
    config = json.loads((out / "config.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    assert {k: config[k] for k in expected} == expected
    assert {k: manifest["settings"][k] for k in expected} == expected
    stage = manifest["training"][0]
    assert stage["loss_fn"] == "CachedLogQCorrectedMNRL" and stage["hard_negatives"] == 3


def test_bad_text_finetune_flag_is_a_clean_error(tmp_path, tiny_dataset_dir):
    result = runner.invoke(app, ["train", "retriever", str(tiny_dataset_dir), "--out", str(tmp_path / "run"), "--hard-negatives", "-1"])
    assert result.exit_code == 2
    assert "text_finetune_hard_negatives" in result.output
    assert not (tmp_path / "run").exists()
