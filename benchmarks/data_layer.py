"""Data-layer benchmark: demo generation, save, table import, split and history building at ~10M interactions.

Each step runs in a fresh subprocess so its peak RSS is its own; each is repeated and the median wall time is
reported beside the peak memory. Usage:

    python benchmarks/data_layer.py [--users 500000 --items 100000 --per-user 20 --repeats 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _step(name: str, work: Path, users: int, items: int, per_user: int) -> float:
    """Run one step in this (child) process; return its wall seconds."""
    import polars as pl

    from recsys.data.dataset import Dataset

    t0 = time.perf_counter()
    if name == "generate":
        from recsys.data.demo import generate_demo

        generate_demo(users=users, items=items, seed=0, interactions_per_user=per_user)
    elif name == "generate+save":
        from recsys.data.demo import generate_demo

        ds, src = generate_demo(users=users, items=items, seed=0, interactions_per_user=per_user)
        ds.save(work / "demo", source=src)
    elif name == "import table":
        from recsys.data.importers.table import import_table

        ds = Dataset.load(work / "demo")
        if not (work / "raw_inter.parquet").exists():
            ds.interactions.write_parquet(work / "raw_inter.parquet")
            ds.items.write_parquet(work / "raw_items.parquet")
        t0 = time.perf_counter()
        imported, src = import_table(work / "raw_inter.parquet", work / "raw_items.parquet")
        imported.save(work / "imported", source=src)
    elif name == "load+split":
        from recsys.evaluation.split import encode, leave_one_out

        leave_one_out(encode(Dataset.load(work / "demo")))
    elif name == "histories":
        from recsys.evaluation.split import encode, leave_one_out

        sp = leave_one_out(encode(Dataset.load(work / "demo")))
        t0 = time.perf_counter()
        recent = sp.test.history.last(50)
        _ = recent.to_csr(sp.encoded.n_items)
    else:
        raise SystemExit(f"unknown step {name}")
    del pl
    return time.perf_counter() - t0


STEPS = ["generate", "generate+save", "import table", "load+split", "histories"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=500_000)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--per-user", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        secs = _step(args.child, Path(args.work), args.users, args.items, args.per_user)
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"seconds": secs, "peak_rss_mb": rss_mb}))
        return
    with tempfile.TemporaryDirectory(prefix="recsys-bench-") as work:
        rows = []
        for step in STEPS:
            runs = []
            for _ in range(args.repeats):
                out = subprocess.run(
                    [sys.executable, __file__, "--child", step, "--work", work, "--users", str(args.users),
                     "--items", str(args.items), "--per-user", str(args.per_user)],
                    check=True, capture_output=True, text=True,
                )
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            rows.append((step, statistics.median(r["seconds"] for r in runs), max(r["peak_rss_mb"] for r in runs)))
        from recsys.data.dataset import Dataset

        n = Dataset.load(Path(work) / "demo").manifest["counts"]["interactions"]
    print(f"data layer at {n:,} interactions ({args.users:,} users, {args.items:,} items), median of {args.repeats}")
    print(f"{'step':<16}{'seconds':>10}{'peak RSS MB':>14}")
    for step, secs, rss in rows:
        print(f"{step:<16}{secs:>10.2f}{rss:>14.0f}")


if __name__ == "__main__":
    main()
