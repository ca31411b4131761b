"""Contract every recommender runs against: a synthetic two-block catalogue with a known answer.

Users 0..19 consume 6 of items 0..9 (block A, the more popular block), users 20..29 consume 4 of items 10..19 (block B);
items 20..21 are never seen in training. A personalised model must put an unseen in-block item first and score
in-block items above out-of-block ones on average; any model must return finite scores for seen items and be deterministic.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from recsys.data.types import Cases, Sequences, TrainData
from recsys.models.base import Recommender

N_ITEMS = 22
BLOCK_A = np.arange(0, 10)
BLOCK_B = np.arange(10, 20)
UNSEEN = np.array([20, 21])


def synthetic_train(seed: int = 0) -> TrainData:
    rng = np.random.default_rng(seed)
    rows, items = [], []
    for u in range(30):
        block = BLOCK_A if u < 20 else BLOCK_B
        chosen = rng.choice(block, size=6 if u < 20 else 4, replace=False)
        rows += [u] * len(chosen)
        items += list(chosen)
    seq = Sequences.from_sorted(np.array(rows), np.array(items), 30)
    catalogue = pl.DataFrame({
        "item_id": np.arange(N_ITEMS),
        "title": [f"{'alpha' if i < 10 else 'beta' if i < 20 else 'gamma'} thing {i}" for i in range(N_ITEMS)],
    })
    events = pl.DataFrame({
        "u": np.array(rows, dtype=np.int32), "i": np.array(items, dtype=np.int32),
        "timestamp": pl.datetime_range(pl.datetime(2024, 1, 1), pl.datetime(2024, 1, 1) + pl.duration(hours=len(rows) - 1), "1h", eager=True, time_zone="UTC"),
    })
    return TrainData(seq, N_ITEMS, catalogue, events)


def cases_for(data: TrainData, users: list[int]) -> Cases:
    users_arr = np.array(users)
    hist = data.sequences.take(users_arr)
    targets = np.array([int(np.setdiff1d(BLOCK_A if u < 20 else BLOCK_B, data.sequences.row(u))[0]) for u in users])
    return Cases(users_arr, hist, targets, hist)


class RecommenderContract:
    """Mix into a test class and define ``make_model``; set ``personalised = False`` for non-personal models."""

    personalised = True

    def make_model(self) -> Recommender:  # pragma: no cover - overridden
        raise NotImplementedError

    def _fitted(self) -> tuple[Recommender, TrainData]:
        data = synthetic_train()
        return self.make_model().fit(data, None), data

    def test_scores_have_catalogue_shape(self) -> None:
        model, data = self._fitted()
        s = model.score(cases_for(data, [0, 25]))
        assert s.shape == (2, N_ITEMS)
        assert s.dtype == np.float32
        seen = np.unique(data.sequences.items)
        assert np.isfinite(s[:, seen]).all()

    def test_in_block_items_rank_first(self) -> None:
        model, data = self._fitted()
        users = list(range(20)) + (list(range(20, 30)) if self.personalised else [])
        s = model.score(cases_for(data, users))
        for r, u in enumerate(users):
            block = BLOCK_A if u < 20 else BLOCK_B
            other = BLOCK_B if u < 20 else BLOCK_A
            unseen_in = np.setdiff1d(block, data.sequences.row(u))
            candidates = np.setdiff1d(np.arange(N_ITEMS), data.sequences.row(u))
            best = candidates[np.argmax(s[r, candidates])]
            assert best in block, f"user {u}: the top unseen item {best} is out of block"
            assert s[r, unseen_in].mean() > s[r, other].mean(), f"user {u}: out-of-block items score higher on average"

    def test_deterministic(self) -> None:
        a, data = self._fitted()
        b, _ = self._fitted()
        c = cases_for(data, [1, 21])
        np.testing.assert_allclose(a.score(c), b.score(c), rtol=1e-5, atol=1e-6)
