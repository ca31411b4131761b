"""Metrics on hand-computed cases and the tie rule."""

from __future__ import annotations

import math

import numpy as np

from recsys.evaluation import metrics as M


def test_ranking_metrics_hand_computed():
    ranks = np.array([0, 1, 9, 10, 19, 25])
    means, errs = M.ranking_metrics(ranks)
    assert means["HR@10"] == 3 / 6
    assert means["HR@20"] == 5 / 6
    assert math.isclose(means["NDCG@10"], (1 + 1 / math.log2(3) + 1 / math.log2(11)) / 6)
    assert math.isclose(means["NDCG@20"], (1 + 1 / math.log2(3) + 1 / math.log2(11) + 1 / math.log2(12) + 1 / math.log2(21)) / 6)
    assert math.isclose(means["MRR@10"], (1 + 1 / 2 + 1 / 10) / 6)
    assert math.isclose(errs["HR@10"], np.std([1, 1, 1, 0, 0, 0], ddof=1) / math.sqrt(6))


def test_excluded_items_do_not_count_and_target_is_never_excluded():
    scores = np.array([[5.0, 4.0, 3.0, 2.0]], dtype=np.float32)
    # items 0 and 1 are excluded (seen); target 2 then ranks first; excluding the target itself is ignored
    s = M.prepare_scores(scores, np.array([0, 0, 0]), np.array([0, 1, 2]), np.array([2]))
    keys = M.tie_keys(np.array([0]), 4)
    assert M.target_ranks(s, np.array([2]), keys)[0] == 0
    assert list(M.top_k(s, keys, 2)[0]) == [2, 3]


def test_constant_scores_land_at_chance_level():
    n_cases, n_items = 4000, 50
    scores = np.zeros((n_cases, n_items), dtype=np.float32)
    targets = np.zeros(n_cases, dtype=np.int64)  # always item 0: an id-ordered tie rule would put it first
    s = M.prepare_scores(scores, np.array([], dtype=int), np.array([], dtype=int), targets)
    ranks = M.target_ranks(s, targets, M.tie_keys(np.arange(n_cases), n_items))
    assert abs(ranks.mean() - (n_items - 1) / 2) < 1.0
    hr10 = (ranks < 10).mean()
    assert abs(hr10 - 10 / n_items) < 0.03


def test_tie_keys_depend_on_case_and_item_only():
    a = M.tie_keys(np.array([3, 7]), 10, seed=1)
    b = M.tie_keys(np.array([7]), 10, seed=1)
    assert np.array_equal(a[1], b[0])
    assert not np.array_equal(a[0], a[1])
    assert not np.array_equal(M.tie_keys(np.array([3]), 10, seed=2)[0], a[0])


def test_roc_auc():
    assert M.roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert M.roc_auc(np.array([1.0, 2.0]), np.array([1, 1])) is None
    assert M.roc_auc(np.array([-np.inf, 1.0]), np.array([0, 1])) == 1.0
