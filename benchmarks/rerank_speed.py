"""Reranker inference options on CPU: p50 latency per request (20 / 50 / 100 candidates) and agreement with fp32
(top-10 overlap, Spearman) on real candidate lists (the retriever's top 100 for held-out demo requests).

    python benchmarks/rerank_speed.py                       # demo data, quick retriever + quick fine-tune
    python benchmarks/rerank_speed.py --reranker RUN --retriever-run RRUN --dataset DS

Options: fp32 (torch), bf16 (torch autocast), onnx (fp32 graph in onnxruntime, all graph optimisations), onnx-int8
(the chosen int8 setting) and onnx-int8:<variant> (``recsys.onnx_inference.INT8_VARIANTS``). Agreement with fp32 is
measured on ``--agree-requests`` full top-100 lists, latency on ``--requests`` lists cut to 20/50/100 candidates.
The compute floor is candidates x tokens per pair x ~22 MFLOP per token / the fp32 GEMM rate measured in the same
run (4096x384 @ 384x1536). ``--requests 0`` measures agreement only. Prints one JSON line per row and a table.

Measured 2026-11-29 on MovieLens 100K (a quick retriever, a 40-step BCE fine-tune of the bundled MiniLM, max_length
128, ~80 tokens per pair, 2 threads, shared 2-core AVX2 EPYC at load average 4-17: absolute latencies are inflated
several-fold, ratios are indicative only).

Agreement with fp32 over 10 top-100 lists (``--requests 0 --agree-requests 10 --sizes 100``, load ~11-17):

    option (onnx-int8:...)      top-10 overlap  min   Spearman   max |diff|
    default (quantiser default)      0.44       0.30    0.586     0.0128    what recsys used before
    matmul (8-bit weights)           0.41       0.30    0.611     0.0124
    matmul-rr (7-bit weights)        0.41       0.20    0.525     0.0110
    matmul-u8                        0.42       0.20    0.563     0.0100
    matmul-rr-ffn32 (= onnx-int8)    0.45       0.20    0.674     0.0090
    matmul-rr-last32                 0.47       0.20    0.600     0.0093
    fused-rr                         0.47       0.10    0.549     0.0120
    fused-rr-ffn32                   0.52       0.30    0.694     0.0082
    onnx (fp32)                      1.00       1.00    1.000     <1e-4

No int8 setting keeps the top 10 of this model: its logits for one request span only 0.006-0.022 (std 0.0012-0.004;
10th and 11th best differ by ~0.0002), while int8 moves them by 0.002-0.003 (std). Keeping int8's top 40-50 and
re-scoring them in fp32 would reach 0.91-0.93 overlap, too little saving to be worth it. A reranker trained longer
(wider logit spread) should be re-measured with ``--reranker RUN``.

Latency, p50 per request (``--requests 2 --repeats 2``, load 4-9; the GEMM measured 46 GFLOP/s at load 4.2, 19
GFLOP/s at load 11):

    option             20 cands  50 cands  100 cands   vs fp32 (20/50/100)   x floor (100)
    fp32                8.0 s    13.5 s    27.5 s      1 / 1 / 1              7.1
    onnx                2.4 s     7.3 s    14.6 s      3.39 / 1.86 / 1.88     3.8
    onnx-int8:default   2.4 s     5.4 s    10.8 s      3.34 / 2.52 / 2.55     2.8
    onnx-int8           2.0 s     4.8 s     8.9 s      4.05 / 2.83 / 3.10     2.3
    onnx-int8:fused-rr  2.9 s     7.5 s    14.0 s      2.75 / 1.79 / 1.96     3.6

Re-measured 2026-11-29 on a quiet machine (load 0.7-1.7) with a reranker that learned something (demo data 1,500 x
400, 600 BCE steps against random negatives, max_length 72, ~50 tokens a pair; ``--reranker`` = rerank_context.py's
run "e" without context, ``--dataset`` the same demo data saved, 20 agreement lists, 5 timed requests x 3 repeats):

    option (onnx-int8:...)          top-10 overlap  min   Spearman
    matmul / matmul-rr / matmul-u8      0.705 / 0.685 / 0.685  0.40-0.50  0.976-0.977
    matmul-rr-ffn32 (previous choice)    0.73        0.50   0.985
    fused-rr (all int8)                  0.665       0.40   0.975
    smooth-rr-ffn012                     0.775       0.60   0.990
    fused-smooth-rr-ffn012               0.81        0.50   0.989
    fused-smooth-rr-l0-ffn12 (= onnx-int8 now, as the item encoder)  0.825  0.60  0.992

    option             20 cands  50 cands  100 cands   vs fp32 (20/50/100)
    fp32               196 ms    513 ms    1,237 ms    1 / 1 / 1
    onnx               179 ms    485 ms      835 ms    1.09 / 1.06 / 1.48
    onnx-int8          133 ms    328 ms      636 ms    1.48 / 1.56 / 1.95
    onnx-int8:fused-rr 120 ms    280 ms      572 ms    1.63 / 1.84 / 2.16

With a real spread of logits the int8 error matters less (max |diff| ~1.4 on logits spanning several units), but no
setting keeps 9 of the top 10 and none reaches 2.5x on this AVX2 CPU; ``onnx`` stays the default fast path.

torch fp32 suffers most from the oversubscribed machine (this docstring's previous run, at load ~7 on demo data, had onnx
0.9-1.7x and int8 1.7-2.4x faster than fp32). Use ``onnx`` when the ranking must match fp32 exactly; ``onnx-int8`` is ~1.5x faster
than ``onnx`` but, on a weakly trained model, reorders the top 10.
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
