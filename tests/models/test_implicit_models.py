"""iALS and BPR (``implicit``) against the shared contract, plus their own edges."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from recsys.errors import RecsysError
from recsys.data.types import Cases
from recsys.models import get_model_class
from recsys.models.implicit_models import BPR, IALS
from tests.models.contract import UNSEEN, RecommenderContract, cases_for, synthetic_train

try:
    import implicit  # noqa: F401

    HAS_IMPLICIT = True
except ImportError:  # pragma: no cover - the optional extra is missing
    HAS_IMPLICIT = False
needs_implicit = pytest.mark.skipif(not HAS_IMPLICIT, reason="needs the optional 'implicit' package (recsys[ials])")


# The synthetic catalogue is two blocks: a rank-2 factorisation recovers them; more factors memorise the
# 30 sparse rows and lose the unseen in-block items (measured: factors 8 fails the contract for most users).
@needs_implicit
class TestIALS(RecommenderContract):
    def make_model(self):
        return IALS(factors=2, regularization=0.01, alpha=1.0, iterations=15, seed=0)


@needs_implicit
class TestBPR(RecommenderContract):
    def make_model(self):
        return BPR(factors=8, learning_rate=0.05, regularization=0.1, iterations=1000, seed=0)


@needs_implicit
@pytest.mark.parametrize("model", [IALS(factors=2), BPR(factors=8, iterations=50)], ids=["ials", "bpr"])
def test_items_without_training_interactions_have_no_score(model):
    data = synthetic_train()
    s = model.fit(data).score(cases_for(data, [0, 25]))
    assert np.isneginf(s[:, UNSEEN]).all()
    assert np.isfinite(np.delete(s, UNSEEN, axis=1)).all()


@needs_implicit
@pytest.mark.parametrize("cls", [IALS, BPR])
def test_seed_changes_the_fit_and_factor_shapes(cls):
    data = synthetic_train()
    a = cls(factors=4, seed=0).fit(data)
    b = cls(factors=4, seed=1).fit(data)
    assert a.user_factors_.shape[0] == data.n_users
    assert a.item_factors_.shape[0] == data.n_items
    assert a.user_factors_.shape[1] == a.item_factors_.shape[1]
    assert not np.allclose(a.user_factors_, b.user_factors_)


@needs_implicit
def test_scores_follow_case_users_not_row_order():
    data = synthetic_train()
    model = IALS(factors=2).fit(data)
    both = model.score(cases_for(data, [3, 27]))
    np.testing.assert_array_equal(both[::-1], model.score(cases_for(data, [27, 3])))


@needs_implicit
def test_user_outside_training_is_an_error():
    data = synthetic_train()
    model = IALS(factors=2).fit(data)
    c = cases_for(data, [0])
    with pytest.raises(RecsysError, match="users seen in training"):
        model.score(Cases(np.array([data.n_users]), c.history, c.targets, c.exclude))


@pytest.mark.parametrize("cls", [IALS, BPR])
def test_missing_implicit_is_a_clean_error(cls, monkeypatch):
    for mod in ("implicit", "implicit.cpu", "implicit.cpu.als", "implicit.cpu.bpr"):
        monkeypatch.setitem(sys.modules, mod, None)
    with pytest.raises(RecsysError, match=r"pip install 'recsys\[ials\]'"):
        cls().fit(synthetic_train())


def test_registry_and_grids():
    assert get_model_class("ials") is IALS and get_model_class("bpr") is BPR
    assert IALS.refit_for_test and BPR.refit_for_test
    assert len(IALS.grid) == 8
    assert {"factors": 32, "regularization": 0.01, "alpha": 1.0} in IALS.grid
    assert BPR.grid == [{"factors": 64, "learning_rate": 0.01, "iterations": 100}]
    for point in IALS.grid + BPR.grid:
        assert set(point) <= set(IALS().params) | set(BPR().params)
