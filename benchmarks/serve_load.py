"""Load test of ``recsys serve``: the real server (uvicorn in a subprocess on 127.0.0.1) over a demo index.

    python benchmarks/serve_load.py [--work /tmp/recsys-serve-load] [--users 2000] [--items 10000]
        [--index-items 100000] [--requests 300] [--levels 1,8,32] [--rss-requests 2000]
        [--rerank-depths 20,50 --rerank-requests 10] [--json out.json]

1. Prepares (or reuses from ``--work``) a demo dataset, a briefly trained retriever run, its index and a copy (the
   reload target). ``--index-items N`` pads the index to N vectors with random unit vectors (ids from 10^9): search
   cost depends on the vector count and dimension only. ``--rerank-depths`` also fits a ranking run (``recsys train ranker``).
2. Starts ``recsys.cli.serve.serve`` in a subprocess on a free loopback port, waits for ``/ready``.
3. Per concurrency level: GET /recommend/{user} (known users, k=20) with an httpx.AsyncClient, p50/p99 latency,
   throughput, errors; then new users by profile text (POST); ranked GETs at concurrency 1, each user asked
   retrieve-only then ranked back to back (added p50 per user and the p50 ratio against retrieve-only).
4. Server RSS before/after ``--rss-requests`` requests; a hot reload in the middle of a load at concurrency 8:
   every request must succeed.

Results: docs/serving.md ("Measured latency").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

TOKEN = "serve-load-token"


def pad_index(index_dir: Path, out: Path, total: int) -> Path:
    """A copy of the index padded to ``total`` vectors with random unit vectors (ids 10^9, 10^9 + 1, ...)."""
    from recsys.index import ItemIndex

    if (out / "manifest.json").is_file():
        return out
    index = ItemIndex.load(index_dir, device="cpu")
    extra = total - len(index)
    if extra > 0:
        rng = np.random.default_rng(0)
        for lo in range(0, extra, 50_000):
            v = rng.standard_normal((min(50_000, extra - lo), index.dim)).astype(np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            index.add_items(v, np.arange(10**9 + lo, 10**9 + lo + len(v), dtype=np.int64))
        # a title for each padding item (shown in responses; the ranker ranks only the ranking run's catalogue)
        added = dict(index.metadata.get("added_items", {}))
        added.update({str(10**9 + i): {"title": f"Padding item {i}"} for i in range(extra)})
        index.metadata["added_items"] = added
    index.save(out)
    return out


def prepare_ranker(work: Path, depth: int) -> Path:
    """A ranking run (``recsys train ranker``: the retriever's top ``depth`` + EASE, co-occurrence, popularity) on
    the benchmark's demo data (work/rank-DEPTH)."""
    from recsys.data.dataset import Dataset
    from recsys.ltr.run import train_ranking_run

    out = work / f"rank-{depth}"
    if not (out / "manifest.json").is_file():
        train_ranking_run(Dataset.load(work / "ds"), work / "run", out, depth=depth)
    return out


def prepare(work: Path, users: int, items: int, max_steps: int) -> tuple[Path, Path, list]:
    """(index, reload index, known user ids), building what is missing."""
    from recsys.data.dataset import Dataset
    from recsys.data.demo import generate_demo
    from recsys.index.build import build_index
    from recsys.retriever.config import RetrieverTrainingArguments
    from recsys.retriever.run import train_run

    work.mkdir(parents=True, exist_ok=True)
    ds_dir, run_dir, index_dir, index_b = work / "ds", work / "run", work / "index", work / "index-b"
    t0 = time.perf_counter()
    if not (ds_dir / "manifest.json").is_file():
        ds, src = generate_demo(users=users, items=items, seed=0)
        ds.save(ds_dir, source=src)
    ds = Dataset.load(ds_dir)
    if not (run_dir / "manifest.json").is_file():
        train_run(ds, run_dir, RetrieverTrainingArguments(epochs=1, max_steps=max_steps, time_budget_s=300, seed=0))
    if not (index_dir / "manifest.json").is_file():
        build_index(run_dir, ds, index_dir, progress=False)
    if not (index_b / "manifest.json").is_file():  # the reload target: one item more, so another fingerprint
        import polars as pl

        from recsys.index.build import add_items

        shutil.copytree(index_dir, work / "index-b.tmp", dirs_exist_ok=True)
        add_items(work / "index-b.tmp", pl.DataFrame({"item_id": [10**9], "title": ["Reload Marker"], "description": ["added by serve_load"]}))
        (work / "index-b.tmp").rename(index_b)
    print(f"artefacts in {work} ({time.perf_counter() - t0:.0f}s to prepare): {ds.interactions.height:,} interactions, "
          f"{ds.items.height:,} items, {ds.interactions['user_id'].n_unique():,} users", flush=True)
    return index_dir, index_b, ds.interactions["user_id"].unique().sort().to_list()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(index: Path, port: int, log: Path, *, micro_batch: bool, threads: int, rerank: Path | None = None) -> subprocess.Popen:
    rerank_arg = f"Path({str(rerank)!r})" if rerank else "None"
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from recsys.cli.serve import serve
        serve(Path({str(index)!r}), host="127.0.0.1", port={port}, log_level="warning", micro_batch={micro_batch!r}, threads={threads},
              rerank={rerank_arg})
        """
    )
    env = {**os.environ, "RECSYS_ADMIN_TOKEN": TOKEN, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 300) -> float:
    import httpx

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with code {proc.returncode}")
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("server not ready in time")


def rss_mib(pid: int) -> float:
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2**20
    except ImportError:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    return float("nan")


async def load(base: str, concurrency: int, requests: list[tuple[str, str, dict | None]], during=None) -> dict:
    """Fire ``requests`` (method, path, json) with ``concurrency`` in flight; ``during`` is a coroutine run alongside."""
    import httpx

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    fingerprints: set[str] = set()
    queue = list(reversed(requests))

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            method, path, body = queue.pop()
            t = time.perf_counter()
            try:
                r = await client.request(method, path, json=body)
                code = r.status_code
                if code == 200:
                    fingerprints.add(r.json().get("index_fingerprint"))
            except httpx.HTTPError:
                code = -1
            latencies.append(time.perf_counter() - t)
            statuses[code] = statuses.get(code, 0) + 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        t0 = time.perf_counter()
        tasks = [asyncio.create_task(worker(client)) for _ in range(concurrency)]
        extra = await during(client) if during is not None else None
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
    lat = np.asarray(latencies) * 1000
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "rps": len(latencies) / wall,
        "errors": sum(n for code, n in statuses.items() if code != 200),
        "latencies_ms": lat.round(3).tolist(),  # in completion order (issue order at concurrency 1)
        "statuses": statuses,
        "fingerprints": sorted(f for f in fingerprints if f),
        "extra": extra,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/recsys-serve-load"))
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--max-steps", type=int, default=30, help="Optimiser steps of the brief training.")
    p.add_argument("--requests", type=int, default=300, help="Requests per concurrency level.")
    p.add_argument("--levels", default="1,8,32")
    p.add_argument("--profile-requests", type=int, default=60, help="New-user (profile text) requests per level.")
    p.add_argument("--rss-requests", type=int, default=2000)
    p.add_argument("--no-micro-batch", action="store_true", help="Serve without micro-batching (to compare).")
    p.add_argument("--threads", type=int, default=1, help="Server's torch/FAISS threads (0 = library default).")
    p.add_argument("--index-items", type=int, default=0, help="Pad the index to this many vectors (random unit vectors beyond the demo items).")
    p.add_argument("--rerank-depths", default="", help="e.g. 20,50: also serve with a ranking run of the largest depth and time ranked GETs at each.")
    p.add_argument("--rerank-requests", type=int, default=10, help="Users per depth; each is asked retrieve-only, then ranked.")
    p.add_argument("--json", type=Path, default=None, help="Also write the results here.")
    args = p.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    depths = [int(x) for x in args.rerank_depths.split(",") if x.strip()]

    index, index_b, users = prepare(args.work, args.users, args.items, args.max_steps)
    if args.index_items and args.index_items > args.items:
        index = pad_index(index, args.work / f"index-{args.index_items}", args.index_items)
        index_b = pad_index(index_b, args.work / f"index-b-{args.index_items}", args.index_items + 1)
    rerank = prepare_ranker(args.work, max(depths)) if depths else None
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(index, port, args.work / "server.log", micro_batch=not args.no_micro_batch, threads=args.threads, rerank=rerank)
    print(f"server: micro-batching {'off' if args.no_micro_batch else 'on'}, threads {args.threads}", flush=True)
    rng = random.Random(0)
    results: dict = {"micro_batch": not args.no_micro_batch, "threads": args.threads, "levels": [], "profile": [], "rerank": [], "index_items": args.index_items or args.items, "machine": {"cpus": os.cpu_count(), "loadavg_before": os.getloadavg()}}
    try:
        results["startup_s"] = wait_ready(base, proc)
        plain = "&rerank=false" if rerank else ""
        get = lambda n: [("GET", f"/recommend/{rng.choice(users)}?k=20{plain}", None) for _ in range(n)]  # noqa: E731
        profiles = ["loves italian cooking and pasta", "trail running shoes for ultramarathons", "science fiction novels about robots",
                    "jazz records and vinyl", "board games for families"]
        post = lambda n: [("POST", "/recommend", {"profile": rng.choice(profiles) + f" #{i}", "k": 20, "rerank": False if rerank else None}) for i in range(n)]  # noqa: E731
        asyncio.run(load(base, 4, get(40)))  # warm-up
        for c in levels:
            r = asyncio.run(load(base, c, get(args.requests)))
            results["levels"].append(r)
            print(f"GET  c={c:>2}: p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  {r['rps']:6.1f} req/s  errors {r['errors']}", flush=True)
        for c in [lv for lv in levels if lv <= 8]:
            r = asyncio.run(load(base, c, post(args.profile_requests)))
            results["profile"].append(r)
            print(f"POST c={c:>2} (profile): p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  {r['rps']:6.1f} req/s  errors {r['errors']}", flush=True)

        for d in depths:  # each user retrieve-only then ranked, back to back: the ranked p50 against retrieve-only in the same run
            picked = [rng.choice(users) for _ in range(args.rerank_requests)]
            reqs = [("GET", f"/recommend/{u}?k=20{tail}", None) for u in picked for tail in ("&rerank=false", f"&rerank=true&candidates={d}")]
            asyncio.run(load(base, 1, reqs[:4]))  # warm-up of this depth
            pairs = asyncio.run(load(base, 1, reqs))
            lat = np.asarray(pairs["latencies_ms"]).reshape(-1, 2)
            r = {**pairs, "depth": d, "requests": len(lat), "p50_ms": float(np.percentile(lat[:, 1], 50)), "p99_ms": float(np.percentile(lat[:, 1], 99)),
                 "rps": len(lat) / (lat[:, 1].sum() / 1000), "retrieve_p50_ms": float(np.percentile(lat[:, 0], 50)),
                 "added_p50_ms": float(np.median(lat[:, 1] - lat[:, 0])), "ratio_p50": float(np.percentile(lat[:, 1], 50) / np.percentile(lat[:, 0], 50))}  # fmt: skip
            results["rerank"].append(r)
            print(f"GET  c= 1 rerank {d:>3} candidates: p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  (retrieve-only p50 {r['retrieve_p50_ms']:.1f} ms, "
                  f"added p50 {r['added_p50_ms']:.1f} ms, ratio {r['ratio_p50']:.2f})  errors {r['errors']}", flush=True)

        rss_before = rss_mib(proc.pid)
        r = asyncio.run(load(base, 8, get(args.rss_requests)))
        rss_after = rss_mib(proc.pid)
        results["rss"] = {"before_mib": rss_before, "after_mib": rss_after, "requests": r["requests"], "errors": r["errors"]}
        print(f"RSS: {rss_before:.0f} MiB -> {rss_after:.0f} MiB after {r['requests']} requests ({r['errors']} errors)", flush=True)

        async def reload_midway(client):
            await asyncio.sleep(0.5)
            t = time.perf_counter()
            resp = await client.post("/admin/reload", json={"index": str(index_b)}, headers={"Authorization": f"Bearer {TOKEN}"})
            return {"status": resp.status_code, "seconds": time.perf_counter() - t}

        r = asyncio.run(load(base, 8, get(max(args.requests, 600)), during=reload_midway))
        results["reload"] = r
        print(f"reload during load (c=8): reload HTTP {r['extra']['status']} in {r['extra']['seconds']:.1f}s, {r['requests']} requests, "
              f"{r['errors']} failed, index fingerprints seen {len(r['fingerprints'])}", flush=True)
        import httpx

        metrics = httpx.get(f"{base}/metrics").text
        results["metrics_recommend_200"] = sum(
            float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith("recsys_http_requests_total{") and 'status="200"' in line and "/recommend" in line
        )
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    results["machine"]["loadavg_after"] = os.getloadavg()

    print()
    print(f"| {'test':<24} | {'conc.':>5} | {'requests':>8} | {'p50 ms':>7} | {'p99 ms':>7} | {'req/s':>6} | {'errors':>6} |")
    print(f"|{'-' * 26}|{'-' * 7}|{'-' * 10}|{'-' * 9}|{'-' * 9}|{'-' * 8}|{'-' * 8}|")
    rows = [("GET known user (k=20)", r) for r in results["levels"]] + [("POST new user, profile", r) for r in results["profile"]]
    rows += [(f"GET ranked, {r['depth']} retrieved", r) for r in results["rerank"]]  # (rps: of the ranked requests alone)
    rows.append(("GET during reload", results["reload"]))
    for name, r in rows:
        print(f"| {name:<24} | {r['concurrency']:>5} | {r['requests']:>8} | {r['p50_ms']:>7.1f} | {r['p99_ms']:>7.1f} | {r['rps']:>6.1f} | {r['errors']:>6} |")
    print(f"\nstartup to /ready {results['startup_s']:.1f}s; RSS {results['rss']['before_mib']:.0f} -> {results['rss']['after_mib']:.0f} MiB over "
          f"{results['rss']['requests']} requests; /metrics counted {results['metrics_recommend_200']:.0f} successful /recommend requests; "
          f"load average {results['machine']['loadavg_before'][0]:.1f} before, {results['machine']['loadavg_after'][0]:.1f} after "
          f"({results['machine']['cpus']} CPUs)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
