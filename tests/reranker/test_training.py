"""Training cases and hard negatives, and the listwise fine-tune: only the top layer and the heads move, the loss
falls, the scores leave the bi-encoder cosine, and the CPU budget stops it."""

from __future__ import annotations

import numpy as np

from recsys.reranker.config import CrossEncoderArguments
from recsys.reranker.examples import hard_negatives, training_cases
from recsys.reranker.model import CrossEncoder
from recsys.reranker.training import fit_cross_encoder

from .conftest import FAST


def test_training_cases_are_sequence_prefixes(demo_split):
    data = demo_split.train
    cases = training_cases(data, 3)
    lens = data.sequences.lengths
    assert len(cases) == int(np.minimum(np.maximum(lens - 1, 0), 3).sum())
    for r in range(0, len(cases), 7):
        seq = data.sequences.row(int(cases.users[r]))
        h = cases.history.row(r)
        assert len(h) >= 1 and np.array_equal(seq[: len(h)], h) and seq[len(h)] == cases.targets[r]
    assert training_cases(data, None).history.lengths.sum() > cases.history.lengths.sum()


def test_hard_negatives_come_from_the_pool_without_history_or_target(demo_split, demo_ease):
    data = demo_split.train
    cases = training_cases(data, 2)
    negs = hard_negatives(cases, demo_ease.score, 10, 5, np.random.default_rng(0))
    scores = demo_ease.score(cases)
    for r in range(0, len(cases), 5):
        banned = set(cases.history.row(r).tolist()) | {int(cases.targets[r])}
        s = scores[r].astype(np.float64)
        s[list(banned)] = -np.inf
        pool = set(np.argsort(-s)[:10].tolist())
        assert len(set(negs[r].tolist())) == 5 and set(negs[r].tolist()) <= pool and not banned & set(negs[r].tolist())


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
