"""Classic baselines against the shared contract."""

from __future__ import annotations

import numpy as np

from recsys.models.ease import EASE
from recsys.models.itemknn import ItemKNN
from recsys.models.popularity import Popularity
from tests.models.contract import UNSEEN, RecommenderContract, cases_for, synthetic_train


class TestPopularity(RecommenderContract):
    personalised = False

    def make_model(self):
        return Popularity()

    def test_never_seen_items_have_no_score(self):
        data = synthetic_train()
        s = Popularity().fit(data).score(cases_for(data, [0]))
        assert np.isneginf(s[0, UNSEEN]).all()


class TestItemKNN(RecommenderContract):
    def make_model(self):
        return ItemKNN(k=5)


class TestEASE(RecommenderContract):
    def make_model(self):
        return EASE(l2=10.0)

    def test_diagonal_is_zero(self):
        model = EASE(l2=10.0).fit(synthetic_train())
        assert np.allclose(np.diag(model.b_), 0.0)
