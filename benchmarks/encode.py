"""Item encoding throughput and agreement: ``TwoTowerRetriever.encode_items`` with each text inference option
(fp32 torch, onnx, onnx-int8 and int8 variants) vs a bare ``SentenceTransformer.encode`` fp32 on the same texts and
batch size, side by side in one run (the order rotates every repeat); median of repeats.

Agreement with fp32: cosine of the text embeddings (mean and min over items), and recall@100 of an exact
inner-product index over each option's item vectors against the fp32 index (user-vector and item-vector queries).

    python benchmarks/encode.py [--items 2000 --batch-size 128 --repeats 5 --options fp32,onnx,onnx-int8]

Results: docs/performance.md, docs/experiments/int8-study.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's recsys, not an installed copy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=2000, help="demo items: all of them measure agreement")
    ap.add_argument("--time-items", type=int, default=None, help="time encoding of the first N items only (default: all)")
    ap.add_argument("--users", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="torch and onnxruntime threads")
    ap.add_argument("--options", default="fp32,onnx,onnx-int8:default,onnx-int8", help="fp32, onnx, onnx-int8, onnx-int8:<variant>")
    args = ap.parse_args()

    import faiss
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    from recsys.data.demo import generate_demo
    from recsys.evaluation.split import encode, leave_one_out
    from int8_variants import register_study_variants
    from recsys.onnx import onnx_available
    from recsys.retriever.config import RetrieverTrainingArguments, default_base_model
    from recsys.retriever.run import load_run, train_run

    register_study_variants()  # onnx-int8:<variant> of the int8 study
    options = [o for o in args.options.split(",") if o]
    ok, why = onnx_available()
    if not ok:
        print(f"skipping ONNX options: {why}")
        options = [o for o in options if not o.startswith("onnx")]
    with tempfile.TemporaryDirectory() as tmp:
        ds, src = generate_demo(users=args.users, items=args.items, seed=0, interactions_per_user=10)
        ds = ds.save(Path(tmp) / "ds", source=src)
        settings = RetrieverTrainingArguments(epochs=2, max_steps=40, encode_batch_size=args.batch_size, threads=args.threads, d_model=64)
        train_run(ds, Path(tmp) / "run", settings)
        model, _, _ = load_run(Path(tmp) / "run")
        all_texts = model.render_items(ds.items)
        texts = all_texts[: args.time_items] if args.time_items else all_texts
        bare = SentenceTransformer(default_base_model(), device="cpu")
        tokens = np.mean([len(t) for t in bare.tokenizer(all_texts)["input_ids"]])

        def run_bare() -> float:
            t = time.perf_counter()
            with torch.inference_mode():
                bare.encode(texts, batch_size=args.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
            return time.perf_counter() - t

        def run_ours(option: str):
            def f() -> float:
                model.use(option) if model.inference != option else None
                t = time.perf_counter()
                model.encode_items(texts)
                return time.perf_counter() - t

            return f

        # agreement (and the exports, outside the timings)
        text_emb, item_vec = {}, {}
        for opt in options:
            model.use(opt)
            text_emb[opt] = model.embed(all_texts, cache=False)
            with torch.inference_mode():
                item_vec[opt] = model.net.normalise(model.net.item_raw(torch.from_numpy(text_emb[opt]), torch.full((len(all_texts),), -1))).numpy()
        split = leave_one_out(encode(ds))
        users = model.encode_users(split.test.history)
        rng = np.random.default_rng(0)
        queries = {"users": users, "items": item_vec["fp32"][rng.choice(len(all_texts), min(300, len(all_texts)), replace=False)]}

        def top100(vectors: np.ndarray, q: np.ndarray) -> np.ndarray:
            index = faiss.IndexFlatIP(vectors.shape[1])
            index.add(vectors)
            return index.search(q, 100)[1]

        ref = {k: top100(item_vec["fp32"], q) for k, q in queries.items()}

        def recall(opt: str, k: str) -> float:
            got = top100(item_vec[opt], queries[k])
            return float(np.mean([len(set(a) & set(b)) / 100 for a, b in zip(ref[k], got)]))

        load = os.getloadavg()[0]
        paths = {"bare": run_bare, **{o: run_ours(o) for o in options}}
        with torch.inference_mode():
            bare.encode(texts[:64], batch_size=args.batch_size)  # warm-up (ours warmed up in the agreement pass)
        times: dict[str, list[float]] = {k: [] for k in paths}
        names = list(paths)
        for r in range(args.repeats):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                times[name].append(paths[name]())
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"item encoding timed on {len(texts):,} demo items, agreement on {len(all_texts):,} (~{tokens:.0f} tokens each), batch {args.batch_size}, {args.threads} threads, "
        f"median of {args.repeats}, load average {load:.1f} at start / {os.getloadavg()[0]:.1f} at end"
    )
    print(f"{'path':<36}{'seconds':>8}{'items/s':>9}{'vs bare':>9}{'cos mean':>10}{'cos min':>9}{'R@100 users':>12}{'R@100 items':>12}")
    print(f"{'bare SentenceTransformer.encode':<36}{med['bare']:>8.2f}{len(texts) / med['bare']:>9.0f}{1.0:>9.2f}")
    for opt in options:
        cos = np.sum(text_emb[opt] * text_emb["fp32"], axis=1) if "fp32" in text_emb else np.full(1, np.nan)
        ru = recall(opt, "users") if "fp32" in item_vec else float("nan")
        ri = recall(opt, "items") if "fp32" in item_vec else float("nan")
        label = f"recsys encode_items ({opt})"
        print(f"{label:<36}{med[opt]:>8.2f}{len(texts) / med[opt]:>9.0f}{med['bare'] / med[opt]:>9.2f}{cos.mean():>10.5f}{cos.min():>9.5f}{ru:>12.4f}{ri:>12.4f}")


if __name__ == "__main__":
    main()
