"""What the second stage adds: the pipeline (retriever -> learned ranker) against its own retriever, paired.

One ``PipelineRecommender`` is fitted under the protocol (train, validation for early stopping, then test); its
retriever alone and the whole pipeline then rank the same test cases with the protocol's tie keys, so the per-user
NDCG@10 difference is paired (same users, same retriever fit) and its standard error says whether the ranker's gain
is more than noise. ``recsys run`` prints it for pipelines with ``[evaluate] second_stage``.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from recsys.data.dataset import Dataset
from recsys.data.types import Cases, TrainData
from recsys.evaluation import metrics as M
from recsys.evaluation.protocol import TEST_OFFSET, rank_cases
from recsys.evaluation.split import encode, leave_one_out
from recsys.models.base import Recommender
from recsys.models.pipeline import PipelineRecommender


class _RetrieverOnly(Recommender):
    """The fitted pipeline's retriever alone (no refit): the retrieve-only side of the comparison."""

    name = "retriever-only"

    def __init__(self, pipeline: PipelineRecommender) -> None:
        self.pipeline = pipeline

    def fit(self, data: TrainData, validation: Cases | None = None) -> "_RetrieverOnly":
        return self

    def score(self, cases: Cases) -> np.ndarray:
        stage = self.pipeline.stage_
        return np.asarray(stage.ranker.serving_[stage.retriever_source].score(cases), dtype=np.float32)


def _ndcg10(ranks: np.ndarray) -> np.ndarray:
    """Per-case NDCG@10 of 0-based target ranks (as ``metrics.ranking_metrics``)."""
    return np.where(ranks < 10, 1.0 / np.log2(ranks + 2.0), 0.0)


def second_stage_report(dataset: Dataset, params: dict[str, Any] | None = None, *, seed: int = 0, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fit the pipeline (``params``: ``PipelineRecommender`` parameters) and compare it with its retriever on test.

    Returns ``{"retriever": {...}, "pipeline": {...}, "paired_NDCG@10": {"mean", "se"}, "fit_seconds", "test_cases"}``
    where each side has HR@10 and NDCG@10 with their standard errors."""
    say = progress or (lambda _m: None)
    split = leave_one_out(encode(dataset))
    start = time.perf_counter()
    model = PipelineRecommender(**(params or {})).fit(split.train, split.validation)
    fit_s = time.perf_counter() - start
    say(f"second stage: pipeline fitted in {fit_s:.0f} s")
    out: dict[str, Any] = {"test_cases": len(split.test), "fit_seconds": round(fit_s, 1)}
    per_case = {}
    for name, m in (("retriever", _RetrieverOnly(model)), ("pipeline", model)):
        res = rank_cases(m, split.test, case_offset=TEST_OFFSET, seed=seed)
        means, errs = M.ranking_metrics(res.ranks)
        out[name] = {"NDCG@10": means["NDCG@10"], "NDCG@10_se": errs["NDCG@10"], "HR@10": means["HR@10"], "HR@10_se": errs["HR@10"]}
        per_case[name] = _ndcg10(res.ranks)
    diff = per_case["pipeline"] - per_case["retriever"]
    out["paired_NDCG@10"] = {"mean": float(diff.mean()), "se": float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else None}
    return out


def format_second_stage(report: dict[str, Any]) -> str:
    """The side-by-side table people read (a gain within one paired standard error is called a tie)."""
    r, p, d = report["retriever"], report["pipeline"], report["paired_NDCG@10"]
    se = d["se"] or 0.0
    verdict = "a tie (within one standard error)" if abs(d["mean"]) <= se else ("a gain" if d["mean"] > 0 else "a loss")
    rows = [
        f"second stage on {report['test_cases']:,} test cases (same retriever fit, paired):",
        f"  retrieve only          NDCG@10 {r['NDCG@10']:.4f} ± {r['NDCG@10_se']:.4f}   HR@10 {r['HR@10']:.4f}",
        f"  retrieve + ranker      NDCG@10 {p['NDCG@10']:.4f} ± {p['NDCG@10_se']:.4f}   HR@10 {p['HR@10']:.4f}",
        f"  ranker - retrieve only NDCG@10 {d['mean']:+.4f} ± {se:.4f} (paired): {verdict}",
    ]
    return "\n".join(rows)


__all__ = ["format_second_stage", "second_stage_report"]
