"""The harness reproduces the reference baseline rows of EVALUATION.md on the real MovieLens 100K."""

from __future__ import annotations

import pytest

from recsys.evaluation.protocol import EvaluationSettings, evaluate

# (HR@10, NDCG@10, stderr of NDCG@10, cov@10) from ../shared/EVALUATION.md
REFERENCE = {
    "popularity": (0.0859, 0.0440, 0.0052, 0.054),
    "itemknn": (0.1294, 0.0686, 0.0064, 0.307),
    "ease": (0.1485, 0.0723, 0.0064, 0.332),
    "ials": (0.1442, 0.0757, 0.0067, 0.339),
}


@pytest.mark.slow
def test_baselines_match_the_reference_table(movielens_100k_dataset):
    pytest.importorskip("implicit", reason="iALS needs the ials extra (pip install 'recsys[ials]')")
    report = evaluate(movielens_100k_dataset, EvaluationSettings(models=list(REFERENCE), cold_start=True))
    d = report["dataset"]
    assert (d["users"], d["items"], d["test_cases"], d["cold_cases"]) == (943, 1682, 943, 9909)
    by_model = {r["model"]: r for r in report["results"]}
    assert by_model["itemknn"]["params"] == {"k": 10}
    assert by_model["ease"]["params"] == {"l2": 100.0}
    assert {k: by_model["ials"]["params"][k] for k in ("factors", "regularization", "alpha")} == {"factors": 32, "regularization": 0.01, "alpha": 1.0}
    for name, (hr, ndcg, se, cov) in REFERENCE.items():
        m = by_model[name]["metrics"]
        assert abs(m["NDCG@10"] - ndcg) <= se, (name, m["NDCG@10"])
        assert abs(m["HR@10"] - hr) <= by_model[name]["stderr"]["HR@10"], (name, m["HR@10"])
        assert abs(m["coverage@10"] - cov) < 0.01
        assert m["cold_HR@10"] == 0.0  # ID-only methods cannot rank never-seen items
        assert 0.5 < m["AUC"] < 0.7
