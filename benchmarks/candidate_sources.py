"""Recall of each candidate source and of their union on the protocol's test cases (MovieLens 100K by default).

    python benchmarks/candidate_sources.py [--dataset data/movielens-100k] [--retriever DIR]
                                           [--neighbours 50,200] [--sizes 20,50,100,200]

Sources: the two-tower retriever (fitted on the protocol's train split, early-stopped on validation), the
co-occurrence source exactly as served (``CooccurrenceSource.candidates``, fitted on train + validation) and the
harness's EASE for reference. Every list excludes the case's history. "union a+b" merges the retriever's top a with
the co-occurrence top b: "50+50" spends the reranker budget of 100 from one source; "100+100" is ``--cooccurrence``
at ``--candidates 100``.

Results: docs/results.md ("candidate sources").
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def top_lists(scores: np.ndarray, cases, n: int) -> list[np.ndarray]:
    """Top n catalogue indices per case, excluded items removed (ties by index: deterministic)."""
    s = scores.astype(np.float32, copy=True)
    excl = cases.exclude
    s[np.repeat(np.arange(len(cases)), excl.lengths), excl.items] = -np.inf
    out = []
    for r in range(len(cases)):
        row = s[r]
        k = min(n, row.size)
        idx = np.argpartition(-row, k - 1)[:k]
        idx = idx[np.lexsort((idx, -row[idx]))]
        out.append(idx[np.isfinite(row[idx])])
    return out


def recall(lists: list[np.ndarray], targets: np.ndarray) -> float:
    return float(np.mean([t in set(l.tolist()) for l, t in zip(lists, targets)]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", type=Path, help="dataset directory (default: import ../shared/data/movielens-100k to a temp dir)")
    p.add_argument("--retriever", type=Path, help="a saved TwoTowerRetriever fitted on the protocol's train split (default: fit one)")
    p.add_argument("--neighbours", default="50,200")
    p.add_argument("--sizes", default="20,50,100,200")
    p.add_argument("--json", type=Path, help="also write the results here")
    a = p.parse_args()

    import tempfile

    import torch

    from recsys.service.cooccurrence import CooccurrenceSource
    from recsys.data.dataset import Dataset
    from recsys.evaluation.split import encode, leave_one_out
    from recsys.models.ease import EASE
    from recsys.retriever import RetrieverTrainingArguments, TwoTowerRetriever

    torch.set_num_threads(2)
    if a.dataset:
        ds = Dataset.load(a.dataset)
    else:
        from recsys.data.importers.movielens import import_movielens

        src = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "movielens-100k"
        ds, source = import_movielens(src)
        ds = ds.save(Path(tempfile.mkdtemp()) / "ml100k", source=source)
    split = leave_one_out(encode(ds))
    cases, data = split.test, split.train_full
    sizes = [int(x) for x in a.sizes.split(",")]
    top = max(sizes)
    t0 = time.perf_counter()
    if a.retriever:
        retriever = TwoTowerRetriever.load(a.retriever)
    else:
        retriever = TwoTowerRetriever(RetrieverTrainingArguments(time_budget_s=600)).fit(split.train, split.validation)
    fit_s = time.perf_counter() - t0
    two_tower = top_lists(retriever.score(cases), cases, top)
    ease = top_lists(EASE(l2=100.0).fit(data).score(cases), cases, top)
    item_ids = data.items["item_id"]
    id_to_row = {v: i for i, v in enumerate(item_ids.to_list())}
    rows: list[dict] = []

    def add(source: str, lists: list[np.ndarray]) -> None:
        rows.append({"source": source, **{f"recall@{n}": round(recall([l[:n] for l in lists], cases.targets), 4) for n in sizes}})

    add("two-tower", two_tower)
    add("EASE (harness)", ease)
    for k in (int(x) for x in a.neighbours.split(",")):
        t = time.perf_counter()
        co_source = CooccurrenceSource.from_matrix(item_ids, data.matrix, neighbours=k)
        fit_co = time.perf_counter() - t
        t = time.perf_counter()
        co = []
        for r in range(len(cases)):
            hist = item_ids.gather(cases.history.row(r)).to_list()
            excl = item_ids.gather(cases.exclude.row(r)).to_list()
            ids, _ = co_source.candidates(hist, top, exclude=excl)
            co.append(np.asarray([id_to_row[i] for i in ids], dtype=np.int64))
        per_case_ms = 1000 * (time.perf_counter() - t) / len(cases)
        add(f"co-occurrence k={k} (fit {fit_co:.1f} s, {per_case_ms:.2f} ms/case)", co)
        for n in sizes:
            half = [np.concatenate([a_[: n // 2], b_[~np.isin(b_, a_[: n // 2])][: n - n // 2]]) for a_, b_ in zip(two_tower, co)]
            full = [np.concatenate([a_[:n], b_[~np.isin(b_, a_[:n])][:n]]) for a_, b_ in zip(two_tower, co)]
            rows.append({"source": f"union k={k}", "n": n, f"{n//2}+{n - n//2}": round(recall(half, cases.targets), 4),
                         f"{n}+{n}": round(recall(full, cases.targets), 4), "mean size n+n": round(float(np.mean([len(x) for x in full])), 1)})
    print(f"MovieLens test cases: {len(cases)}; retriever {'loaded' if a.retriever else f'fitted in {fit_s:.0f} s'}")
    header = ["source", *[f"recall@{n}" for n in sizes]]
    print(" | ".join(header))
    for r in rows:
        if "n" in r:
            keys = [k for k in r if k not in ("source", "n")]
            print(f"{r['source']} @ {r['n']}: " + ", ".join(f"{k} {r[k]}" for k in keys))
        else:
            print(" | ".join(str(r.get(h, "")) for h in header))
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
