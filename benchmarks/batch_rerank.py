"""batch-score users/s with a reranker at different depths and inference options, beside retrieve-only, on the
artefacts of benchmarks/serve_load.py (run it first with --index-items 100000 --rerank-depths 20: it leaves a demo
dataset, a 100K-vector index and a briefly trained reranker in /tmp/sl).

    python benchmarks/batch_rerank.py

Measured 2026-11-29 (100 users, k 100, chunks of 50, 1 torch thread, load average 1.8-2.9):

    retrieve only       342.7 users/s
    rerank 20, onnx       1.6 users/s   (71 s including loads and the ONNX export)
    rerank 20, fp32       0.9 users/s
    rerank 50, onnx       0.7 users/s

Each reranked user costs `depth` cross-encoder pairs (~60 ms a pair in fp32 on this CPU, ~25 ms in onnx), so a
nightly rerank of millions of users needs GPUs (Ray actors with --gpus-per-actor) or a small depth.
"""
import json, time, shutil, sys, os
from pathlib import Path
import polars as pl, torch
torch.set_num_threads(1)
from recsys.batch import BatchJob, run_batch
root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/sl"); out = Path("/tmp/bbr"); shutil.rmtree(out, ignore_errors=True); out.mkdir()
users = pl.read_parquet(root / "ds" / "interactions.parquet")["user_id"].unique().sort().head(100)
pl.DataFrame({"user_id": users}).write_csv(out / "users.csv")
rows = []
for name, kw in [("retrieve only", {}), ("rerank 20, onnx", dict(rerank=root / "rerank", rerank_depth=20, rerank_inference="onnx")),
                 ("rerank 20, fp32", dict(rerank=root / "rerank", rerank_depth=20, rerank_inference="fp32")),
                 ("rerank 50, onnx", dict(rerank=root / "rerank", rerank_depth=50, rerank_inference="onnx"))]:
    t = time.perf_counter()
    s = run_batch(BatchJob(index=root / "index-100000", out=out / name.replace(" ", "_").replace(",", ""), users=str(out / "users.csv"), k=100, chunk_size=50,
                           generated_at="2026-11-29T03:00:00+00:00", **kw), progress=False)
    rows.append((name, s["users_per_second"], round(time.perf_counter() - t, 1)))
    print(name, s["users_per_second"], "users/s (scoring)", round(time.perf_counter() - t, 1), "s incl. load", flush=True)
print("load average", os.getloadavg())
