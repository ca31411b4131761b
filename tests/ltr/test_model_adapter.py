"""``recsys evaluate -m ltr``: the adapter runs the shared model contract and the protocol end to end."""

from __future__ import annotations

import numpy as np

from recsys.evaluation.protocol import EvaluationSettings, evaluate
from recsys.models import get_model_class
from recsys.models.ltr import LTRRecommender
from tests.ltr.synthetic import context_rule_dataset
from tests.models.contract import RecommenderContract

TINY = {"min_child_samples": 5, "num_leaves": 4, "n_estimators": 20, "threads": 1, "rating": False}


class TestLTRContract(RecommenderContract):
    def make_model(self):
        return LTRRecommender(**TINY)


def test_registered_and_evaluated_like_every_model():
    assert get_model_class("ltr") is LTRRecommender
    ds = context_rule_dataset(users=120, items=30, length=8)
    settings = EvaluationSettings(models=["popularity", "ltr"], params={"ltr": {**TINY, "sources": [{"kind": "ease", "depth": 30}]}}, cold_start=False)
    report = evaluate(ds, settings)
    pop, ltr = (r["metrics"] for r in report["results"])
    assert ltr["NDCG@10"] > pop["NDCG@10"]  # the device -> format rule is worth a lot here
    assert np.isfinite(ltr["AUC"])


def test_refit_without_validation_reuses_what_validation_chose():
    from tests.ltr.synthetic import context_rule_split

    split = context_rule_split(users=120, items=30, length=8)
    model = LTRRecommender(**{**TINY, "sources": [{"kind": "ease", "depth": 30}]}).fit(split.train, split.validation)
    again = model.params_without_validation()
    assert again["n_estimators"] == model.ranker_.best_iteration_ <= TINY["n_estimators"]
    assert [s["kind"] for s in again["sources"]] == ["ease"]
    LTRRecommender(**{**TINY, **again}).fit(split.train, None)  # accepted as settings
