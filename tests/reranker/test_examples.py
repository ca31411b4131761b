"""Training cases (prefixes of the training sequences) and hard negatives (from the scorer's top, never the history
or the target)."""

from __future__ import annotations

import numpy as np

from recsys.reranker.examples import hard_negatives, training_cases


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
