"""Training and evaluation of the cross-encoder reranker through the sentence-transformers trainer API.

Examples: for each user, the last ``positives_per_user`` positions of the training sequence give a request
(history before the position, the interaction's timestamp/device as context) whose positive is the item that
followed; negatives are hard ones (the retriever's top ``candidates`` for that request, positive and history
excluded) mixed with uniformly random catalogue items. Loss: ``BinaryCrossEntropyLoss`` on (user text, item text,
0/1) pairs by default, or a listwise loss (``ListNetLoss`` / ``LambdaLoss``) over (user text, [positive, negatives]).

The optional rating head is a second ``CrossEncoder`` trained with ``BinaryCrossEntropyLoss`` on soft labels
rating / 5 over the positive pairs; reported as ROC AUC (rating >= 4) and RMSE on the protocol's test interactions.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from recsys.hf_training import trainer_defaults
from recsys.data import schema as S
from recsys.evaluation import metrics as M
from recsys.evaluation.split import Cases, TrainData, train_data_fingerprint
from recsys.reranker.model import context_frame_of, load_cross_encoder
from recsys.text import item_text_summary, require_item_text

if TYPE_CHECKING:
    from recsys.reranker.model import Reranker

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


data_fingerprint = train_data_fingerprint  # shared with the other text model


# ------------------------------------------------------------------------------------------------ requests


class Requests:
    """Training requests: (user, history, context, positive, rating) at chosen positions of ``data``'s sequences."""

    def __init__(self, data: TrainData, positives_per_user: int | None) -> None:
        seq = data.sequences
        lens = seq.lengths
        first = np.maximum(1, lens - positives_per_user) if positives_per_user is not None else np.ones_like(lens)
        counts = np.maximum(lens - first, 0)
        users = np.repeat(np.arange(seq.n_rows), counts)
        offsets = np.concatenate([np.arange(f, f + c) for f, c in zip(first, counts)]) if len(users) else np.zeros(0, dtype=np.int64)
        self.users = users.astype(np.int64)
        self.rows = (seq.indptr[:-1][users] + offsets).astype(np.int64)  # row into data.events / seq.items
        self.starts = seq.indptr[:-1][users].astype(np.int64)
        self.positives = seq.items[self.rows].astype(np.int64)
        self.histories = [seq.items[s:r] for s, r in zip(self.starts, self.rows)]
        if data.events.height != len(seq.items):
            raise ValueError("events and sequences disagree: cannot align request contexts")
        ev = data.events[self.rows]
        self.context = context_frame_of(ev)
        self.ratings = ev[S.RATING].to_numpy().astype(np.float64) if S.RATING in ev.columns else None

    def __len__(self) -> int:
        return len(self.positives)


def retriever_top(
    retriever: Any,
    histories: list[np.ndarray],
    context: pl.DataFrame | None,
    profiles: pl.DataFrame | None,
    k: int,
    exclude: list[np.ndarray],
    *,
    batch_size: int = 512,
    with_scores: bool = False,
) -> Any:
    """(n, k) catalogue indices of the retriever's top k per request, ``exclude[r]`` removed (-1 pads); with
    ``with_scores`` also their (n, k) cosines (-inf at the pads)."""
    items = retriever.encode_items()
    n_items = items.shape[0]
    k = min(k, n_items)
    out = np.full((len(histories), k), -1, dtype=np.int64)
    cos = np.full((len(histories), k), -np.inf, dtype=np.float32)
    use_prof = profiles is not None and getattr(retriever.args, "use_profiles", False)
    for lo in range(0, len(histories), batch_size):
        hi = min(lo + batch_size, len(histories))
        ctx = context[lo:hi] if context is not None else None
        prof = profiles[lo:hi] if use_prof else None
        u = retriever.encode_users(histories[lo:hi], ctx, prof)
        s = u @ items.T
        for r in range(hi - lo):
            ex = exclude[lo + r]
            if len(ex):
                s[r, ex[ex < n_items]] = -np.inf
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        top_s = np.take_along_axis(s, top, axis=1)
        valid = np.isfinite(top_s)
        out[lo:hi] = np.where(valid, top, -1)
        cos[lo:hi] = top_s
    return (out, cos) if with_scores else out


