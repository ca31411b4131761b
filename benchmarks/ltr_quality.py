"""Quality of the learned second stage (``recsys.ltr``) under ../shared/EVALUATION.md, baselines in the same run.

    python benchmarks/ltr_quality.py [--ml data/ml100k] [--skip-demo] [--skip-ml] [--cache /tmp/ltr/cache]
                                     [--retriever] [--settings '{"holdout": 3}'] [--validation-only]
                                     [--compare '{"features": {}}'] [--json out.json]

MovieLens 100K (all 943 test users): popularity, EASE (l2 100, refit on train + validation), SASRec (every window,
early-stopped: the very model the ranker uses as a source), and the ranker; NDCG@10 / HR@10 with standard errors,
the paired difference ranker - baseline (mean and standard error of the per-user differences), the ranker's
validation NDCG@10 under full ranking (the figure settings are chosen by; test is never used for that), and the rating AUC
(rating >= 4 on the test targets) of the ranker's rating model next to popularity's. ``--retriever`` adds the
two-tower retriever (defaults, early-stopped) as a fifth source and as a baseline row, paired. ``--validation-only``
fits the MovieLens ranker and prints only its validation figures (for choosing settings; test is not scored).
``--compare`` adds a second MovieLens ranker (the same settings with these overrides) as a row, paired. Item-context demo
(``generate_demo(users=1500, items=400, item_context=True)``): the ranker with and without its context features
(``features.context = false``), paired. Fit seconds: the ranker's own fit in this run and each source's fit as
recorded when it was first fitted (sources are cached under ``--cache``, keyed by spec and data, so reruns only
retrain the ranker). Results: docs/ranking.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ltr_cache import caching_factory, movielens_dataset  # noqa: E402

from recsys.data.dataset import Dataset  # noqa: E402
from recsys.evaluation import metrics as M  # noqa: E402
from recsys.evaluation.protocol import rank_cases  # noqa: E402
from recsys.evaluation.split import encode, leave_one_out  # noqa: E402
from recsys.ltr.ranker import LearnedRanker, LTRSettings  # noqa: E402
from recsys.models.ease import EASE  # noqa: E402
from recsys.models.popularity import Popularity  # noqa: E402

#: the protocol's tie-key offsets of validation and test cases (recsys.evaluation.protocol)
VALIDATION_OFFSET = 0
TEST_OFFSET = 1 << 40
SASREC = {"kind": "sasrec", "depth": 100, "params": {"windows": "all", "patience": 10, "time_budget_s": 1500}}
ML_SOURCES = [
    SASREC,
    {"kind": "ease", "depth": 100, "params": {"l2": 100.0}},
    {"kind": "cooccurrence", "depth": 100, "params": {"neighbours": 50}},
    {"kind": "popularity", "depth": 50},
]
DEMO_SOURCES = ML_SOURCES[1:]
RETRIEVER = {"kind": "retriever", "depth": 100, "params": {"time_budget_s": 1500}}
ML_SETTINGS: dict[str, Any] = {"sources": ML_SOURCES, "threads": 1}
DEMO_SETTINGS: dict[str, Any] = {"sources": DEMO_SOURCES, "threads": 1}


class Scored:
    """Anything with ``score(cases)`` under the harness's ranking."""

    def __init__(self, fn) -> None:
        self.score = fn


def ndcg_per_case(ranks: np.ndarray) -> np.ndarray:
    return np.where(ranks < 10, 1.0 / np.log2(ranks + 2.0), 0.0)


def row(name: str, ranks: np.ndarray, ref: np.ndarray | None = None, **extra: Any) -> dict[str, Any]:
    m, e = M.ranking_metrics(ranks)
    out = {"method": name, "NDCG@10": m["NDCG@10"], "se": e["NDCG@10"], "HR@10": m["HR@10"], **extra}
    if ref is not None:
        d = ndcg_per_case(ref) - ndcg_per_case(ranks)
        out["ranker minus this"] = float(d.mean())
        out["paired se"] = float(d.std(ddof=1) / np.sqrt(len(d)))
    return out


