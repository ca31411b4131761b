"""NDCG@10 of a target within a fixed candidate list (known answers)."""

from __future__ import annotations

import numpy as np

from recsys.reranker.evaluation import list_ndcg


def test_list_ndcg_known_answers():
    lists = [np.array([5, 6, 7]), np.array([5, 6, 7]), np.array([1, 2]), np.arange(20)]
    scores = [np.array([0.1, 0.9, 0.5]), np.array([0.5, 0.5, 0.5]), np.array([1.0, 0.0]), -np.arange(20.0)]
    targets = np.array([7, 6, 9, 12])
    got = list_ndcg(lists, scores, targets)
    np.testing.assert_allclose(got, [1 / np.log2(3), 1 / np.log2(4), 0.0, 0.0])  # ties count against; absent; rank 12