def sample_negatives(
    req: Requests,
    n_items: int,
    hard_pool: np.ndarray | None,
    n_neg: int,
    hard_fraction: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """(n, n_neg) negatives per request: ``round(n_neg * hard_fraction)`` from the hard pool, the rest random."""
    n_hard = int(round(n_neg * hard_fraction)) if hard_pool is not None else 0
    out = np.full((len(req), n_neg), -1, dtype=np.int64)
    for r in range(len(req)):
        banned = set(req.histories[r].tolist()) | {int(req.positives[r])}
        chosen: list[int] = []
        if n_hard:
            pool = hard_pool[r]
            pool = pool[(pool >= 0)]
            pool = pool[~np.isin(pool, list(banned))]
            if len(pool):
                chosen = rng.choice(pool, size=min(n_hard, len(pool)), replace=False).tolist()
        taken = banned | set(chosen)
        tries = 0
        while len(chosen) < n_neg and tries < 50 * n_neg:
            c = int(rng.integers(n_items))
            tries += 1
            if c not in taken:
                chosen.append(c)
                taken.add(c)
        out[r, : len(chosen)] = chosen
    return out


def context_swapped_users(
    reranker: "Reranker",
    req: Requests,
    hist_texts: list[str],
    profiles: pl.DataFrame | None,
    users: list[str],
    n: int,
    rng: np.random.Generator,
    *,
    tries: int = 10,
) -> list[list[str]]:
    """Per request, up to ``n`` user texts that differ from ``users[r]`` only by the request context: each takes
    the context of another (random) training request, re-drawn up to ``tries`` times while it renders the same."""
    out: list[list[str]] = [[] for _ in range(len(req))]
    if req.context is None or req.context.width == 0 or n == 0:
        return out
    for _ in range(n):
        pending = np.arange(len(req))
        for _ in range(tries):
            donors = rng.integers(len(req), size=len(pending))
            swapped = reranker.user_texts(
                [req.histories[r] for r in pending], hist_texts, context=req.context[donors],
                profiles=profiles[pending] if profiles is not None else None,
            )
            same = []
            for r, text in zip(pending.tolist(), swapped):
                if text == users[r]:
                    same.append(r)
                else:
                    out[r].append(text)
            pending = np.asarray(same, dtype=np.int64)
            if not len(pending):
                break
    return out


#: a trained cross-encoder whose scores vary less than this over training pairs ranks almost nothing (collapsed,
#: or too few steps: the demo pipeline's 60-step reranker scores 0.009)
COLLAPSED_STD = 1e-2


def score_spread(reranker: "Reranker", train: Any, rng: np.random.Generator, n: int = 256) -> float:
    """Standard deviation of the fitted model's logits over ``n`` random training pairs: ~0 means it collapsed
    (every pair gets the label prior's log-odds), which the mean training loss alone does not tell apart from slow
    learning. Measured on the demo: collapsed runs 0.0002-0.004, learning ones ~0.8."""
    sample = train.select(rng.choice(len(train), size=min(n, len(train)), replace=False).tolist())
    docs = sample["document"] if "document" in sample.column_names else [d[0] for d in sample["docs"]]  # listwise: the positive
    return round(float(np.std(reranker.predict(list(zip(sample["query"], docs))))), 6)


# ------------------------------------------------------------------------------------------------ trainer


def _train(model: Any, train_dataset: Any, loss: Any, *, epochs: float, max_steps: int | None, a: Any) -> dict[str, Any]:
    from sentence_transformers import CrossEncoderTrainer, CrossEncoderTrainingArguments

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="recsys-rerank-") as out:
        targs = CrossEncoderTrainingArguments(
            output_dir=out,
            num_train_epochs=epochs,
            max_steps=max_steps if max_steps is not None else -1,
            per_device_train_batch_size=a.batch_size,
            learning_rate=a.lr,
            warmup_steps=a.warmup_ratio,
            weight_decay=a.weight_decay,
            # under torchrun: every parameter of the (BERT + pooler + classifier) cross-encoder gets a gradient, and the
            # trainer's default for non-transformers models (find_unused_parameters=True) cannot trace the
            # CrossEncoder's outputs, so DDP fails with "marked as ready twice"; no effect in a single process
            ddp_find_unused_parameters=False,
            **trainer_defaults(a.seed, progress_bar=a.progress_bar),
        )
        trainer = CrossEncoderTrainer(model=model, args=targs, train_dataset=train_dataset, loss=loss)
        # the trainer prints its final log dict to stdout: keep stdout clean for `--json`
        with contextlib.redirect_stdout(sys.stderr):
            result = trainer.train()
    model.eval()
    return {"loss": round(float(result.training_loss), 5), "steps": int(result.global_step), "seconds": round(time.perf_counter() - start, 1)}