def fit_ranker(split, settings: dict[str, Any], cache: Path) -> tuple[LearnedRanker, tuple[float, float], dict[str, Any]]:
    """The fitted ranker, the wall and process-CPU seconds of its own fit (sources fitted in this run excluded) and,
    per source, the wall and CPU seconds of its fit (as recorded when it was first fitted; CPU None in older cache
    files)."""
    factory = caching_factory(cache)
    made: list[Any] = []
    t, cpu = time.perf_counter(), time.process_time()
    ranker = LearnedRanker(LTRSettings.from_dict(settings), source_factory=lambda s, o: made.append(factory(s, o)) or made[-1])
    ranker.fit(split.train, split.validation, progress=lambda m: print(f"{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f}: {m}", flush=True))
    wall = time.perf_counter() - t - sum(src.fit_seconds for src in made if not src.loaded)
    cpu = time.process_time() - cpu - sum(src.cpu_seconds or 0.0 for src in made if not src.loaded)
    half = len(made) // 2  # serving sources first, then the label fold's
    source_fit = {
        f"{src.name} ({'serving' if i < half else 'label fold'})": {"wall_s": round(src.fit_seconds, 1), "cpu_s": None if src.cpu_seconds is None else round(src.cpu_seconds, 1)}
        for i, src in enumerate(made)
    }  # fmt: skip
    return ranker, (wall, cpu), source_fit


def validation_only(split, settings: dict[str, Any], cache: Path, name: str) -> dict[str, Any]:
    """The ranker's full-ranking NDCG@10 / HR@10 on the validation cases (what settings are chosen by; test untouched)."""
    ranker, (wall, cpu), _ = fit_ranker(split, settings, cache)
    m, e = M.ranking_metrics(rank_cases(Scored(ranker.score), split.validation, case_offset=VALIDATION_OFFSET).ranks)
    return {"dataset": name, "validation_ndcg10": m["NDCG@10"], "se": e["NDCG@10"], "HR@10": m["HR@10"], "trees": ranker.best_iteration_,
            "ranker_fit_s": round(wall, 1), "ranker_fit_cpu_s": round(cpu, 1), "load_average": os.getloadavg(), "settings": settings}  # fmt: skip


def movielens(
    path: Path, cache: Path, overrides: dict[str, Any], retriever: bool = False, validation: bool = False, compare: dict[str, Any] | None = None
) -> dict[str, Any]:
    split = leave_one_out(encode(Dataset.load(path)))
    test = split.test
    settings = {**ML_SETTINGS, **({"sources": [*ML_SOURCES, RETRIEVER]} if retriever else {}), **overrides}
    if validation:
        return validation_only(split, settings, cache, "MovieLens 100K")
    ranker, (wall, ranker_cpu), source_fit = fit_ranker(split, settings, cache)
    ref = rank_cases(Scored(ranker.score), test, case_offset=TEST_OFFSET).ranks
    val_ndcg = float(M.ranking_metrics(rank_cases(Scored(ranker.score), split.validation, case_offset=VALIDATION_OFFSET).ranks)[0]["NDCG@10"])
    pop = Popularity().fit(split.train_full)
    pop_res = rank_cases(pop, test, case_offset=TEST_OFFSET)
    ease = EASE(l2=100.0).fit(split.train_full)
    sasrec = ranker.serving_["sasrec"]
    rows = [
        row("popularity", pop_res.ranks, ref),
        row("EASE l2=100 (refit)", rank_cases(ease, test, case_offset=TEST_OFFSET).ranks, ref),
        row("SASRec every window (early-stopped; the ranker's source)", rank_cases(Scored(sasrec.score), test, case_offset=TEST_OFFSET).ranks, ref),
    ]
    if "retriever" in ranker.serving_:
        retriever = ranker.serving_["retriever"]
        rows.append(row("two-tower retriever (early-stopped; the ranker's source)", rank_cases(Scored(retriever.score), test, case_offset=TEST_OFFSET).ranks, ref))
    if compare is not None:  # the same ranker with other settings (e.g. without a feature family), paired
        other, _, _ = fit_ranker(split, {**settings, **compare}, cache)
        rows.append(row(f"ltr with {json.dumps(compare)}", rank_cases(Scored(other.score), test, case_offset=TEST_OFFSET).ranks, ref))
    rows.append(row("ltr (LambdaRank over the sources above)", ref))
    labels = test.ratings >= 4
    auc = {"ltr rating model": M.roc_auc(ranker.predict_rating(test), labels), "popularity": M.roc_auc(pop_res.target_scores, labels)}
    return {"dataset": "MovieLens 100K", "cases": len(test), "rows": rows, "AUC": auc, "ranker_fit_s": round(wall, 1), "source_fit_s": source_fit,
            "ranker_fit_cpu_s": round(ranker_cpu, 1), "load_average": os.getloadavg(), "best_iteration": ranker.best_iteration_, "validation_ndcg10": val_ndcg, "settings": settings}  # fmt: skip


