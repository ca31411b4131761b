"""Item encoding throughput: ``TwoTowerRetriever.encode_items`` vs a bare ``SentenceTransformer.encode`` on the same
texts and batch size, measured side by side (alternating order) in one run; median of repeats.

    python benchmarks/encode.py [--items 2000 --batch-size 128 --repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    from recsys.data.demo import generate_demo
    from recsys.retriever.config import RetrieverTrainingArguments, default_base_model
    from recsys.retriever.run import load_run, train_run

    with tempfile.TemporaryDirectory() as tmp:
        ds, src = generate_demo(users=200, items=args.items, seed=0, interactions_per_user=10)
        ds = ds.save(Path(tmp) / "ds", source=src)
        train_run(ds, Path(tmp) / "run", RetrieverTrainingArguments(epochs=1, max_steps=2, encode_batch_size=args.batch_size))
        model, _, _ = load_run(Path(tmp) / "run")
        texts = model.render_items(ds.items)
        bare = SentenceTransformer(default_base_model(), device="cpu")
        tokens = np.mean([len(t) for t in bare.tokenizer(texts[:200])["input_ids"]])

        def run_bare() -> float:
            t = time.perf_counter()
            with torch.inference_mode():
                bare.encode(texts, batch_size=args.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
            return time.perf_counter() - t

        def run_ours() -> float:
            t = time.perf_counter()
            model.encode_items(texts)
            return time.perf_counter() - t

        run_bare(), run_ours()  # warm-up
        b, o = [], []
        for r in range(args.repeats):
            first, second = (run_bare, run_ours) if r % 2 == 0 else (run_ours, run_bare)
            x, y = first(), second()
            (b, o)[0 if first is run_bare else 1].append(x)
            (o, b)[0 if first is run_bare else 1].append(y)
    mb, mo = statistics.median(b), statistics.median(o)
    print(f"item encoding, {len(texts):,} demo items (~{tokens:.0f} tokens each), batch {args.batch_size}, torch threads {torch.get_num_threads()}, median of {args.repeats}")
    print(f"{'path':<34}{'seconds':>9}{'items/s':>10}{'ratio vs bare':>15}")
    print(f"{'bare SentenceTransformer.encode':<34}{mb:>9.2f}{len(texts) / mb:>10.0f}{1.0:>15.2f}")
    print(f"{'recsys encode_items (fp32)':<34}{mo:>9.2f}{len(texts) / mo:>10.0f}{mb / mo:>15.2f}")


if __name__ == "__main__":
    main()