def _loss(name: str, model: Any) -> Any:
    from sentence_transformers.cross_encoder import losses

    if name == "bce":
        return losses.BinaryCrossEntropyLoss(model)
    if name == "listnet":
        return losses.ListNetLoss(model)
    return losses.LambdaLoss(model)


def fit_reranker(reranker: "Reranker", data: TrainData, retriever: Any = None, validation: Cases | None = None, *, progress: Progress | None = None) -> None:
    """Build the (user text, item text) examples and fine-tune the cross-encoder (+ the optional rating head).

    Under ``torchrun``/``accelerate launch`` every rank builds the same examples (same seed) and the
    sentence-transformers trainer splits them across ranks (effective batch = ``batch_size`` x ranks); only rank 0
    reports progress and evaluates ``validation``, and the replicas are checked to have ended identical.
    """
    import torch
    from datasets import Dataset

    from recsys import distributed as D

    a = reranker.args
    D.init_if_launched()
    say = (progress or (lambda m: log.info(m))) if D.is_main() else (lambda m: None)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    t0 = time.perf_counter()

    item_texts = reranker.render_items(data.items)
    require_item_text(item_texts, data.items, a.templates, model="the cross-encoder reranker")
    reranker.time_context = not data.synthetic_timestamps
    hist_texts = reranker.history_texts(data.items)
    if len(item_texts) != data.n_items:
        raise ValueError(f"the catalogue has {len(item_texts)} rows but the data has {data.n_items} items")
    req = Requests(data, a.positives_per_user)
    if len(req) == 0:
        raise ValueError("no training requests: every user needs at least two training interactions")
    profiles = data.users[req.users] if data.users is not None else None
    hard = None
    if retriever is not None and a.hard_negative_fraction > 0:
        exclude = [np.concatenate([h, [p]]).astype(np.int64) for h, p in zip(req.histories, req.positives)]
        hard = retriever_top(retriever, req.histories, req.context, profiles, a.candidates, exclude)
    negs = sample_negatives(req, data.n_items, hard, a.negatives_per_positive, a.hard_negative_fraction, rng)
    users = reranker.user_texts(req.histories, hist_texts, context=req.context, profiles=profiles)
    swapped = context_swapped_users(reranker, req, hist_texts, profiles, users, a.context_negatives, rng) if a.use_context else None
    n_swapped = sum(len(s) for s in swapped) if swapped is not None else 0
    say(
        f"reranker: {len(req)} positives x {a.negatives_per_positive} negatives (+{n_swapped} context-swapped), "
        f"retriever {'yes' if hard is not None else 'no'}, setup {time.perf_counter() - t0:.1f}s"
    )

    if a.loss == "bce":
        q, d, y = [], [], []
        for r, u in enumerate(users):
            q.append(u)
            d.append(item_texts[req.positives[r]])
            y.append(1.0)
            for n in negs[r][negs[r] >= 0]:
                q.append(u)
                d.append(item_texts[n])
                y.append(0.0)
            for other in swapped[r] if swapped is not None else ():
                q.append(other)
                d.append(item_texts[req.positives[r]])
                y.append(0.0)
        train = Dataset.from_dict({"query": q, "document": d, "label": y})
    else:
        docs, labels = [], []
        for r in range(len(users)):
            ns = negs[r][negs[r] >= 0]
            docs.append([item_texts[req.positives[r]], *[item_texts[n] for n in ns]])
            labels.append([1.0] + [0.0] * len(ns))
        train = Dataset.from_dict({"query": users, "docs": docs, "labels": labels})
    model = load_cross_encoder(a.resolved_base_model, max_length=a.max_length, seed=a.seed)
    info = {"stage": "ranking", "loss_fn": a.loss, "examples": len(train), "positives": len(req), "context_negatives": n_swapped}
    info.update(_train(model, train, _loss(a.loss, model), epochs=a.epochs, max_steps=a.max_steps, a=a))
    if D.is_distributed():
        info["world_size"] = D.world().world_size
        info["replica_checksum"] = D.check_replicas(model.state_dict(), "reranker")
    reranker.model = model
    info["score_std"] = score_spread(reranker, train, np.random.default_rng(a.seed))
    if info["score_std"] < COLLAPSED_STD:
        log.warning(
            "the cross-encoder's scores barely vary (std %.2g over training pairs), so it ranks almost nothing: it is "
            "either barely trained (more steps) or collapsed to a constant (BERT fine-tuning does at high learning rates: "
            "lower lr)", info["score_std"]
        )
    say(f"reranker: {info}")
    history = [info]

    if a.rating_head:
        if req.ratings is None:
            raise ValueError("rating_head=True but the data has no ratings")
        from sentence_transformers.cross_encoder import losses

        rmodel = load_cross_encoder(a.resolved_base_model, max_length=a.max_length, seed=a.seed + 1)
        rtrain = Dataset.from_dict(
            {"query": users, "document": [item_texts[p] for p in req.positives], "label": (np.clip(req.ratings, 0, 5) / 5.0).tolist()}
        )
        rinfo = {"stage": "rating", "examples": len(rtrain)}
        rinfo.update(_train(rmodel, rtrain, losses.BinaryCrossEntropyLoss(rmodel), epochs=a.rating_epochs, max_steps=a.rating_max_steps, a=a))
        if D.is_distributed():
            rinfo["replica_checksum"] = D.check_replicas(rmodel.state_dict(), "rating head")
        say(f"reranker rating head: {rinfo}")
        reranker.rating_model = rmodel
        history.append(rinfo)

    reranker.history = history
    reranker.data_fingerprint = data_fingerprint(data, item_texts)
    reranker.metrics = {"fit_seconds": round(time.perf_counter() - t0, 1)}
    if validation is not None:  # rank 0 evaluates (and picks the fusion weight), every rank gets its figures
        val = None
        if D.is_main():
            val = {}
            if retriever is not None and a.retrieval_weight is None:
                val["fusion"] = choose_retrieval_weight(reranker, data, validation, retriever, seed=a.seed)
            val.update({f"val_{k}": v for k, v in evaluate_reranker(reranker, data, validation, retriever).items()})
        val = D.broadcast_object(val)
        if "fusion" in val:
            a.retrieval_weight = float(val["fusion"]["retrieval_weight"])
        reranker.metrics.update(val)


