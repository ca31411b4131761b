"""Settings of the reranker (no model loaded)."""

from __future__ import annotations

import pytest

from recsys.reranker.config import RerankerTrainingArguments


def test_defaults_round_trip_through_a_dict():
    a = RerankerTrainingArguments(loss="listnet", use_context=False)
    b = RerankerTrainingArguments.from_dict(a.to_dict())
    assert b == a
    assert b.templates.history_max_items == a.templates.history_max_items


def test_unknown_and_bad_settings_are_errors():
    with pytest.raises(ValueError, match="unknown reranker settings: epoch"):
        RerankerTrainingArguments.from_dict({"epoch": 1})
    with pytest.raises(ValueError, match="loss must be one of"):
        RerankerTrainingArguments(loss="hinge")
    with pytest.raises(ValueError, match="hard_negative_fraction"):
        RerankerTrainingArguments(hard_negative_fraction=1.5)
    with pytest.raises(ValueError, match="context_negatives must be >= 0"):
        RerankerTrainingArguments(context_negatives=-1)
    with pytest.raises(ValueError, match="context_negatives need the bce loss"):
        RerankerTrainingArguments(context_negatives=1, loss="listnet")


def test_toml(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('[reranker]\nmax_steps = 7\nloss = "lambda"\n[reranker.templates]\nhistory_max_items = 3\n')
    a = RerankerTrainingArguments.from_toml(p)
    assert (a.max_steps, a.loss, a.templates.history_max_items) == (7, "lambda", 3)


def test_base_model_defaults_to_the_bundled_minilm():
    import os

    assert os.path.isdir(RerankerTrainingArguments().resolved_base_model)
