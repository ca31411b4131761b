"""Reranker inference options on CPU: p50 latency per request (20 / 50 / 100 candidates) and agreement with fp32
(top-10 overlap, Spearman) on real candidate lists (the retriever's top 100 for held-out demo requests).

    python benchmarks/rerank_speed.py                       # demo data, quick retriever + quick fine-tune
    python benchmarks/rerank_speed.py --reranker RUN --retriever-run RRUN --dataset DS

Options: fp32 (torch), bf16 (torch autocast), onnx (fp32 graph in onnxruntime, all graph optimisations), onnx-int8
(the chosen int8 setting) and onnx-int8:<variant> (``benchmarks/int8_variants.py``). Agreement with fp32 is
measured on ``--agree-requests`` full top-100 lists, latency on ``--requests`` lists cut to 20/50/100 candidates.
The compute floor is candidates x tokens per pair x ~22 MFLOP per token / the fp32 GEMM rate measured in the same
run (4096x384 @ 384x1536). ``--requests 0`` measures agreement only. Prints one JSON line per row and a table.

Results: docs/experiments/int8-study.md (summary in docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's recsys, not an installed copy

FLOP_PER_TOKEN = 22e6  # MiniLM-L6 (384 wide, 1536 FFN, 6 layers): ~2 x 10.6M weight MACs per token


def matmul_gflops(threads: int, repeats: int = 7) -> float:
    """fp32 torch GEMM rate of this CPU on a transformer-like shape (4096 tokens x 384 -> 1536), median of repeats."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(4096, 384), torch.randn(384, 1536)
    for _ in range(3):
        a @ b
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(10):
            a @ b
        ts.append((time.perf_counter() - t) / 10)
    return 2 * 4096 * 384 * 1536 / float(np.median(ts)) / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reranker", type=Path, help="reranker run or saved Reranker (default: a quick fine-tune on the data)")
    p.add_argument("--save-reranker", type=Path, help="save the quick fine-tune here (reuse it with --reranker)")
    p.add_argument("--retriever-run", type=Path, help="retriever run or saved TwoTowerRetriever for the candidates (default: a quick retriever)")
    p.add_argument("--save-retriever", type=Path, help="save the quick retriever here (reuse it with --retriever-run)")
    p.add_argument("--dataset", type=Path, help="dataset directory (default: generated demo data)")
    p.add_argument("--requests", type=int, default=3, help="held-out requests (candidate lists) timed (0 = agreement only)")
    p.add_argument("--agree-requests", type=int, default=20, help="held-out requests whose top-100 lists measure agreement")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per (request, size, option)")
    p.add_argument("--sizes", default="20,50,100")
    p.add_argument("--options", default="fp32,onnx,onnx-int8:default,onnx-int8", help="fp32, bf16, onnx, onnx-int8, onnx-int8:<variant>")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--train-steps", type=int, default=40, help="quick fine-tune steps when no --reranker is given")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--out", type=Path, help="append the JSON lines here")
    a = p.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    from int8_variants import register_study_variants
    from recsys.evaluation.split import encode, leave_one_out
    from recsys.reranker import Reranker, RerankerTrainingArguments
    from recsys.reranker.fast import agreement, make_scorer, onnx_available
    from recsys.reranker.features import context_frame_of
    from recsys.reranker.examples import retriever_top
    from recsys.retriever import TwoTowerRetriever

    if a.dataset:
        from recsys.data.dataset import Dataset

        ds = Dataset.load(a.dataset)
    else:
        from recsys.data.demo import generate_demo

        ds, _ = generate_demo(users=300, items=400, seed=0, interactions_per_user=20)
    split = leave_one_out(encode(ds))
    if a.retriever_run:
        from recsys.retriever.run import CATALOGUE_FILE, load_run

        # a run (with its catalogue) or a bare saved model trained on the same dataset
        retriever = load_run(a.retriever_run)[0] if (a.retriever_run / CATALOGUE_FILE).exists() else TwoTowerRetriever.load(a.retriever_run)
    else:
        retriever = TwoTowerRetriever(d_model=32, layers=1, heads=2, max_len=20, epochs=4, lr=5e-3, threads=a.threads, use_context=True).fit(split.train, split.validation)
        if a.save_retriever:
            retriever.save(a.save_retriever)
    if a.reranker:
        from recsys.reranker.run import load_run as load_reranker_run

        reranker = load_reranker_run(a.reranker)[0]
    else:
        args = RerankerTrainingArguments(max_steps=a.train_steps, batch_size=16, positives_per_user=2, max_length=a.max_length, progress_bar=False, threads=a.threads)
        t = time.perf_counter()
        reranker = Reranker(args).fit(split.train, retriever)
        print(f"quick fine-tune: {a.train_steps} steps in {time.perf_counter() - t:.0f}s", flush=True)
        if a.save_reranker:
            reranker.save(a.save_reranker)
    max_length = reranker.args.max_length

    sizes = [int(s) for s in a.sizes.split(",")]
    n_lists = max(a.requests, a.agree_requests)
    cases = split.test.take(np.arange(min(max(n_lists, 1), len(split.test))))
    histories = [cases.history.row(r).astype(np.int64) for r in range(len(cases))]
    prof = split.train_full.users[cases.users] if split.train_full.users is not None else None
    cands = retriever_top(retriever, histories, context_frame_of(cases.context), prof, max(sizes), [h for h in histories])
    item_texts = reranker.render_items(ds.items)
    users = reranker.user_texts(histories, reranker.history_texts(ds.items), context=cases.context, profiles=prof)
    lists = [[(u, item_texts[int(i)]) for i in c[c >= 0]] for u, c in zip(users, cands)]
    timed, agree_lists = lists[: a.requests], lists[: a.agree_requests]

    # compute floor: tokens per pair (truncated like the scorer), fp32 GEMM rate measured here
    tok = reranker.model.tokenizer
    all_pairs = [pq for lst in agree_lists for pq in lst]
    enc = tok([x for x, _ in all_pairs], [y for _, y in all_pairs], truncation="longest_first", max_length=max_length)
    tokens_per_pair = float(np.mean([len(ids) for ids in enc["input_ids"]]))
    load = os.getloadavg()[0]
    gflops = matmul_gflops(a.threads)
    print(f"fp32 GEMM (4096x384 @ 384x1536, {a.threads} threads): {gflops:.1f} GFLOP/s; {tokens_per_pair:.1f} tokens per pair "
          f"(max_length {max_length}); load average {load:.1f}", flush=True)

    ok, why = onnx_available()
    register_study_variants()  # onnx-int8:<variant> of the int8 study
    options = [o for o in a.options.split(",") if o]
    ref_time: dict[int, list[np.ndarray]] = {}
    ref_agree: list[np.ndarray] = []
    results = []
    workdir = Path(tempfile.mkdtemp(prefix="rerank-speed-"))
    for opt in options:
        if opt.startswith("onnx") and not ok:
            print(json.dumps({"option": opt, "skipped": why}))
            continue
        t = time.perf_counter()
        scorer = make_scorer(reranker.model, opt, max_length=max_length, workdir=workdir, threads=a.threads)
        setup_s = time.perf_counter() - t
        scorer(lists[0][:8])  # warm-up
        # agreement with fp32 on the full top-100 lists
        full = [scorer(pairs, batch_size=64) for pairs in agree_lists]
        if opt == "fp32":
            ref_agree = full
        agree = [agreement(r, s, k=10) for r, s in zip(ref_agree, full)]
        summary = {
            "agree_requests": len(agree_lists),
            "top10_overlap": round(float(np.mean([x["top10_overlap"] for x in agree])), 3),
            "top10_overlap_min": round(float(np.min([x["top10_overlap"] for x in agree])), 3),
            "spearman": round(float(np.mean([x["spearman"] for x in agree])), 4),
            "max_abs_diff": round(float(np.max([x["max_abs_diff"] for x in agree])), 4),
        }
        for n in sizes if timed else [max(sizes)]:
            lat = []
            for pairs in timed:
                pairs = pairs[:n]
                for _ in range(a.repeats):
                    t = time.perf_counter()
                    scorer(pairs, batch_size=64)
                    lat.append(time.perf_counter() - t)
            floor_ms = 1000 * n * tokens_per_pair * FLOP_PER_TOKEN / (gflops * 1e9)
            p50 = round(1000 * float(np.median(lat)), 1) if lat else float("nan")
            row = {
                "option": opt, "candidates": n, "p50_ms": p50, "p90_ms": round(1000 * float(np.percentile(lat, 90)), 1) if lat else None,
                "floor_ms": round(floor_ms, 1), "setup_s": round(setup_s, 1), "threads": a.threads, "load_avg": round(os.getloadavg()[0], 1),
                "timed_requests": len(timed), "repeats": a.repeats, **summary,
            }
            results.append(row)
            print(json.dumps(row), flush=True)
            if a.out:
                with open(a.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
    base = {r["candidates"]: r["p50_ms"] for r in results if r["option"] == "fp32"}
    print(f"\nload average at start {load:.1f}; GEMM {gflops:.1f} GFLOP/s; {tokens_per_pair:.1f} tokens/pair; agreement over {len(agree_lists)} top-100 lists")
    print(f"{'option':<26} {'cands':>5} {'p50 ms':>8} {'vs fp32':>8} {'floor ms':>8} {'x floor':>7} {'top10':>6} {'min':>5} {'spearman':>8}")
    for r in results:
        sp = base.get(r["candidates"], float("nan")) / r["p50_ms"]
        print(f"{r['option']:<26} {r['candidates']:>5} {r['p50_ms']:>8.1f} {sp:>8.2f} {r['floor_ms']:>8.1f} {r['p50_ms'] / r['floor_ms']:>7.2f} "
              f"{r['top10_overlap']:>6.3f} {r['top10_overlap_min']:>5.2f} {r['spearman']:>8.4f}")


if __name__ == "__main__":
    main()
