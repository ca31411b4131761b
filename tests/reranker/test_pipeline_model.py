"""The harness adapter's merge: reranked candidates above the rest, excluded items never candidates (no model)."""

from __future__ import annotations

import numpy as np

from recsys.data.types import Cases, Sequences
from recsys.models.pipeline import LIFT, rerank_top


def test_rerank_top_lifts_and_orders_candidates():
    scores = np.array([[0.9, 0.8, 0.7, 0.1, 0.0], [0.1, 0.2, 0.3, 0.4, 0.5]], dtype=np.float32)
    hist = Sequences(np.array([0, 1, 1]), np.array([0], dtype=np.int32))  # case 0 has seen item 0
    cases = Cases(np.array([0, 1]), hist, np.array([2, 4]), hist)
    seen = []

    def rerank(histories, cands, retrieval):
        seen.append([sorted(c.tolist()) for c in cands])
        assert [r.tolist() for r in retrieval] == [scores[i, c].tolist() for i, c in enumerate(cands)]
        return [-c.astype(np.float32) for c in cands]  # prefers low item indices

    out = rerank_top(scores, cases, 2, rerank)
    assert seen[0] == [[1, 2], [3, 4]]  # item 0 excluded for case 0
    assert out[0, 1] == LIFT - 1 and out[0, 2] == LIFT - 2 and out[0, 3] == np.float32(0.1)
    assert np.argmax(out[1]) == 3 and out[1, 0] == np.float32(0.1)