def demo(cache: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    from recsys.data.demo import generate_demo

    ds, source = generate_demo(users=1500, items=400, seed=0, item_context=True)
    ds = ds.save(Path(tempfile.mkdtemp()) / "demo-ic", source=source)
    split = leave_one_out(encode(ds))
    test = split.test
    with_ctx, (wall, _), source_fit = fit_ranker(split, {**DEMO_SETTINGS, **overrides}, cache)
    ref = rank_cases(Scored(with_ctx.score), test, case_offset=TEST_OFFSET).ranks
    val_ndcg = float(M.ranking_metrics(rank_cases(Scored(with_ctx.score), split.validation, case_offset=VALIDATION_OFFSET).ranks)[0]["NDCG@10"])
    no_context = {**DEMO_SETTINGS, **overrides, "features": {**overrides.get("features", {}), "context": False}}
    without, (wall2, _), _ = fit_ranker(split, no_context, cache)
    rows = [
        row("popularity", rank_cases(Popularity().fit(split.train_full), test, case_offset=TEST_OFFSET).ranks, ref),
        row("EASE l2=100 (refit)", rank_cases(EASE(l2=100.0).fit(split.train_full), test, case_offset=TEST_OFFSET).ranks, ref),
        row("ltr without context features", rank_cases(Scored(without.score), test, case_offset=TEST_OFFSET).ranks, ref),
        row("ltr with context features", ref),
    ]
    return {"dataset": "item-context demo 1500 x 400", "cases": len(test), "rows": rows, "ranker_fit_s": [round(wall, 1), round(wall2, 1)],
            "source_fit_s": source_fit, "validation_ndcg10": val_ndcg, "settings": {**DEMO_SETTINGS, **overrides}}  # fmt: skip


def show(result: dict[str, Any]) -> None:
    print(f"\n{result['dataset']}: {result['cases']} test cases; ranker fit {result['ranker_fit_s']} s; sources fit {result['source_fit_s']}")
    print(f"ranker validation NDCG@10 (full ranking): {result['validation_ndcg10']:.4f}")
    print(f"{'method':58s} {'NDCG@10':>16s} {'HR@10':>7s} {'ranker - this (paired)':>24s}")
    for r in result["rows"]:
        diff = f"{r['ranker minus this']:+.4f} ± {r['paired se']:.4f}" if "paired se" in r else ""
        print(f"{r['method']:58s} {r['NDCG@10']:.4f} ± {r['se']:.4f} {r['HR@10']:7.4f} {diff:>24s}")
    if "AUC" in result:
        print("rating AUC (rating >= 4, test targets): " + ", ".join(f"{k} {v:.4f}" for k, v in result["AUC"].items()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ml", type=Path, help="saved MovieLens 100K dataset (default: import ../shared/data/movielens-100k)")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "ltr-cache")
    p.add_argument("--settings", default="{}", help="JSON overrides of LTRSettings for both datasets")
    p.add_argument("--retriever", action="store_true", help="add the two-tower retriever as a source and a baseline (MovieLens)")
    p.add_argument("--skip-ml", action="store_true")
    p.add_argument("--skip-demo", action="store_true")
    p.add_argument("--validation-only", action="store_true", help="fit the MovieLens ranker and print only its validation figures")
    p.add_argument("--compare", help="JSON overrides of a second MovieLens ranker, added as a row paired against the first")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    overrides = json.loads(a.settings)
    results = []
    if not a.skip_ml:
        path = movielens_dataset(a.ml)
        results.append(movielens(path, a.cache, overrides, a.retriever, a.validation_only, json.loads(a.compare) if a.compare else None))
        if a.validation_only:
            r = results[-1]
            print(f"validation NDCG@10 {r['validation_ndcg10']:.4f} ± {r['se']:.4f}, HR@10 {r['HR@10']:.4f}, {r['trees']} trees, ranker fit {r['ranker_fit_s']} s")
        else:
            show(results[-1])
    if not a.skip_demo:
        results.append(demo(a.cache, overrides))
        show(results[-1])
    if a.json:
        a.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
