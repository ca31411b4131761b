"""``recsys build-index`` wall time and peak memory at large catalogues (issue 3: "build-index time and peak memory
at 100K and 1M items").

Worst case: every item is new to the retriever run (a catalogue from the demo generator that the run never saw), so
every item's text goes through the text model, then the item tower, then FAISS. (Items the run was trained on reuse
their stored text embeddings and skip the text model, see ``recsys.index.build``.) Each size is built by the real
``build_index`` in its own subprocess, which reports its own peak RSS (``ru_maxrss``), so sizes do not pollute each
other. ``--extrapolate N`` adds a row for N items made of the measured text-encoding rate of the largest built size
plus a *measured* FAISS build of N vectors of the run's dimension (random unit vectors: FAISS cost depends on count and
dimension only) -- for sizes whose text encoding takes hours on this CPU; the row is labelled as such.

    python benchmarks/build_index_scale.py --sizes 2000,10000 --inference onnx-int8 --extrapolate 100000,1000000

Measured 2026-11-29 (``--sizes 2000,10000 --extrapolate 100000,1000000 --inference onnx-int8 --threads 1``, shared
2-core AVX2 EPYC, load average 8-9 from other jobs; one run):

         items   seconds  items/s  peak RSS MB  how
         2,000     155.0     12.9         1957  measured (includes the one-time ONNX export, fusion, calibration)
        10,000     668.9     15.0         1230  measured
       100,000    6689.2     14.9            -  encoding extrapolated at 15 items/s + FAISS measured 0.8 s (flat)
     1,000,000   66890.5     14.9            -  encoding extrapolated at 15 items/s + FAISS measured 6.0 s (flat, +122 MB)

Measured again on a quiet machine (2026-11-29, later; ``--sizes 2000,100000 --extrapolate 1000000 --inference
onnx-int8 --threads 2``, load average 1.2-1.4, the ONNX export already cached):

         items   seconds  items/s  peak RSS MB  how
         2,000      21.5     92.8         1193  measured (load 1.2)
       100,000     882.6    113.3         1559  measured (load 1.4)
     1,000,000    8825.0    113.3            -  encoding extrapolated at 113 items/s + FAISS measured 1.4 s (flat, +165 MB)

So 100K new items take 14.7 min and 1.56 GB; 1M would take ~2.5 h on these 2 cores (not run: longer than a
session), memory growing by the vectors (1M x 64 float32 = 256 MB) plus FAISS's +165 MB.

Text encoding is the whole cost: at this load 100K new items take ~1.9 h and 1M ~18.6 h on one thread (a GPU encodes
them in minutes: ``benchmarks/gpu_check.py``). The 2,000-item child peaks higher than the 10,000-item one because the
ONNX export and quantisation ran in it (the cache served the second).
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