# ------------------------------------------------------------------------------------------------ evaluation


def case_texts(reranker: "Reranker", data: TrainData, cases: Cases, *, use_context: bool | None = None) -> list[str]:
    hist_texts = reranker.history_texts(data.items)
    profiles = data.users[cases.users] if data.users is not None else None
    histories = [cases.history.row(r) for r in range(len(cases))]
    return reranker.user_texts(histories, hist_texts, context=cases.context, profiles=profiles, use_context=use_context)


def evaluate_reranker(
    reranker: "Reranker",
    data: TrainData,
    cases: Cases,
    retriever: Any = None,
    *,
    n_negatives: int = 10,
    hard_fraction: float = 1.0,
    max_cases: int | None = 300,
    seed: int = 0,
) -> dict[str, float]:
    """Held-out target vs ``n_negatives`` negatives per case: ``round(n_negatives * hard_fraction)`` of them the
    retriever's top items (when a retriever is given; history and target excluded), the rest uniformly random.
    ``win_rate`` (share of negatives scored below the target), ``HR@1`` and ``MRR`` within the list."""
    rng = np.random.default_rng(seed)
    rows = np.arange(len(cases))
    if max_cases is not None and len(rows) > max_cases:
        rows = np.sort(rng.choice(rows, max_cases, replace=False))
    sub = cases.take(rows)
    histories = [sub.history.row(r).astype(np.int64) for r in range(len(sub))]
    targets = sub.targets.astype(np.int64)
    n_hard = int(round(n_negatives * hard_fraction)) if retriever is not None else 0
    negs = np.full((len(sub), n_negatives), -1, dtype=np.int64)
    if n_hard:
        exclude = [np.concatenate([h, [t]]) for h, t in zip(histories, targets)]
        prof = data.users[sub.users] if data.users is not None else None
        negs[:, :n_hard] = retriever_top(retriever, histories, context_frame_of(sub.context), prof, n_hard, exclude)
    if n_hard < n_negatives:
        for r, (h, t) in enumerate(zip(histories, targets)):
            pool = np.setdiff1d(np.arange(data.n_items), np.concatenate([h, [t], negs[r, :n_hard]]))
            take = min(n_negatives - n_hard, len(pool))
            negs[r, n_hard : n_hard + take] = rng.choice(pool, take, replace=False)
    item_texts = reranker.render_items(data.items)
    hist_texts = reranker.history_texts(data.items)
    profiles = data.users[sub.users] if data.users is not None else None
    lists = [np.concatenate([[t], n[n >= 0]]) for t, n in zip(targets, negs)]
    scores = reranker.score_candidates(histories, lists, item_texts, hist_texts, context=sub.context, profiles=profiles)
    win = np.array([float(np.mean(s[1:] < s[0])) if len(s) > 1 else 1.0 for s in scores])
    rank = np.array([int(np.sum(s[1:] >= s[0])) for s in scores])
    return {"win_rate": float(win.mean()), "HR@1": float(np.mean(rank == 0)), "MRR": float(np.mean(1.0 / (rank + 1))), "cases": int(len(sub))}


