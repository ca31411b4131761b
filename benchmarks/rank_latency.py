"""What the learned ranking stage adds to a served request: p50/p90 latency retrieve-only and ranked at several
depths, measured interleaved per user (same users, same machine state), in-process (``RetrievalService.recommend``)
and over HTTP (the FastAPI app through its test client, so no network; 1 torch/FAISS thread per request, as
``recsys serve`` defaults to), with the raw libraries beside them: a bare FAISS search of a user vector and a bare
LightGBM ``Booster.predict`` of the ranked rows.

The models are trained briefly on demo data (latency depends on sizes, not on accuracy): 2,000 users, 1,000 items,
a flat index, the ranking run's default sources (the retriever, EASE, co-occurrence, popularity).

    python benchmarks/rank_latency.py [--users 200 --depths 25,50,100 --repeats 3 --no-http --workdir DIR]

``--workdir`` keeps the trained models and reuses them on later runs (setup is minutes; the timed part is not).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def pct_ms(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000.0, q))


def measure(arms: list[tuple[str, object]], users: list, repeats: int) -> dict[str, list[list[float]]]:
    """Seconds per call, per arm, per pass; arms interleaved per user."""
    passes: dict[str, list[list[float]]] = {name: [] for name, _ in arms}
    for _ in range(repeats):
        times: dict[str, list[float]] = {name: [] for name, _ in arms}
        for u in users:
            for name, call in arms:
                s = time.perf_counter()
                call(u)  # type: ignore[operator]
                times[name].append(time.perf_counter() - s)
        for name in times:
            passes[name].append(times[name])
    return passes


def summarise(path: str, passes: dict[str, list[list[float]]], base: str) -> list[dict]:
    """Median over passes of p50/p90, of the per-user added time against ``base`` and of the p50 ratio."""
    rows = []
    base_p50 = statistics.median(pct_ms(p, 50) for p in passes[base])
    for name, ps in passes.items():
        p50 = statistics.median(pct_ms(p, 50) for p in ps)
        added = statistics.median(float(np.median(np.subtract(p, b))) * 1000 for p, b in zip(ps, passes[base]))
        rows.append({
            "path": path, "arm": name, "p50_ms": round(p50, 2), "p90_ms": round(statistics.median(pct_ms(p, 90) for p in ps), 2),
            "added_p50_ms": round(added, 2), "ratio_p50": round(p50 / base_p50, 2),
        })  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=200, help="requests per arm and pass")
    ap.add_argument("--depths", default="25,50,100", help="retrieved candidates the ranker reads")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3, help="passes over the users; figures are medians over passes")
    ap.add_argument("--http", action=argparse.BooleanOptionalAction, default=True, help="also through the FastAPI app")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the trained models here and reuse them on the next run (default: a temporary folder)")
    args = ap.parse_args()

    import faiss
    import lightgbm
    import torch

    from recsys.context import context_frame
    from recsys.data.dataset import Dataset
    from recsys.data.demo import generate_demo
    from recsys.index.build import build_index
    from recsys.ltr.run import train_ranking_run
    from recsys.retriever.config import RetrieverTrainingArguments
    from recsys.retriever.run import train_run
    from recsys.service.ranking import RankingStage
    from recsys.service.retrieval import RetrievalService

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    depths = [int(d) for d in args.depths.split(",")]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="rank-latency-") as tmp:
        tmp = args.workdir or Path(tmp)
        t0 = time.perf_counter()
        fit: dict = {"fit_seconds": None}  # None: the models of --workdir were reused
        if not (tmp / "ranker").is_dir() or RankingStage.open(tmp / "ranker").depth < max(depths):
            ds, src = generate_demo(users=2000, items=1000, seed=0)
            ds = ds.save(tmp / "ds", source=src, overwrite=True)
            train_run(ds, tmp / "run", RetrieverTrainingArguments(epochs=1, max_steps=30, cold_start="text"))
            build_index(tmp / "run", ds, tmp / "index", overwrite=True)
            fit = train_ranking_run(ds, tmp / "run", tmp / "ranker", depth=max(depths), overwrite=True)
        else:
            ds = Dataset.load(tmp / "ds")
        setup_s = time.perf_counter() - t0
        svc = RetrievalService.open(tmp / "index", rerank_run=tmp / "ranker")
        rng = np.random.default_rng(0)
        users = rng.choice(ds.interactions["user_id"].unique().to_numpy(), args.users, replace=False).tolist()
        ctx = {"device": "mobile", "time": "evening"}
        ctx = {k: v for k, v in ctx.items() if k in svc.known_context_keys}

        arms: list[tuple[str, object]] = [("retrieve only", lambda u: svc.recommend(u, k=args.k, context=ctx, rerank=False))]
        for d in depths:
            arms.append((f"ranked, depth {d}", lambda u, d=d: svc.recommend(u, k=args.k, context=ctx, rerank=True, depth=d)))
        for _, call in arms:
            call(users[0])  # warm-up
        rows += summarise("in-process", measure(arms, users, args.repeats), "retrieve only")

        if args.http:
            from fastapi.testclient import TestClient

            from recsys.serving import create_app

            q = ",".join(f"{k}={v}" for k, v in ctx.items())
            with TestClient(create_app(tmp / "index", rerank_run=tmp / "ranker", threads=1)) as client:  # as `recsys serve`

                def get(u, **params):
                    r = client.get(f"/recommend/{u}", params={"k": args.k, "context": q or None, **params})
                    r.raise_for_status()

                http = [("retrieve only", lambda u: get(u, rerank="false"))]
                http += [(f"ranked, depth {d}", lambda u, d=d: get(u, rerank="true", candidates=d)) for d in depths]
                for _, call in http:
                    call(users[0])
                rows += summarise("http", measure(http, users, args.repeats), "retrieve only")

        # the raw libraries in the same process
        hist_rows = [svc.histories.history(svc.histories.row(u))[0] for u in users[:50]]
        full_ctx = context_frame(ctx, svc.known_context_keys)
        vec = svc.user_vectors(hist_rows[:1], full_ctx[["timestamp", *svc.context_columns]], [None])
        booster = svc.ranker.ranker.booster_
        # rows the ranker scores per request at the deepest depth: the merged candidates of every source
        merged = []
        for u, h in zip(users[:20], hist_rows[:20]):
            scores, ids = svc.index.search(svc.user_vectors([h], full_ctx[["timestamp", *svc.context_columns]], [None]), max(depths))
            merged.append(len(svc.rank_requests([h], [list(ids[0])], [scores[0]], full_ctx, users=[u])[0].items))
        n_rows = int(np.median(merged))
        X = np.random.default_rng(2).standard_normal((n_rows, booster.num_feature()))
        raw = {"faiss search": [], f"lightgbm predict ({n_rows} rows)": []}
        for _ in range(args.repeats * 100):
            s = time.perf_counter()
            svc.index._index.search(vec, max(depths))
            raw["faiss search"].append(time.perf_counter() - s)
            s = time.perf_counter()
            booster.predict(X, num_iteration=svc.ranker.ranker.best_iteration_)
            raw[f"lightgbm predict ({n_rows} rows)"].append(time.perf_counter() - s)
        for name, ts in raw.items():
            rows.append({"path": "raw library", "arm": name, "p50_ms": round(pct_ms(ts, 50), 3), "p90_ms": round(pct_ms(ts, 90), 3)})
    meta = {
        "users": args.users, "passes": args.repeats, "k": args.k, "context": ctx, "setup_s": round(setup_s), "ranker_fit_s": fit["fit_seconds"],
        "merged_candidates_per_request": n_rows, "lightgbm": lightgbm.__version__, "faiss": faiss.__version__, "threads": 1,
    }  # fmt: skip
    if args.json:
        print(json.dumps({"meta": meta, "rows": rows}, indent=1))
        return
    print(f"{'path':<12} {'arm':<32} {'p50 ms':>8} {'p90 ms':>8} {'added p50 ms':>13} {'p50 ratio':>9}")
    for r in rows:
        print(f"{r['path']:<12} {r['arm']:<32} {r['p50_ms']:>8} {r['p90_ms']:>8} {r.get('added_p50_ms', ''):>13} {r.get('ratio_p50', ''):>9}")
    print(json.dumps(meta))



if __name__ == "__main__":
    main()
