"""The co-occurrence source equals the harness's ItemKNN and fits in blocks."""

from __future__ import annotations

import numpy as np
import pytest

import recsys.ltr.cooccurrence as co
from recsys.data.demo import generate_demo
from recsys.ltr.sources import CooccurrenceScores


@pytest.fixture(scope="module")
def split():
    from recsys.evaluation.split import encode, leave_one_out

    ds, src = generate_demo(users=120, items=80, seed=5, interactions_per_user=10)
    return leave_one_out(encode(ds))


def test_scores_equal_the_harness_itemknn(split):
    from recsys.models.itemknn import ItemKNN

    expected = ItemKNN(k=7).fit(split.train_full).score(split.test)
    got = CooccurrenceScores(neighbours=7).fit(split.train_full).score(split.test)
    positive = expected > 1e-6
    assert positive.any()
    np.testing.assert_allclose(got[positive], expected[positive], rtol=1e-4, atol=1e-6)
    assert np.isneginf(got[~positive]).all()  # no co-occurrence: the source cannot score the item


def test_block_fit_equals_one_block(split, monkeypatch):
    whole = co.item_neighbours(split.train_full.matrix, 5)
    monkeypatch.setattr(co, "BLOCK_FLOATS", 3 * 80)  # three rows per block
    blocked = co.item_neighbours(split.train_full.matrix, 5)
    assert (whole != blocked).nnz == 0
