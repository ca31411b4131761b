"""The optional text-tower fine-tune goes through the sentence-transformers trainer (MNRL, no duplicates)."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.retriever import RetrieverTrainingArguments, TwoTowerRetriever, load_text_model
from recsys.retriever.training import text_pairs

from .conftest import FAST

pytestmark = pytest.mark.slow
# the trainer API needs sentence-transformers' training extras (datasets, accelerate)
pytest.importorskip("datasets")
pytest.importorskip("accelerate")


def test_pairs_are_consecutive_distinct_items(synthetic_split):
    r = TwoTowerRetriever(RetrieverTrainingArguments(**FAST))
    texts = r.render_items(synthetic_split.train.items)
    anchors, positives = text_pairs(r, synthetic_split.train, texts, 50, seed=0)
    assert len(anchors) == len(positives) == 50
    assert all(a != p for a, p in zip(anchors, positives))
    r.args.text_finetune_pairs = "user"
    anchors, positives = text_pairs(r, synthetic_split.train, texts, 10, seed=0)
    assert all(a.startswith("Recently: ") for a in anchors)


def test_finetune_changes_the_text_tower_and_survives_save(tmp_path, synthetic_split):
    args = RetrieverTrainingArguments(**{**FAST, "epochs": 1, "text_finetune_steps": 2, "text_finetune_batch_size": 8})
    r = TwoTowerRetriever(args).fit(synthetic_split.train)
    assert r.history[0]["stage"] == "text_finetune" and r.history[0]["steps"] == 2
    text = ["The ghost story | Horror | 1990"]
    base = load_text_model().encode(text, normalize_embeddings=True)
    tuned = r.text_model.encode(text, normalize_embeddings=True)
    assert not np.allclose(base, tuned)  # the shared base model stays untouched, the copy moved
    r.save(tmp_path / "m")
    loaded = TwoTowerRetriever.load(tmp_path / "m")
    np.testing.assert_allclose(loaded.encode_items(text), r.encode_items(text), atol=1e-6)
