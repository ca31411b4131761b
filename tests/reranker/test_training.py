"""The listwise fine-tune: only the top layer and the heads move, the loss falls, the scores leave the bi-encoder
cosine, and the CPU budget stops it."""

from __future__ import annotations

import numpy as np

from recsys.reranker.config import CrossEncoderArguments
from recsys.reranker.model import CrossEncoder
from recsys.reranker.training import fit_cross_encoder

from .conftest import FAST


def test_listwise_fine_tune_moves_only_the_top(trained, demo_split):
    fresh = CrossEncoder(CrossEncoderArguments(**FAST))
    for name, p in fresh.bert.named_parameters():
        q = dict(trained.bert.named_parameters())[name]
        top = name.startswith(f"encoder.layer.{fresh.split}.")
        assert top or name.startswith("pooler") or np.array_equal(p.detach().numpy(), q.detach().numpy()), name
    assert trained.split == fresh.bert.config.num_hidden_layers - 1
    assert not np.allclose(trained.heads["user"].weight.detach().numpy(), np.eye(384))
    h = trained.history
    assert h["steps"] == 20 and h["stopped_by"] == "max_steps" and h["list_size"] == 8
    assert h["loss_last"] < h["loss_first"]  # the last 5 steps' mean loss below the first 5 steps'
    assert trained.data_fingerprint is not None
    fresh.index_catalogue(demo_split.train.items)
    histories = [demo_split.train.sequences.row(u) for u in range(10)]
    case, item = np.repeat(np.arange(10), 8), np.tile(np.arange(8), 10)
    assert np.abs(trained.score(histories, case, item) - fresh.score(histories, case, item)).max() > 1e-3


def test_cpu_budget_stops_training(demo_split, demo_ease):
    model = CrossEncoder(CrossEncoderArguments(**{**FAST, "max_steps": 10_000, "cpu_budget_s": 0.5}))
    fit_cross_encoder(model, demo_split.train, demo_ease.score)
    assert model.history["stopped_by"] == "cpu_budget" and model.history["steps"] < 10_000
