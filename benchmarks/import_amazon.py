"""Amazon reviews import: throughput and peak memory of ``import_amazon`` on a synthetic gzipped reviews file.

A 2018-format reviews file (``reviewerID, asin, overall, unixReviewTime, reviewText`` plus the usual extra fields,
~330 bytes a line, Zipf-distributed users and items) is generated at each size. Each measurement runs in a fresh
subprocess so its peak RSS is its own, and is repeated; the table gives median wall seconds, lines per second and
the median peak RSS, beside the raw library doing the same read in one go (``polars.read_ndjson`` of the whole
decompressed file with the same four-column schema), whose memory grows with the file. ``baseline`` is the peak
RSS of a process that only imports polars and recsys. Usage:

    python benchmarks/import_amazon.py [--sizes 250000,500000,1000000 --repeats 3 --work /tmp/recsys-bench-amazon]
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

WORDS = ("great quality stapler paper pen works fine broke after week love it would buy again the ink is smooth "
         "delivery fast price good recommend office desk cheap sturdy black blue box arrived damaged").split()


def generate(path: Path, lines: int, seed: int = 0) -> None:
    """Synthetic 2018-format reviews, gzipped; users ~ lines/8 and items ~ lines/20, both Zipf-like."""
    import numpy as np

    rng = np.random.default_rng(seed)
    users = (rng.zipf(1.3, lines) % max(1, lines // 8)).astype(np.int64)
    items = (rng.zipf(1.2, lines) % max(1, lines // 20)).astype(np.int64)
    times = 1_300_000_000 + rng.integers(0, 300_000_000, lines) // 86400 * 86400
    ratings = rng.integers(1, 6, lines)
    texts = [" ".join(rng.choice(WORDS, 40)) for _ in range(256)]
    part = path.with_name(path.name + ".part")  # renamed when complete: an interrupted run leaves no short file
    with gzip.open(part, "wt", compresslevel=1, encoding="utf-8") as f:
        for k in range(lines):
            f.write(json.dumps({
                "overall": float(ratings[k]), "verified": True, "reviewTime": "01 1, 2015", "reviewerID": f"A{users[k]:013d}",
                "asin": f"B{items[k]:09d}", "style": {"Color:": " Black"}, "reviewerName": "someone",
                "reviewText": texts[k % 256], "summary": "Five Stars", "unixReviewTime": int(times[k]),
            }) + "\n")
    part.replace(path)


def _child(method: str, path: str) -> None:
    """One measurement in this process: print wall seconds, peak RSS (MiB) and the interaction count."""
    import io

    import polars as pl

    from recsys.data.importers.amazon import import_amazon

    t0 = time.perf_counter()
    if method == "import_amazon":
        ds, _ = import_amazon(path)
        n = ds.interactions.height
    elif method == "polars.read_ndjson":
        with gzip.open(path, "rb") as f:
            data = f.read()
        schema = {"reviewerID": pl.String, "asin": pl.String, "overall": pl.Float64, "unixReviewTime": pl.Int64}
        n = pl.read_ndjson(io.BytesIO(data), schema=schema).height
    else:
        n = 0
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mib": peak, "rows": n}))


def _measure(method: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", method, str(path)], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{method} on {path} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="250000,500000,1000000")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path("/tmp/recsys-bench-amazon"))
    ap.add_argument("--child", nargs=2, metavar=("METHOD", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(*args.child)
        return
    args.work.mkdir(parents=True, exist_ok=True)
    base = statistics.median(_measure("baseline", Path("-"))["peak_mib"] for _ in range(args.repeats))
    print(f"baseline (python + polars + recsys imported): peak RSS {base:.0f} MiB")
    print(f"| lines | file MiB (gz) | method | median s | lines/s | peak RSS MiB | peak - baseline MiB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for size in (int(s) for s in args.sizes.split(",")):
        path = args.work / f"reviews_{size}.json.gz"
        if not path.exists():
            generate(path, size)
        mib = path.stat().st_size / 2**20
        for method in ("import_amazon", "polars.read_ndjson"):
            runs = [_measure(method, path) for _ in range(args.repeats)]
            s = statistics.median(r["seconds"] for r in runs)
            peak = statistics.median(r["peak_mib"] for r in runs)
            print(f"| {size:,} | {mib:.1f} | {method} | {s:.2f} | {size / s:,.0f} | {peak:.0f} | {peak - base:.0f} |", flush=True)


if __name__ == "__main__":
    main()
