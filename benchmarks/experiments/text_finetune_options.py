"""Cost of the retriever's text fine-tune options (logQ, hard negatives, cached MNRL) on MovieLens 100K.

    python benchmarks/experiments/text_finetune_options.py --data ../shared/data/movielens-100k --steps 4 --batch 32 --repeats 3

Runs the text stage alone (``finetune_text_model``) for each option set, interleaved across repeats so machine load
hits every option alike, and prints the median wall seconds, the ratio to plain MNRL and the mean training loss;
first, the pretrained model's loss on the same batches under each correction. Cost only: a handful of steps says
nothing about retrieval quality.

Results: docs/experiments/text-finetune-options.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from recsys.data.importers.movielens import import_movielens
from recsys.evaluation.split import encode, leave_one_out
from recsys.retriever import RetrieverTrainingArguments, TwoTowerRetriever
from recsys.retriever.training import finetune_text_model, text_finetune_dataset

OPTIONS: dict[str, dict] = {
    "plain MNRL": {},
    "logQ": {"text_finetune_logq": True},
    "hard negatives k=10": {"text_finetune_hard_negatives": 10},
    "logQ + hard negatives": {"text_finetune_logq": True, "text_finetune_hard_negatives": 10},
    "cached (mini-batch 16)": {"text_finetune_cached": True, "text_finetune_mini_batch_size": 16},
    "cached + logQ": {"text_finetune_cached": True, "text_finetune_mini_batch_size": 16, "text_finetune_logq": True},
}


def initial_losses(data, batches: int = 8, batch: int = 32, k: int = 10) -> dict[str, float]:
    """Loss of the pretrained model on the same item -> next item batches under each correction (no training):
    shows what the logQ correction does to mined hard negatives, which are mostly rare items."""
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from recsys.retriever.losses import LogQCorrectedMNRL
    from recsys.retriever.training import item_log_q, mine_hard_negatives, sample_text_pairs

    r = TwoTowerRetriever(RetrieverTrainingArguments())
    texts = r.render_items(data.items)
    p = sample_text_pairs(r, data, texts, batches * batch, 0)
    neg = mine_hard_negatives(r, data, p, texts, k, 1)
    emb = torch.from_numpy(r.embed(texts))
    by_interactions, mixed = item_log_q(data), item_log_q(data, neg)
    print(f"items: positives median {np.median(data.item_counts[p.positive_items]):.0f} interactions, "
          f"hard negatives (k={k}) median {np.median(data.item_counts[neg]):.0f}")
    mnrl, logq = MultipleNegativesRankingLoss(r.text_model), LogQCorrectedMNRL(r.text_model)
    out: dict[str, list[float]] = {}
    for b in range(0, batches * batch, batch):
        a, pos, ng = (emb[x[b : b + batch]] for x in (p.anchor_items, p.positive_items, neg))
        pi, ni = p.positive_items[b : b + batch], neg[b : b + batch]
        lq = lambda table, cols: torch.from_numpy(np.stack([table[c] for c in cols], axis=1))  # noqa: E731
        values = {
            "MNRL, pairs": mnrl.compute_loss_from_embeddings([a, pos], None),
            "MNRL + hard negative": mnrl.compute_loss_from_embeddings([a, pos, ng], None),
            "logQ, pairs": logq.compute_loss_from_embeddings([a, pos], lq(by_interactions, [pi])),
            "logQ + hard neg, q = interaction share": logq.compute_loss_from_embeddings([a, pos, ng], lq(by_interactions, [pi, ni])),
            "logQ + hard neg, q = candidate share": logq.compute_loss_from_embeddings([a, pos, ng], lq(mixed, [pi, ni])),
        }
        for name, v in values.items():
            out.setdefault(name, []).append(float(v))
    return {name: float(np.mean(v)) for name, v in out.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--pairs", choices=["item", "user"], default="item")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    ds, _ = import_movielens(a.data)
    data = leave_one_out(encode(ds)).train
    print(f"initial loss, pretrained model, 8 batches of 32 (ln 32 = {np.log(32):.2f}, ln 64 = {np.log(64):.2f})")
    for name, v in initial_losses(data).items():
        print(f"| {name:<40} | {v:.3f} |")
    seconds: dict[str, list[float]] = {k: [] for k in OPTIONS}
    prep: dict[str, list[float]] = {k: [] for k in OPTIONS}
    losses: dict[str, list[float]] = {k: [] for k in OPTIONS}
    for rep in range(a.repeats):
        for name, opts in OPTIONS.items():
            args = RetrieverTrainingArguments(
                text_finetune_steps=a.steps, text_finetune_batch_size=a.batch, text_finetune_pairs=a.pairs, seed=rep, **opts
            )
            r = TwoTowerRetriever(args)
            texts = r.render_items(data.items)
            t0 = time.perf_counter()
            text_finetune_dataset(r, data, texts, a.steps * a.batch * 2)
            prep[name].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            _, info = finetune_text_model(r, data, texts)
            seconds[name].append(time.perf_counter() - t0)
            losses[name].append(info["loss"])
            print(f"repeat {rep} {name}: {seconds[name][-1]:.1f} s (dataset {prep[name][-1]:.2f} s), loss {info['loss']:.3f}", flush=True)
    base = statistics.median(seconds["plain MNRL"])
    print(f"\n{a.steps} steps, batch {a.batch}, {a.pairs} pairs, {a.threads} thread(s), median of {a.repeats}\n")
    print("| option                  | stage s (median) | x plain | dataset s (median) | mean train loss |")
    print("| ----------------------- | ---------------- | ------- | ------------------ | --------------- |")
    for name in OPTIONS:
        m = statistics.median(seconds[name])
        print(f"| {name:<23} | {m:16.1f} | {m / base:7.2f} | {statistics.median(prep[name]):18.2f} | {statistics.median(losses[name]):15.3f} |")


if __name__ == "__main__":
    main()
