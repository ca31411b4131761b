"""``recsys build-index`` wall time and peak memory at large catalogues, in the worst case: every item is new to the
run, so its text goes through the text model, then the item tower, then FAISS.

Each size is built by the real ``build_index`` in its own subprocess (its own ``ru_maxrss``). ``--extrapolate N`` adds
a row from the measured encoding rate of the largest built size plus a measured FAISS build of N random unit vectors
of the run's dimension, for sizes whose text encoding takes hours on a CPU; the row is labelled as such.

    python benchmarks/build_index_scale.py --sizes 2000,10000 --inference onnx-int8 --extrapolate 100000,1000000

Results: docs/performance.md ("build-index at scale").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(int(sys.argv[5]))
from recsys.data.dataset import Dataset
from recsys.index.build import build_index
t0 = time.perf_counter()
ds = Dataset.load(sys.argv[1])
t_load = time.perf_counter() - t0
t = time.perf_counter()
index = build_index(sys.argv[2], ds, sys.argv[3], inference=sys.argv[4], progress=False)
seconds = time.perf_counter() - t
info = index.info()
print(json.dumps({
    "items": len(index), "seconds": seconds, "load_seconds": t_load, "type": info.get("type"),
    "text_encoded": index.metadata.get("text_encoded_items"), "dim": index.dim,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def faiss_build(n: int, dim: int) -> dict[str, float]:
    """Measured ItemIndex.build + save of n random unit vectors (the FAISS part of build-index), in this process."""
    import resource

    import numpy as np

    from recsys.index import ItemIndex

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    index = ItemIndex.build(x, np.arange(n), model_fingerprint="bench", progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        index.save(Path(tmp) / "index")
        seconds = time.perf_counter() - t
    return {"seconds": seconds, "type": index.info().get("type"), "extra_rss_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--inference", default="onnx-int8", help="fp32, onnx or onnx-int8 (how new items' text is embedded)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--extrapolate", default="", help="comma-separated sizes: a row each (measured FAISS + extrapolated encoding)")
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from recsys.data.demo import generate_demo
    from recsys.retriever.config import RetrieverTrainingArguments
    from recsys.retriever.run import train_run

    work = args.work or Path(tempfile.mkdtemp(prefix="recsys-build-bench-"))
    run = work / "run"
    if not run.exists():
        ds, src = generate_demo(users=1000, items=1000, seed=0, interactions_per_user=20)
        ds = ds.save(work / "train-ds", source=src)
        train_run(ds, run, RetrieverTrainingArguments(epochs=1, max_steps=10, threads=args.threads))
    rows = []
    for n in [int(x) for x in args.sizes.split(",") if x]:
        dpath = work / f"catalogue-{n}"
        if not dpath.exists():
            # a catalogue the run never saw (another seed): every item is embedded from its text
            ds, src = generate_demo(users=200, items=n, seed=1, interactions_per_user=5)
            ds.save(dpath, source=src)
        out = work / f"index-{n}"
        load = os.getloadavg()[0]
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(dpath), str(run), str(out), args.inference, str(args.threads)],
            capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        if proc.returncode:
            raise SystemExit(proc.stderr[-3000:])
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        res.update({"load_avg_start": load, "kind": "measured", "items_per_s": res["items"] / res["seconds"]})
        rows.append(res)
        print(json.dumps(res), flush=True)
    sizes = [int(x) for x in args.extrapolate.split(",") if x]
    if sizes and rows:
        measured = rows[-1]
        dim = measured["dim"]
        small = faiss_build(measured["items"], dim)
        encode_rate = measured["items"] / max(measured["seconds"] - small["seconds"], 1e-9)
        for n in sizes:
            fb = faiss_build(n, dim)
            seconds = n / encode_rate + fb["seconds"]
            rows.append({"items": n, "seconds": seconds, "kind": f"encoding extrapolated at {encode_rate:.0f} items/s + FAISS measured {fb['seconds']:.1f} s ({fb['type']}, +{fb['extra_rss_mb']:.0f} MB)",
                         "peak_rss_mb": None, "items_per_s": n / seconds})
    print(f"\nbuild-index, every item new to the run (text-encoded, inference {args.inference}, {args.threads} threads)")
    print(f"{'items':>10} {'seconds':>9} {'items/s':>8} {'peak RSS MB':>12}  how")
    for r in rows:
        rss = f"{r['peak_rss_mb']:.0f}" if r.get("peak_rss_mb") else "-"
        print(f"{r['items']:>10,} {r['seconds']:>9.1f} {r['items_per_s']:>8.1f} {rss:>12}  {r['kind']}" + (f" (load {r['load_avg_start']:.1f})" if "load_avg_start" in r else ""))


if __name__ == "__main__":
    main()
