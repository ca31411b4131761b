"""Recall of each candidate source (``recsys.ltr.sources``) and of their union on the protocol's test cases.

    python benchmarks/candidate_sources.py [--dataset data/ml100k] [--skip-demo] [--sizes 50,100,200]
                                           [--retriever DIR] [--cache /tmp/ltr-cache] [--json out.json]

Sources, each fitted as the learned ranker's serving fold fits them (train split, early-stopped on validation
where they can): EASE (l2 100), item-item co-occurrence (50 neighbours, ``recsys.ltr.cooccurrence.item_neighbours``,
scores), popularity, SASRec (every window; ML only, cached under ``--cache``) and, with ``--retriever``, a saved
two-tower retriever fitted on the train split. recall@N = share of test cases whose held-out item is among the
source's top N (history excluded); "union @N" merges every source's top N (``merge_candidates``) and reports the
mean number of distinct candidates beside it. Datasets: MovieLens 100K (943 cases) and the item-context demo
(1500 users x 400 items). Results: docs/ranking.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ltr_cache import caching_factory, movielens_dataset  # noqa: E402

from recsys.data.dataset import Dataset  # noqa: E402
from recsys.evaluation.split import encode, leave_one_out  # noqa: E402
from recsys.ltr.sources import SourceSpec, merge_candidates, recall_at, source_scores  # noqa: E402

SOURCES = [
    {"kind": "ease", "params": {"l2": 100.0}},
    {"kind": "cooccurrence", "params": {"neighbours": 50}},
    {"kind": "popularity"},
]
SASREC = {"kind": "sasrec", "params": {"windows": "all", "patience": 10, "time_budget_s": 1500}}


class RetrieverScores:
    """A saved two-tower retriever as a scorer (already fitted)."""

    name = "two-tower"

    def __init__(self, directory: Path, users: Any) -> None:
        from recsys.retriever import TwoTowerRetriever

        self.model, self.users = TwoTowerRetriever.load(directory), users

    def score(self, cases):
        profiles = self.users[cases.users] if (self.users is not None and self.model.args.use_profiles) else None
        return self.model.score(cases, profiles).astype(np.float32)


def measure(name: str, split, specs: list[dict[str, Any]], sizes: list[int], cache: Path, retriever: Path | None) -> dict[str, Any]:
    cases = split.test
    factory = caching_factory(cache)
    scores: dict[str, np.ndarray] = {}
    fit_s: dict[str, float] = {}
    for d in specs:
        spec = SourceSpec.from_dict({"depth": 100, **d})  # depth does not change a fit (the cache key holds it)
        t = time.perf_counter()
        src = factory(spec, {}).fit(split.train, split.validation)
        fit_s[spec.key] = round(src.fit_seconds or time.perf_counter() - t, 1)
        scores[spec.key] = source_scores(src, cases)
    if retriever is not None:
        scores["two-tower"] = source_scores(RetrieverScores(retriever, split.train.users), cases)
    rows = []
    for key, s in scores.items():
        rows.append({"source": key, **{f"recall@{n}": recall_at(merge_candidates({key: s}, {key: n}, cases), cases.targets) for n in sizes}})
    union: dict[str, Any] = {"source": "union of all"}
    for n in sizes:
        c = merge_candidates(scores, {k: n for k in scores}, cases)
        union[f"recall@{n}"] = recall_at(c, cases.targets)
        union[f"size@{n}"] = round(c.height / len(cases), 1)
    rows.append(union)
    return {"dataset": name, "cases": len(cases), "rows": rows, "fit_s": fit_s}


def show(result: dict[str, Any], sizes: list[int]) -> None:
    print(f"\n{result['dataset']}: {result['cases']} test cases; fit seconds {result['fit_s']}")
    print(f"{'source':16s} " + " ".join(f"{'recall@' + str(n):>11s}" for n in sizes))
    for r in result["rows"]:
        cells = [f"{r[f'recall@{n}']:.4f}" + (f" ({r[f'size@{n}']:.0f})" if f"size@{n}" in r else "") for n in sizes]
        print(f"{r['source']:16s} " + " ".join(f"{c:>11s}" for c in cells))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", "--ml", dest="ml", type=Path, help="saved MovieLens 100K dataset (default: import ../shared/data/movielens-100k)")
    p.add_argument("--retriever", type=Path, help="a saved TwoTowerRetriever fitted on MovieLens' train split")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "ltr-cache")
    p.add_argument("--sizes", default="50,100,200")
    p.add_argument("--skip-ml", action="store_true")
    p.add_argument("--skip-demo", action="store_true")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")]
    results = []
    if not a.skip_ml:
        path = movielens_dataset(a.ml)
        split = leave_one_out(encode(Dataset.load(path)))
        results.append(measure("MovieLens 100K", split, [SASREC, *SOURCES], sizes, a.cache, a.retriever))
        show(results[-1], sizes)
    if not a.skip_demo:
        from recsys.data.demo import generate_demo

        ds, source = generate_demo(users=1500, items=400, seed=0, item_context=True)
        split = leave_one_out(encode(ds.save(Path(tempfile.mkdtemp()) / "demo-ic", source=source)))
        results.append(measure("item-context demo 1500 x 400", split, SOURCES, sizes, a.cache, None))
        show(results[-1], sizes)
    if a.json:
        a.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
