"""The offline protocol of EVALUATION.md: tune on validation, test on the last interaction, cold-start items,
rating AUC; every model under the same split, tie keys and exclusions, in one run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from recsys.data.dataset import Dataset
from recsys.evaluation import metrics as M
from recsys.data.types import Cases, TrainData
from recsys.evaluation.split import cold_start, encode, leave_one_out
from recsys.models import Recommender, get_model_class

METRIC_KEYS = ("HR@10", "HR@20", "NDCG@10", "NDCG@20", "MRR@10", "coverage@10", "cold_HR@10", "cold_HR@20", "cold_NDCG@10", "AUC")
#: offsets that give every case family its own tie keys (validation, test and cold cases never share keys)
VALIDATION_OFFSET, TEST_OFFSET, COLD_OFFSET = 0, 1 << 40, 2 << 40

Progress = Callable[[str], None]


@dataclass
class CaseResult:
    ranks: np.ndarray
    target_scores: np.ndarray
    top10: np.ndarray
    seconds: float


def rank_cases(model: Recommender, cases: Cases, *, case_offset: int, seed: int = 0, batch_size: int = 512) -> CaseResult:
    """Score ``cases`` in batches and rank each target in the full catalogue (excluded items removed)."""
    ranks, tscores, tops = [], [], []
    start = time.perf_counter()
    for lo in range(0, len(cases), batch_size):
        rows = np.arange(lo, min(lo + batch_size, len(cases)))
        batch = cases.take(rows)
        scores = model.score(batch)
        n_items = scores.shape[1]
        excl = batch.exclude
        s = M.prepare_scores(scores, np.repeat(np.arange(len(rows)), excl.lengths), excl.items, batch.targets)
        keys = M.tie_keys(rows + case_offset, n_items, seed)
        ranks.append(M.target_ranks(s, batch.targets, keys))
        tscores.append(s[np.arange(len(rows)), batch.targets])
        tops.append(M.top_k(s, keys, 10))
    return CaseResult(np.concatenate(ranks), np.concatenate(tscores), np.concatenate(tops), time.perf_counter() - start)


@dataclass
class ModelResult:
    model: str
    params: dict[str, Any]
    metrics: dict[str, float | None]
    stderr: dict[str, float | None]
    fit_seconds: float
    score_seconds: float
    validation: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "params": self.params,
            "metrics": {k: self.metrics.get(k) for k in METRIC_KEYS},
            "stderr": self.stderr,
            "fit_seconds": round(self.fit_seconds, 3),
            "score_seconds": round(self.score_seconds, 3),
            "validation": self.validation,
        }


@dataclass
class EvaluationSettings:
    """What ``recsys evaluate`` runs; ``params`` fixes model parameters (merged into every grid point)."""

    models: list[str] = field(default_factory=lambda: ["popularity", "itemknn", "ease"])
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    grids: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    seed: int = 0
    batch_size: int = 512
    cold_start: bool = True


def _fit(model: Recommender, data: TrainData, validation: Cases | None) -> float:
    start = time.perf_counter()
    model.fit(data, validation)
    return time.perf_counter() - start


def evaluate(dataset: Dataset, settings: EvaluationSettings, progress: Progress | None = None) -> dict[str, Any]:
    """Run the whole protocol for every model in ``settings.models``; return the JSON-ready report."""
    say = progress or (lambda _msg: None)
    classes = {name: get_model_class(name) for name in settings.models}  # fail on a bad name before any work
    enc = encode(dataset)
    split = leave_one_out(enc)
    cold = cold_start(enc) if settings.cold_start else None
    has_ratings = split.test.ratings is not None
    results = []
    for name in settings.models:
        cls = classes[name]
        fixed = settings.params.get(name, {})
        grid = settings.grids.get(name) or cls.grid
        # validation pass: tune on train, score the validation targets
        trials = []
        best: tuple[float, dict[str, Any], Recommender | None] = (-1.0, {}, None)
        for point in grid:
            params = {**point, **fixed}
            model = cls(**params)
            fit_s = _fit(model, split.train, split.validation)
            res = rank_cases(model, split.validation, case_offset=VALIDATION_OFFSET, seed=settings.seed, batch_size=settings.batch_size)
            ndcg = M.ranking_metrics(res.ranks)[0]["NDCG@10"]
            trials.append({"params": params, "NDCG@10": ndcg, "fit_seconds": round(fit_s, 3)})
            say(f"{name} {params}: validation NDCG@10 {ndcg:.4f} ({fit_s:.1f}s)")
            if ndcg > best[0]:
                best = (ndcg, params, model)
        _, params, tuned = best
        # test pass: refit on train + validation unless the model is early-stopped and used as is (SASRec)
        if cls.refit_for_test:
            final = cls(**params)
            fit_s = _fit(final, split.train_full, None)
        else:
            final = tuned
            fit_s = next(t["fit_seconds"] for t in trials if t["params"] == params)
        res = rank_cases(final, split.test, case_offset=TEST_OFFSET, seed=settings.seed, batch_size=settings.batch_size)
        means, errs = M.ranking_metrics(res.ranks)
        covered = np.unique(res.top10[res.top10 >= 0])
        means["coverage@10"] = len(covered) / enc.n_items
        means["AUC"] = M.roc_auc(res.target_scores, split.test.ratings >= 4) if has_ratings else None
        if cold is not None:
            cold_model = cls(**{**params, **tuned.params_without_validation()})
            _fit(cold_model, cold.train, None)
            cres = rank_cases(cold_model, cold.cases, case_offset=COLD_OFFSET, seed=settings.seed, batch_size=settings.batch_size)
            cm, ce = M.ranking_metrics(cres.ranks)
            for k in ("HR@10", "HR@20", "NDCG@10"):
                means[f"cold_{k}"] = cm[k]
                errs[f"cold_{k}"] = ce[k]
        say(f"{name}: test NDCG@10 {means['NDCG@10']:.4f} ± {errs['NDCG@10']:.4f}")
        results.append(ModelResult(name, params, means, errs, fit_s, res.seconds, trials))
    info = {
        "name": dataset.name,
        "path": str(dataset.path) if dataset.path else None,
        "fingerprint": dataset.fingerprint,
        "users": enc.n_users,
        "items": enc.n_items,
        "interactions": enc.events.height,
        "test_cases": len(split.test),
        "cold_items": int(len(cold.cold_items)) if cold is not None else 0,
        "cold_cases": len(cold.cases) if cold is not None else 0,
        "seed": settings.seed,
        "protocol": "temporal leave-one-out, full ranking, source-order ties (EVALUATION.md)",
    }
    return {"dataset": info, "results": [r.to_json() for r in results]}


def format_table(report: dict[str, Any]) -> str:
    """The protocol's one table per dataset, for people."""
    cols = ["HR@10", "HR@20", "NDCG@10", "NDCG@20", "MRR@10", "coverage@10", "cold_HR@10", "cold_NDCG@10", "AUC"]
    head = ["model", "params", *cols, "fit s", "score s"]
    rows = []
    for r in report["results"]:
        m, e = r["metrics"], r["stderr"]

        def cell(k: str) -> str:
            v = m.get(k)
            if v is None:
                return "–"
            if k in ("HR@10", "NDCG@10") and e.get(k) is not None:
                return f"{v:.4f}±{e[k]:.4f}"
            return f"{v:.4f}"

        params = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "–"
        rows.append([r["model"], params, *[cell(k) for k in cols], f"{r['fit_seconds']:.1f}", f"{r['score_seconds']:.1f}"])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    d = report["dataset"]
    title = f"{d['name']}: {d['users']:,} users, {d['items']:,} items, {d['interactions']:,} interactions, {d['test_cases']:,} test cases, {d['cold_cases']:,} cold cases"
    return "\n".join([title, line(head), line(["-" * w for w in widths]), *[line(r) for r in rows]])
