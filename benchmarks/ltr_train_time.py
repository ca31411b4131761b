"""Training time of the learned second stage as ``recsys train ranker`` runs it on MovieLens 100K: the served
retriever exists (the first stage), so the second stage is SASRec (serving fold, early-stopped), every label-fold
refit (SASRec for the serving fold's epochs, the retriever for the served run's best epoch count, EASE,
co-occurrence, popularity), the feature tables, LightGBM and the rating model. Wall and process-CPU seconds of each
part, with the load average before and after each.

    python benchmarks/ltr_train_time.py --retriever-cache /tmp/ltr-cache [--settings '{...}'] [--json out.json]

The served retriever is read from an ``ltr_quality.py --retriever`` cache (its serving-fold fit), the way
``train_ranking_run`` reads a saved run; the ranker is fitted on train + validation early-stopped on the last
interaction, as ``train_ranking_run`` does. Sources and settings: pipelines/movielens-100k.toml's [ranker.ltr].
Results: docs/ranking.md (Results).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ltr_cache import movielens_dataset  # noqa: E402

from recsys.data.dataset import Dataset  # noqa: E402
from recsys.evaluation.split import encode, leave_one_out  # noqa: E402
from recsys.ltr.ranker import LearnedRanker  # noqa: E402
from recsys.ltr.run import ranking_settings, served_retriever_factory  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class Timed:
    """Wraps a source; records the wall and process-CPU seconds of its fit."""

    def __init__(self, inner: Any, fold: str, log: list[dict[str, Any]]) -> None:
        self.inner, self.name, self.fold, self.log = inner, inner.name, fold, log

    def fit(self, data, validation=None):
        load, t, c = os.getloadavg()[0], time.perf_counter(), time.process_time()
        self.inner.fit(data, validation)
        self.log.append({"part": f"{self.name} ({self.fold})", "wall_s": round(time.perf_counter() - t, 1), "cpu_s": round(time.process_time() - c, 1),
                         "load_before": round(load, 1), "load_after": round(os.getloadavg()[0], 1)})  # fmt: skip
        print(self.log[-1], flush=True)
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def served_retriever(cache: Path) -> Any:
    """The newest serving-fold retriever in an ``ltr_quality.py`` cache (the one fitted with validation)."""
    for path in sorted(cache.glob("retriever-*.pkl"), key=lambda p: p.stat().st_mtime):
        with open(path, "rb") as f:
            source = pickle.load(f)[0]
        if source.model.model_.metrics.get("best_epoch"):
            return source.model.model_
    raise SystemExit(f"no early-stopped retriever in {cache}: run benchmarks/ltr_quality.py --retriever --cache {cache} first")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ml", type=Path)
    p.add_argument("--retriever-cache", type=Path, required=True)
    p.add_argument("--settings", default="{}", help="JSON overrides of the pipeline's [ranker.ltr]")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    ltr = tomllib.loads((ROOT / "pipelines" / "movielens-100k.toml").read_text())["ranker"]["ltr"]
    settings = ranking_settings({**ltr, **json.loads(a.settings)})
    split = leave_one_out(encode(Dataset.load(movielens_dataset(a.ml))))
    model = served_retriever(a.retriever_cache)
    base = served_retriever_factory(model=model)
    log: list[dict[str, Any]] = []
    seen: set[str] = set()

    def factory(spec, overrides):
        fold = "label fold" if spec.key in seen else "serving"
        seen.add(spec.key)
        return Timed(base(spec, overrides), fold, log)

    load, t, c = os.getloadavg()[0], time.perf_counter(), time.process_time()
    ranker = LearnedRanker(settings, source_factory=factory).fit(split.train_full, split.test)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    own = {"part": "ranker's own fit (tables, features, LightGBM, rating model)", "wall_s": round(wall - sum(x["wall_s"] for x in log), 1),
           "cpu_s": round(cpu - sum(x["cpu_s"] for x in log), 1)}  # fmt: skip
    result = {"parts": [*log, own], "total_wall_s": round(wall, 1), "total_cpu_s": round(cpu, 1), "load_before": round(load, 1),
              "load_after": [round(x, 1) for x in os.getloadavg()], "label_fold_retriever_epochs": ranker.serving_["retriever"].params_without_validation()["epochs"],
              "validation_ndcg10_candidates": ranker.validation_ndcg_, "settings": {k: getattr(settings, k) for k in ("sources", "features", "label_fold_time_budget_s")}}  # fmt: skip
    print(json.dumps(result, indent=2, default=str))
    if a.json:
        a.json.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