def fusion_table(
    lists: list[np.ndarray], logits: list[np.ndarray], cosines: list[np.ndarray], targets: np.ndarray, grid: tuple[float, ...]
) -> tuple[float, dict[str, float]]:
    """(best w, {w: NDCG@10 of the target within its list}) for fused scores logit + w x cosine; a target missing
    from its list scores 0 for every w; ties go to the larger w (closer to the retriever's order)."""
    table: dict[str, float] = {}
    best_w, best = float(grid[0]), -1.0
    for w in grid:
        gains = np.zeros(len(lists))
        for r, (lst, z, c) in enumerate(zip(lists, logits, cosines)):
            hit = np.flatnonzero(np.asarray(lst) == targets[r])
            if len(hit):
                fused = np.asarray(z, dtype=np.float64) + w * np.asarray(c, dtype=np.float64)
                rank = int(np.sum(fused > fused[hit[0]]))
                gains[r] = 1.0 / np.log2(rank + 2) if rank < 10 else 0.0
        ndcg = float(gains.mean()) if len(gains) else 0.0
        table[f"{w:g}"] = round(ndcg, 5)
        if ndcg >= best:
            best_w, best = float(w), ndcg
    return best_w, table


def choose_retrieval_weight(
    reranker: "Reranker",
    data: TrainData,
    cases: Cases,
    retriever: Any,
    *,
    depth: int | None = None,
    max_cases: int | None = None,
    grid: tuple[float, ...] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Pick the fusion weight (served score = logit + w x retriever cosine) on held-out ``cases``: rerank each case's
    retriever top ``depth`` for every w of ``grid`` and keep the w with the best NDCG@10 of the target within the
    list (ties -> the larger w, i.e. closer to the retriever's own order). Sets ``reranker.args.retrieval_weight``."""
    from recsys.reranker.config import FUSION_GRID

    a = reranker.args
    grid = tuple(grid or FUSION_GRID)
    depth = int(depth or a.fusion_depth)
    max_cases = int(max_cases or a.fusion_cases)
    rng = np.random.default_rng(seed)
    rows = np.arange(len(cases))
    if len(rows) > max_cases:
        rows = np.sort(rng.choice(rows, max_cases, replace=False))
    sub = cases.take(rows)
    histories = [sub.history.row(r).astype(np.int64) for r in range(len(sub))]
    targets = sub.targets.astype(np.int64)
    exclude = [(e := sub.exclude.row(r).astype(np.int64))[e != targets[r]] for r in range(len(sub))]
    profiles = data.users[sub.users] if data.users is not None else None
    top, cos = retriever_top(retriever, histories, context_frame_of(sub.context), profiles, depth, exclude, with_scores=True)
    lists = [t[t >= 0] for t in top]
    cosines = [c[t >= 0] for t, c in zip(top, cos)]
    item_texts = reranker.render_items(data.items)
    hist_texts = reranker.history_texts(data.items)
    logits = reranker.score_candidates(histories, lists, item_texts, hist_texts, context=sub.context, profiles=profiles)
    best_w, table = fusion_table(lists, logits, cosines, targets, grid)
    a.retrieval_weight = float(best_w)
    in_list = float(np.mean([targets[r] in lists[r] for r in range(len(lists))])) if lists else 0.0
    return {"retrieval_weight": float(best_w), "fusion_NDCG@10": table, "fusion_cases": len(lists), "fusion_depth": depth, "fusion_target_in_list": round(in_list, 4)}


def rating_metrics(reranker: "Reranker", data: TrainData, cases: Cases, *, max_cases: int | None = None) -> dict[str, float | None]:
    """ROC AUC (rating >= 4 vs the predicted rating) and RMSE of the rating head on ``cases``' target interactions."""
    if cases.ratings is None:
        return {"rating_AUC": None, "rating_RMSE": None}
    sub = cases if max_cases is None or len(cases) <= max_cases else cases.take(np.arange(max_cases))
    users = case_texts(reranker, data, sub)
    item_texts = reranker.render_items(data.items)
    pred = reranker.predict_rating([(u, item_texts[int(t)]) for u, t in zip(users, sub.targets)])
    y = np.asarray(sub.ratings, dtype=np.float64)
    return {"rating_AUC": M.roc_auc(pred, y >= 4), "rating_RMSE": float(np.sqrt(np.mean((pred - y) ** 2))), "rating_cases": int(len(sub))}


# ------------------------------------------------------------------------------------------------ runs


def train_run(
    dataset: Any,
    retriever_run: Path | str,
    out: Path | str,
    args: Any = None,
    *,
    progress: Progress | None = None,
    eval_cases: int | None = 300,
) -> dict[str, Any]:
    """``recsys train reranker``: fit on the protocol's training positions (every user's last two interactions
    held out), hard negatives from the retriever run; report on validation and test; save to ``out``.

    Under a distributed launch every rank trains, rank 0 alone evaluates and writes ``out`` while the others wait,
    and every rank returns rank 0's summary."""
    from recsys import distributed as D
    from recsys.errors import RecsysError
    from recsys.evaluation.split import encode, leave_one_out
    from recsys.reranker.config import RerankerTrainingArguments
    from recsys.reranker.model import Reranker
    from recsys.retriever.run import load_run

    args = args or RerankerTrainingArguments()
    D.init_if_launched()  # before any model loads: "cuda" must mean this rank's GPU
    retriever, catalogue_ids, rmanifest = load_run(retriever_run)
    enc = encode(dataset)
    split = leave_one_out(enc)
    if len(catalogue_ids) != enc.n_items or not np.array_equal(catalogue_ids.to_numpy(), enc.item_ids):
        raise RecsysError(f"retriever run {retriever_run} was trained on another catalogue than {dataset.path or dataset.name}")
    reranker = Reranker(args)
    fit_reranker(reranker, split.train, retriever, None, progress=progress)
    summary = None
    if D.is_main():
        summary = _evaluate_and_save(reranker, dataset, split, retriever, rmanifest, retriever_run, out, eval_cases, progress)
    D.barrier()
    return D.broadcast_object(summary)


def _evaluate_and_save(
    reranker: "Reranker", dataset: Any, split: Any, retriever: Any, rmanifest: dict[str, Any], retriever_run: Path | str, out: Path | str,
    eval_cases: int | None, progress: Progress | None = None,
) -> dict[str, Any]:
    """The post-training report, the fusion weight and the atomic save of ``train_run`` (rank 0's job under a
    distributed launch)."""
    if reranker.args.retrieval_weight is None:
        fusion = choose_retrieval_weight(reranker, split.train, split.validation, retriever, seed=reranker.args.seed)
        reranker.metrics["fusion"] = fusion
        if progress:
            progress(f"reranker: retrieval weight {fusion['retrieval_weight']:g} (validation NDCG@10 in the top {fusion['fusion_depth']}: {fusion['fusion_NDCG@10']})")
    val = evaluate_reranker(reranker, split.train, split.validation, retriever, max_cases=eval_cases)
    test = evaluate_reranker(reranker, split.train_full, split.test, retriever, max_cases=eval_cases)
    reranker.metrics.update({f"val_{k}": v for k, v in val.items()})
    reranker.metrics.update({f"test_{k}": v for k, v in test.items()})
    if reranker.rating_model is not None:
        reranker.metrics.update(rating_metrics(reranker, split.train_full, split.test, max_cases=eval_cases))
    reranker.retriever_fingerprint = rmanifest["fingerprint"]
    extra = {
        "dataset": {"path": str(dataset.path) if dataset.path else None, "fingerprint": dataset.fingerprint, "name": dataset.name},
        "retriever_run": str(Path(retriever_run).resolve()),
        "item_text": item_text_summary(dataset.items, reranker.args.templates),
    }
    reranker.save(out, extra_manifest=extra)
    return {"run": str(out), "metrics": reranker.metrics, "retrieval_weight": reranker.retrieval_weight, "dataset": extra["dataset"], "retriever_run": extra["retriever_run"], "retriever_fingerprint": reranker.retriever_fingerprint}


__all__ = ["COLLAPSED_STD", "Requests", "choose_retrieval_weight", "context_swapped_users", "data_fingerprint", "fusion_table", "evaluate_reranker", "fit_reranker", "rating_metrics", "retriever_top", "sample_negatives", "score_spread", "train_run"]
