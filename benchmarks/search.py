"""Overhead of ``ItemIndex.search`` over a bare ``faiss.IndexFlatIP.search`` on the same vectors and queries.

Random L2-normalised vectors (default 100,000 x 384), 1,000 queries, k=100, batch sizes 1 and 256. Every batch is
timed on both sides back to back (alternating which goes first), so the ratio is measured side by side in one
run; the table reports medians over repeats. A last row adds per-query exclusions (50 ids each) to ours.

    nice python benchmarks/search.py [--items 100000] [--dim 384] [--queries 1000] [--repeats 5] [--threads 0]
"""

from __future__ import annotations

import argparse
import statistics
import time

import faiss
import numpy as np

from recsys.index import ItemIndex


def _normalised(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim), dtype=np.float32)
    faiss.normalize_L2(x)
    return x


def _time(fn, queries: np.ndarray, batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(queries), batch):
        fn(queries[i : i + batch], i)
    return time.perf_counter() - start


def _paired(bare_fn, ours_fn, queries: np.ndarray, batch: int, flip: bool) -> tuple[float, float]:
    """Time both sides on every batch back to back, alternating which goes first, so load drift hits both."""
    t = {"bare": 0.0, "ours": 0.0}
    for j, i in enumerate(range(0, len(queries), batch)):
        q = queries[i : i + batch]
        pair = [("bare", bare_fn), ("ours", ours_fn)]
        if (j % 2) ^ flip:
            pair.reverse()
        for name, fn in pair:
            start = time.perf_counter()
            fn(q, i)
            t[name] += time.perf_counter() - start
    return t["bare"], t["ours"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--exclude", type=int, default=50, help="ids excluded per query in the last row (0: skip)")
    parser.add_argument("--threads", type=int, default=0, help="FAISS OpenMP threads (0: FAISS default)")
    args = parser.parse_args()
    if args.threads:
        faiss.omp_set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    items = _normalised(rng, args.items, args.dim)
    queries = _normalised(rng, args.queries, args.dim)
    ids = np.arange(args.items, dtype=np.int64)

    bare = faiss.IndexFlatIP(args.dim)
    bare.add(items)
    ours = ItemIndex.build(items, ids, index_type="flat", model_fingerprint="bench", device="cpu", progress=False)
    excluded = [rng.choice(args.items, size=args.exclude, replace=False) for _ in range(args.queries)] if args.exclude else None

    # results agree (guards against benchmarking a broken path)
    s_bare, i_bare = bare.search(queries[:16], args.k)
    s_ours, i_ours = ours.search(queries[:16], args.k)
    assert np.allclose(s_bare, s_ours, atol=1e-5) and (i_bare == i_ours).mean() > 0.99

    def bare_fn(q: np.ndarray, start: int) -> None:
        bare.search(q, args.k)

    def ours_fn(q: np.ndarray, start: int) -> None:
        ours.search(q, args.k)

    def ours_excl_fn(q: np.ndarray, start: int) -> None:
        ours.search(q, args.k, exclude=excluded[start : start + len(q)])

    rows = []
    cases = [(b, False) for b in args.batches] + ([(args.batches[-1], True)] if excluded else [])
    for batch, with_excl in cases:
        ours_case = ours_excl_fn if with_excl else ours_fn
        _time(bare_fn, queries[: max(batch, 8)], batch)  # warm up both
        _time(ours_case, queries[: max(batch, 8)], batch)
        t_bare, t_ours, ratios = [], [], []
        for r in range(args.repeats):
            tb, to = _paired(bare_fn, ours_case, queries, batch, flip=bool(r % 2))
            t_bare.append(tb)
            t_ours.append(to)
            ratios.append(to / tb)
        rows.append((batch, with_excl, statistics.median(t_bare), statistics.median(t_ours), statistics.median(ratios)))

    print(
        f"\n{args.items:,} items x {args.dim} dims, {args.queries:,} queries, k={args.k}, "
        f"{args.repeats} repeats (median), FAISS {faiss.__version__}, {faiss.omp_get_max_threads()} threads\n"
    )
    header = f"{'batch':>5}  {'exclude':>7}  {'bare ms/query':>13}  {'ours ms/query':>13}  {'bare QPS':>9}  {'ours QPS':>9}  {'ours/bare':>9}"
    print(header)
    print("-" * len(header))
    for batch, excl, tb, to, ratio in rows:
        n = args.queries
        print(
            f"{batch:>5}  {(str(args.exclude) if excl else '-'):>7}  {1e3 * tb / n:>13.3f}  {1e3 * to / n:>13.3f}  "
            f"{n / tb:>9.0f}  {n / to:>9.0f}  {ratio:>9.3f}"
        )


if __name__ == "__main__":
    main()
