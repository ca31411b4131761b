"""``batch-score`` users/s with a reranker at several depths and inference options, beside retrieve only.

Runs on the artefacts ``benchmarks/serve_load.py --work DIR --index-items 100000 --rerank-depths 20`` leaves in DIR
(a demo dataset, a 100K-vector index and a briefly trained reranker); the candidates go to a temporary directory.

    python benchmarks/batch_rerank.py --work DIR [--users 100 --index-items 100000]

Results: docs/batch-scoring.md ("Reranking in batch").
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import polars as pl
import torch

from recsys.batch import BatchJob, run_batch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, required=True, help="The --work directory of a finished benchmarks/serve_load.py run.")
    p.add_argument("--users", type=int, default=100)
    p.add_argument("--index-items", type=int, default=100000, help="Which padded index of serve_load to use (index-N; 0: the unpadded one).")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    root = a.work
    index = root / (f"index-{a.index_items}" if a.index_items else "index")
    for need in (root / "ds" / "interactions.parquet", index, root / "rerank"):
        if not need.exists():
            raise SystemExit(f"error: {need} is missing: run benchmarks/serve_load.py --work {root} --index-items {a.index_items} --rerank-depths 20 first")
    rerank = root / "rerank"
    settings = [
        ("retrieve only", {}),
        ("rerank 20, onnx", dict(rerank=rerank, rerank_depth=20, rerank_inference="onnx")),
        ("rerank 20, fp32", dict(rerank=rerank, rerank_depth=20, rerank_inference="fp32")),
        ("rerank 50, onnx", dict(rerank=rerank, rerank_depth=50, rerank_inference="onnx")),
    ]
    with tempfile.TemporaryDirectory(prefix="batch-rerank-") as tmp:
        out = Path(tmp)
        users = pl.read_parquet(root / "ds" / "interactions.parquet")["user_id"].unique().sort().head(a.users)
        pl.DataFrame({"user_id": users}).write_csv(out / "users.csv")
        for name, kw in settings:
            t = time.perf_counter()
            job = BatchJob(index=index, out=out / name.replace(" ", "_").replace(",", ""), users=str(out / "users.csv"), k=100,
                           chunk_size=50, generated_at="2026-11-29T03:00:00+00:00", **kw)
            s = run_batch(job, progress=False)
            print(f"{name:<18} {s['users_per_second']:>8} users/s (scoring)  {time.perf_counter() - t:7.1f} s incl. loads", flush=True)
    print("load average", os.getloadavg())


if __name__ == "__main__":
    main()
