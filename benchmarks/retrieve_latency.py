"""Warm ``retrieve`` latency in-process (model, index and histories loaded), p50/p99 over N users, beside the floor
it is made of: the user encode alone + a bare FAISS search alone. Also index build time and peak memory.

The user side is real (a briefly trained run on demo data; real histories, seen-item filtering). To reach 100K
and 1M-item indexes without hours of CPU text encoding, catalogue items beyond the demo catalogue get random unit
vectors: search cost depends on the count and dimension, not on the values (stated in the output).

    python benchmarks/retrieve_latency.py [--sizes 100000,1000000 --users 1000 --types flat,ivf]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000, q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--types", default="flat,ivf")
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--k", type=int, default=20)
    args = ap.parse_args()

    import faiss
    import polars as pl

    from recsys.data.demo import generate_demo
    from recsys.index import ItemIndex
    from recsys.service.retrieval import RetrievalService
    from recsys.retriever.config import RetrieverTrainingArguments
    from recsys.retriever.run import load_run, train_run

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ds, src = generate_demo(users=2000, items=2000, seed=0, interactions_per_user=30)
        ds = ds.save(tmp / "ds", source=src)
        train_run(ds, tmp / "run", RetrieverTrainingArguments(epochs=1, max_steps=20))
        model, catalogue_ids, manifest = load_run(tmp / "run")
        base = model.encode_items()
        rng = np.random.default_rng(0)
        users = rng.choice(ds.interactions["user_id"].unique().to_numpy(), args.users)
        for n in [int(x) for x in args.sizes.split(",")]:
            extra = rng.standard_normal((n - len(base), base.shape[1])).astype(np.float32)
            extra /= np.linalg.norm(extra, axis=1, keepdims=True)
            vectors = np.vstack([base, extra])
            ids = np.concatenate([catalogue_ids.to_numpy(), np.arange(10_000_000, 10_000_000 + len(extra))])
            items = pl.concat([ds.items.select("item_id", "title"), pl.DataFrame({"item_id": ids[len(base):], "title": [None] * len(extra)}, schema={"item_id": pl.Int64, "title": pl.String})])
            big = ds.__class__(ds.interactions, items, ds.users, ds.manifest, ds.path)
            for kind in args.types.split(","):
                rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                t = time.perf_counter()
                index = ItemIndex.build(vectors, ids, index_type=kind, model_fingerprint=manifest["fingerprint"], progress=False)
                build_s = time.perf_counter() - t
                peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
                index.save(tmp / f"index-{n}-{kind}")
                svc = RetrievalService(index, tmp / "run", big)
                svc.recommend(int(users[0]), k=args.k)  # warm-up
                full, enc, bare = [], [], []
                raw = index._index
                for u in users:
                    u = int(u)
                    t = time.perf_counter()
                    svc.recommend(u, k=args.k)
                    full.append(time.perf_counter() - t)
                    row = int(svc.histories.rows([u])[0])
                    hist, seen = svc.histories.history(row)
                    t = time.perf_counter()
                    vec = svc.user_vectors([hist], None)
                    enc.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    raw.search(vec, args.k + len(seen))
                    bare.append(time.perf_counter() - t)
                floor = [a + b for a, b in zip(enc, bare)]
                rows.append((n, kind, build_s, peak_mb, index.info().get("recall_at_100"), pct(full, 50), pct(full, 99), pct(enc, 50), pct(bare, 50), pct(floor, 50), statistics.median(full) / statistics.median(floor)))
                del svc, index
    print(f"warm retrieve latency, {args.users} users, k={args.k}, dim {base.shape[1]}, faiss threads {faiss.omp_get_max_threads()}; "
          "items beyond the 2,000 demo items have random unit vectors")
    head = f"{'items':>9} {'type':<5} {'build s':>8} {'build MB':>9} {'recall@100':>10} {'p50 ms':>7} {'p99 ms':>7} {'encode p50':>10} {'bare search p50':>15} {'floor p50':>9} {'ours/floor':>10}"
    print(head)
    for n, kind, b, mb, rec, p50, p99, e50, s50, f50, ratio in rows:
        r = f"{rec:.3f}" if isinstance(rec, float) else "exact"
        print(f"{n:>9,} {kind:<5} {b:>8.1f} {mb:>9.0f} {r:>10} {p50:>7.1f} {p99:>7.1f} {e50:>10.1f} {s50:>15.1f} {f50:>9.1f} {ratio:>10.2f}")


if __name__ == "__main__":
    main()
