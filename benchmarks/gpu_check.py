"""GPU check, for a machine with a GPU (the project never needs one): GPU FAISS returns the same exact top-k as CPU
FAISS, and how fast fp16 item encoding and GPU search are at 1M items. Prints a table; exits 0 with a reason when
no GPU or no GPU-enabled faiss is present.

    python benchmarks/gpu_check.py [--items 1000000 --dim 64 --queries 1000 --texts 100000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np


def _timed(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--texts", type=int, default=100_000)
    args = ap.parse_args()

    import torch

    from recsys.index import backend
    from recsys.index import ItemIndex

    if not backend.gpu_available():
        print(f"no GPU check: faiss GPU support {backend.faiss_has_gpu_support()}, GPUs seen {backend.num_gpus()}, "
              f"torch CUDA {torch.cuda.is_available()} (install faiss-gpu: pip install 'recsys[gpu]')")
        return 0

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.items, args.dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[rng.choice(args.items, args.queries, replace=False)] + 0.1 * rng.standard_normal((args.queries, args.dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    ids = np.arange(args.items)
    rows = []
    cpu = ItemIndex.build(x, ids, index_type="flat", model_fingerprint="gpu-check", device="cpu", progress=False)
    gpu = ItemIndex.build(x, ids, index_type="flat", model_fingerprint="gpu-check", device="gpu", progress=False)
    cs, ci = cpu.search(q, args.k)
    gs, gi = gpu.search(q, args.k)
    same = float(np.mean([len(set(a) & set(b)) / args.k for a, b in zip(ci, gi)]))
    max_diff = float(np.abs(cs - gs).max())
    print(f"exact top-{args.k} agreement GPU vs CPU over {args.queries} queries: {same:.5f} (score max |diff| {max_diff:.2e})")
    for batch in (1, 256):
        qb = q[:batch] if batch > 1 else q[:1]
        n_calls = min(args.queries // batch, 50) or 1
        tc = _timed(lambda: [cpu.search(q[i * batch:(i + 1) * batch], args.k) for i in range(n_calls)]) / (n_calls * batch)
        tg = _timed(lambda: [gpu.search(q[i * batch:(i + 1) * batch], args.k) for i in range(n_calls)]) / (n_calls * batch)
        rows.append((f"search {args.items:,} x {args.dim}, batch {batch}", tc * 1000, tg * 1000))
        del qb

    from sentence_transformers import SentenceTransformer

    from recsys.data.demo import generate_demo
    from recsys.retriever.config import default_base_model
    from recsys.text import render_items

    ds, _ = generate_demo(users=100, items=args.texts, seed=0, interactions_per_user=5)
    texts = render_items(ds.items)
    fp16 = SentenceTransformer(default_base_model(), device="cuda").half()
    fp32 = SentenceTransformer(default_base_model(), device="cpu")
    t = time.perf_counter()
    e16 = fp16.encode(texts, batch_size=512, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    t16 = time.perf_counter() - t
    sample = texts[:2000]
    t = time.perf_counter()
    e32 = fp32.encode(sample, batch_size=128, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    t32 = (time.perf_counter() - t) / len(sample) * len(texts)
    cos = float(np.min(np.sum(e16[:2000].astype(np.float32) * e32, axis=1)))
    rows.append((f"encode {len(texts):,} item texts (GPU fp16 vs CPU fp32, CPU extrapolated)", t32 * 1000, t16 * 1000))
    print(f"fp16 GPU vs fp32 CPU embeddings: min cosine {cos:.5f} over 2,000 texts")
    print(f"{'what':<70}{'CPU ms':>12}{'GPU ms':>12}{'speed-up':>10}")
    for name, c, g in rows:
        print(f"{name:<70}{c:>12.3f}{g:>12.3f}{c / g:>10.1f}")
    ok = same > 0.999 and cos > 0.99
    print("GPU check", "passed" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
