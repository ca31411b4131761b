"""Training of the two-tower retriever.

Two stages:
1. optional: fine-tune the text model (item tower's PLM) with the sentence-transformers trainer API
   (``SentenceTransformerTrainer`` + ``MultipleNegativesRankingLoss`` + ``BatchSamplers.NO_DUPLICATES``, so in-batch
   negatives never contain the positive twice: no accidental hits) on (previous item, next item) or
   (user history text, next item) pairs. Options (``RetrieverTrainingArguments``):

   - ``text_finetune_logq``: the logQ correction (Yi et al. 2019). In-batch negatives are other rows' positives,
     i.e. drawn in proportion to popularity, so plain MNRL over-penalises popular items; subtracting
     ``log q(item)`` (q = the item's add-one-smoothed share of training interactions, ``item_log_q``) from every
     candidate's logit makes the in-batch softmax estimate the full softmax. The per-row log q values travel in the
     dataset's ``label`` column (the trainer hands it to the loss as ``labels``); see ``recsys.retriever.losses``.
     A mined hard negative is corrected with its own log q, like every other candidate, but with hard negatives
     q is the item's share of *all* candidates (half positives, drawn by popularity; half mined negatives): mined
     negatives are mostly rare items, and correcting them by their interaction share alone boosts them over the
     positives and swamps the softmax (docs/experiments/text-finetune-options.md).
   - ``text_finetune_hard_negatives = k``: random in-batch negatives are mostly easy (another genre); a negative
     from the anchor's ``k`` nearest items under the pretrained text model (exact FAISS inner product over every
     item, ``mine_hard_negatives``), never the positive nor anything in the user's training history, teaches the
     fine distinctions. The dataset becomes (anchor, positive, negative) and every row's negative is an extra
     candidate for every anchor in the batch. Pairs for which no eligible item exists are dropped (counted in
     the stage's history record).
   - ``text_finetune_cached``: ``CachedMultipleNegativesRankingLoss`` (GradCache) embeds the batch in
     ``text_finetune_mini_batch_size`` chunks, so a large batch (more in-batch negatives, which is what helps
     contrastive training) fits memory at ~2x the time; it combines with logQ (``CachedLogQCorrectedMNRL``).
2. the adaptor (+ ID embeddings) and the causal sequence tower, SASRec-style: every position predicts the next item
   with a full-softmax cross-entropy over the whole catalogue's item vectors, Adam, early stopping on validation
   NDCG@10 within a time budget. (A full softmax needs no sampling correction; logQ applies to stage 1 only.)

Over 450 lines because it holds both stages and their data preparation; the model calls them, nothing else does.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import polars as pl
import torch
from torch import nn

from recsys import distributed as D
from recsys.evaluation import metrics as M
from recsys.data.types import Cases, TrainData, train_data_fingerprint
from recsys.hf_training import trainer_defaults
from recsys.index import MISSING_INT_ID, ItemIndex
from recsys.retriever.config import RetrieverTrainingArguments
from recsys.retriever.features import context_features
from recsys.text import render_profile, render_users

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


data_fingerprint = train_data_fingerprint  # shared with the other text model


class Trainable(Protocol):
    """What training needs of a retriever (``recsys.retriever.model.TwoTowerRetriever`` is one); a protocol, so this
    module does not import the model module that calls it."""

    args: RetrieverTrainingArguments
    #: the built ``TwoTowerNet`` (item_raw, user_states, logits, normalise, id_emb, profile_proj)
    net: Any
    #: categorical request-context columns the network embeds (``features.context_columns_of``)
    context_columns: list[str]
    metrics: dict[str, Any]
    history: list[dict[str, Any]]

    def embed(self, texts: Sequence[str], *, cache: bool = True) -> np.ndarray: ...

    def score(self, cases: Cases, profiles: pl.DataFrame | None = None) -> np.ndarray: ...


# ---------------------------------------------------------------------------------------- stage 1: MNRL


@dataclass
class TextPairs:
    """Sampled (anchor, positive) training pairs with the catalogue indices behind them."""

    anchors: list[str]
    positives: list[str]
    #: (n,) catalogue index of each positive
    positive_items: np.ndarray
    #: (n,) user (row of ``data.sequences``) each pair comes from
    users: np.ndarray
    #: (n,) catalogue index of the anchor item ("item" pairs); None for "user" pairs (the anchor is a history text)
    anchor_items: np.ndarray | None


def sample_text_pairs(retriever: Trainable, data: TrainData, item_texts: list[str], n_pairs: int, seed: int) -> TextPairs:
    """(anchor, positive) pairs: consecutive distinct items, or a user's rendered history and the item that followed."""
    rng = np.random.default_rng(seed)
    seq = data.sequences
    ends = seq.indptr[1:]
    # every position that has a predecessor in the same user's sequence
    pos = np.setdiff1d(np.arange(len(seq.items)), seq.indptr[:-1])
    pos = pos[seq.items[pos] != seq.items[pos - 1]]
    take = rng.choice(pos, size=min(n_pairs, len(pos)), replace=False) if len(pos) else pos
    positive_items = seq.items[take].astype(np.int64)
    users = np.searchsorted(ends, take, side="right").astype(np.int64)
    positives = [item_texts[i] for i in positive_items]
    anchor_items = None
    if retriever.args.text_finetune_pairs == "item":
        anchor_items = seq.items[take - 1].astype(np.int64)
        anchors = [item_texts[i] for i in anchor_items]
    else:
        hists = [seq.items[seq.indptr[u] : p] for u, p in zip(users, take)]
        profiles = data.users[users] if data.users is not None else None
        anchors = render_users(hists, data.items, profiles=profiles, templates=retriever.args.templates)
    return TextPairs(anchors, positives, positive_items, users, anchor_items)


def text_pairs(retriever: Trainable, data: TrainData, item_texts: list[str], n_pairs: int, seed: int) -> tuple[list[str], list[str]]:
    """(anchor, positive) texts: consecutive items, or a user's rendered history and the item that followed."""
    pairs = sample_text_pairs(retriever, data, item_texts, n_pairs, seed)
    return pairs.anchors, pairs.positives


def item_log_q(data: TrainData, negatives: np.ndarray | None = None) -> np.ndarray:
    """(n_items,) float32 log q: the probability that a random candidate of a batch is the item.

    Candidates are the pairs' positives, drawn uniformly from interactions, so q is (up to the first item of each
    history) the item's share of training interactions, add-one smoothed so items without interactions stay finite.
    With mined hard ``negatives`` (one per pair, catalogue indices) half the candidates are negatives, so
    q = (interaction share + share among the mined negatives) / 2: a rare item that is often mined is not
    treated as rarely sampled (which would boost its logit by its full -log interaction share).
    """
    counts = data.item_counts.astype(np.float64) + 1.0
    q = counts / counts.sum()
    if negatives is not None and len(negatives):
        q = (q + np.bincount(negatives, minlength=len(q)) / len(negatives)) / 2
    return np.log(q).astype(np.float32)


def user_exclusions(data: TrainData, users: np.ndarray, also: np.ndarray) -> list[np.ndarray]:
    """Per pair: every item of the user's training history plus ``also[r]`` (the positive), as catalogue indices."""
    seq = data.sequences
    starts = seq.indptr[users]
    lens = seq.indptr[users + 1] - starts
    sizes = lens + 1
    offsets = np.cumsum(sizes) - sizes
    within = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
    flat = np.empty(int(sizes.sum()), dtype=np.int64)
    flat[np.repeat(offsets, lens) + within] = seq.items[np.repeat(starts, lens) + within]
    flat[offsets + lens] = also
    return np.split(flat, np.cumsum(sizes)[:-1])


def mine_hard_negatives(retriever: Trainable, data: TrainData, pairs: TextPairs, item_texts: list[str], k: int, seed: int) -> np.ndarray:
    """(n,) one hard negative per pair (catalogue index; -1 where none is eligible).

    Every item is embedded with the retriever's current text model and put in an exact inner-product FAISS index
    (``recsys.index.ItemIndex``, flat); each anchor (the previous item's vector, or the embedded history text)
    searches its ``k`` nearest items *after* removing the positive and every item of the user's training history
    (they are not negatives: the user chose them), and one of those ``k`` is drawn uniformly (seeded).
    """
    item_emb = retriever.embed(item_texts)
    queries = item_emb[pairs.anchor_items] if pairs.anchor_items is not None else retriever.embed(pairs.anchors, cache=False)
    index = ItemIndex.build(
        item_emb, np.arange(len(item_texts), dtype=np.int64), index_type="flat", model_fingerprint="text-finetune-hard-negatives",
        progress=False, device="cpu",
    )
    _, ids = index.search(queries, k, exclude=user_exclusions(data, pairs.users, pairs.positive_items))
    ids = np.asarray(ids, dtype=np.int64)
    found = (ids != MISSING_INT_ID).sum(axis=1)  # eligible hits come first, padding last
    pick = np.floor(np.random.default_rng(seed).random(len(ids)) * found).astype(np.int64)
    neg = ids[np.arange(len(ids)), np.minimum(pick, k - 1)]
    return np.where(found > 0, neg, -1)


def text_finetune_loss(args: RetrieverTrainingArguments, model: Any) -> Any:
    """The in-batch-negatives loss the settings ask for: (cached) MNRL, with or without the logQ correction."""
    from sentence_transformers.sentence_transformer.losses import CachedMultipleNegativesRankingLoss, MultipleNegativesRankingLoss

    from recsys.retriever.losses import CachedLogQCorrectedMNRL, LogQCorrectedMNRL

    mbs = args.text_finetune_mini_batch_size
    if args.text_finetune_logq:
        return CachedLogQCorrectedMNRL(model, mini_batch_size=mbs) if args.text_finetune_cached else LogQCorrectedMNRL(model)
    return CachedMultipleNegativesRankingLoss(model, mini_batch_size=mbs) if args.text_finetune_cached else MultipleNegativesRankingLoss(model)


def text_finetune_dataset(retriever: Trainable, data: TrainData, item_texts: list[str], n_pairs: int) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """Columns of the trainer's dataset (anchor, positive[, negative][, label = log q per candidate column]) + stats."""
    a = retriever.args
    pairs = sample_text_pairs(retriever, data, item_texts, n_pairs, a.seed)
    keep = np.arange(len(pairs.anchors))
    stats: dict[str, Any] = {}
    neg = None
    if a.text_finetune_hard_negatives > 0:
        neg = mine_hard_negatives(retriever, data, pairs, item_texts, a.text_finetune_hard_negatives, a.seed + 1)
        keep = np.flatnonzero(neg >= 0)
        stats["pairs_without_negative"] = int(len(neg) - len(keep))
    cols: dict[str, list[Any]] = {
        "anchor": [pairs.anchors[r] for r in keep],
        "positive": [pairs.positives[r] for r in keep],
    }
    if neg is not None:
        cols["negative"] = [item_texts[i] for i in neg[keep]]
    if a.text_finetune_logq:
        lq = item_log_q(data, neg[keep] if neg is not None else None)
        per_row = [pairs.positive_items[keep]] + ([neg[keep]] if neg is not None else [])
        cols["label"] = np.stack([lq[c] for c in per_row], axis=1).tolist()
    return cols, stats


def finetune_text_model(retriever: Trainable, data: TrainData, item_texts: list[str], progress: Progress | None = None) -> tuple[Any, dict[str, Any]]:
    """Stage 1: in-batch-negatives fine-tune of a private copy of the text model through the sentence-transformers
    trainer; returns (the fine-tuned model, the stage's history record)."""
    try:
        from datasets import Dataset
        from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
        from sentence_transformers.base.sampler import BatchSamplers
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise RuntimeError(
            "the text fine-tune needs the sentence-transformers training extras: pip install 'sentence-transformers[train]'"
        ) from exc

    a = retriever.args
    start = time.perf_counter()
    # hard negatives are mined with the current (pretrained) text model, before the private copy is trained
    cols, stats = text_finetune_dataset(retriever, data, item_texts, a.text_finetune_steps * a.text_finetune_batch_size * 2)
    # a private copy: the shared, cached base model must stay untouched
    model = SentenceTransformer(a.resolved_base_model, device="cpu")
    train = Dataset.from_dict(cols)
    loss = text_finetune_loss(a, model)
    with tempfile.TemporaryDirectory(prefix="recsys-mnrl-") as out:
        targs = SentenceTransformerTrainingArguments(
            output_dir=out,
            max_steps=a.text_finetune_steps,
            per_device_train_batch_size=a.text_finetune_batch_size,
            learning_rate=a.text_finetune_lr,
            warmup_steps=max(1, a.text_finetune_steps // 10),
            batch_sampler=BatchSamplers.NO_DUPLICATES,
            **trainer_defaults(a.seed),
        )
        trainer = SentenceTransformerTrainer(model=model, args=targs, train_dataset=train, loss=loss)
        # the trainer prints its final log dict to stdout: keep stdout clean for `--json`
        with contextlib.redirect_stdout(sys.stderr):
            result = trainer.train()
    model.eval()
    info = {
        "stage": "text_finetune", "steps": a.text_finetune_steps, "pairs": len(cols["anchor"]), "loss_fn": type(loss).__name__,
        "logq": a.text_finetune_logq, "hard_negatives": a.text_finetune_hard_negatives, **stats,
        "loss": float(result.training_loss), "seconds": round(time.perf_counter() - start, 1),
    }
    if progress:
        progress(f"text fine-tune: {info}")
    return model, info


# ---------------------------------------------------------------------------------------- stage 2: sequence tower


def training_windows(data: TrainData, max_len: int, all_windows: bool, ctx: np.ndarray | None) -> dict[str, np.ndarray]:
    """Left-padded (W, max_len) inputs/targets (+ target contexts, user ids) from every user's sequence.

    A window of ``max_len + 1`` consecutive items gives ``max_len`` (input, next item) pairs; windows are cut from the
    end of each history backwards without overlap (``all_windows``), or only the last one (SASRec).
    """
    seq, pad = data.sequences, data.n_items
    users, spans = [], []
    for u in range(seq.n_rows):
        lo_u, hi_u = int(seq.indptr[u]), int(seq.indptr[u + 1])
        end = hi_u
        while end - lo_u >= 2:
            start = max(lo_u, end - max_len - 1)
            spans.append((start, end))
            users.append(u)
            if not all_windows:
                break
            end = start + 1  # the next window ends where this one's first input was (every target once)
    w = len(spans)
    inputs = np.full((w, max_len), pad, dtype=np.int64)
    targets = np.full((w, max_len), pad, dtype=np.int64)
    c = None if ctx is None else np.full((w, max_len, ctx.shape[1]), -1, dtype=np.int64)
    for r, (s, e) in enumerate(spans):
        n = e - s - 1
        inputs[r, max_len - n :] = seq.items[s : e - 1]
        targets[r, max_len - n :] = seq.items[s + 1 : e]
        if c is not None:
            c[r, max_len - n :] = ctx[s + 1 : e]
    return {"inputs": inputs, "targets": targets, "ctx": c, "users": np.asarray(users, dtype=np.int64)}


def validation_ndcg(retriever: Trainable, cases: Cases, profiles: pl.DataFrame | None) -> tuple[float, float]:
    """NDCG@10 and HR@10 on ``cases`` with the protocol's exclusions (ties by a fixed key; rare with cosine scores)."""
    scores = retriever.score(cases, profiles)
    excl = cases.exclude
    s = M.prepare_scores(scores, np.repeat(np.arange(len(cases)), excl.lengths), excl.items, cases.targets)
    ranks = M.target_ranks(s, cases.targets, M.tie_keys(np.arange(len(cases)), scores.shape[1], 0))
    means, _ = M.ranking_metrics(ranks)
    return float(means["NDCG@10"]), float(means["HR@10"])


class _TrainStep(nn.Module):
    """One batch's logits as a ``forward``: ``DistributedDataParallel`` synchronises gradients only for what runs
    through the wrapped module's forward, and the network's towers are separate methods."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(
        self,
        inp: torch.Tensor,
        ctx: torch.Tensor | None,
        prof: torch.Tensor | None,
        id_keep: torch.Tensor | None,
        unseen: torch.Tensor | None,
    ) -> torch.Tensor:
        net = self.net
        z = net.item_raw(id_keep=id_keep) if id_keep is not None else net.item_raw()
        table = torch.cat([z, torch.zeros(1, z.shape[1], dtype=z.dtype, device=z.device)])
        states = net.user_states(inp, table, ctx, prof)
        logits = net.logits(states, net.normalise(z))
        if unseen is not None:  # items without training interactions are never negatives (cold items stay neutral)
            logits = logits.masked_fill(unseen, float("-inf"))
        return logits


def train_towers(
    retriever: Trainable,
    data: TrainData,
    validation: Cases | None = None,
    *,
    history: list[dict[str, Any]] | None = None,
    started: float | None = None,
    progress: Progress | None = None,
) -> None:
    """Stage 2: train the built network's adaptor (+ ID embeddings) and sequence tower, early-stopped on
    ``validation``; the best state is restored and ``retriever.metrics``/``retriever.history`` are set.

    Under ``torchrun``/``accelerate launch`` (WORLD_SIZE > 1) training is data-parallel: the network is wrapped in
    ``DistributedDataParallel``, every rank draws the same window permutation each epoch and trains on its own
    strided shard (so the effective batch is ``batch_size`` x ranks), rank 0 validates and its early-stopping and
    time-budget decisions are broadcast, so all ranks stop at the same step and restore the same best state. A plain
    process runs exactly the single-process loop (same seed, same result). Dropout draws from torch's global
    generator, which the caller seeds (``TwoTowerRetriever.fit`` seeds it before building the network).
    """
    a = retriever.args
    rank, world_size, _ = D.world()
    distributed = D.is_distributed()
    main = rank == 0
    say = (progress or (lambda m: log.info(m))) if main else (lambda m: None)
    rng = np.random.default_rng(a.seed)  # identical on every rank: one shared permutation per epoch
    t0 = started if started is not None else time.perf_counter()
    history = list(history or [])
    net = retriever.net
    if net is None:
        raise RuntimeError("build the retriever's network before training it")
    known = net.known.cpu().numpy()
    text_dim = net.text.shape[1]
    dev = D.device()
    net.to(dev)

    ctx = None
    if a.use_context:
        if data.events.height != len(data.sequences.items):
            raise ValueError("events and sequences disagree: cannot align request contexts")
        ctx = context_features(data.events, data.events.height, retriever.context_columns, time=retriever.time_context)
    win = training_windows(data, a.max_len, a.all_windows, ctx)
    profile_emb = None
    if a.use_profiles and data.users is not None:
        profile_emb = torch.from_numpy(retriever.embed([render_profile(p, a.templates) for p in data.users.to_dicts()]))
    val_profiles = data.users[validation.users] if (validation is not None and data.users is not None and a.use_profiles) else None

    unseen = torch.from_numpy(~known).to(dev) if not known.all() else None
    step: nn.Module = _TrainStep(net)
    if distributed:
        import inspect

        from torch.nn.parallel import DistributedDataParallel

        # DDP copies rank 0's initial weights to every rank; the buffers (catalogue text, known items) are constant,
        # so they are not re-broadcast every step (torch >= 2.13 spells it forward_sync_buffers and still syncs them
        # once at init); the profile projection sits idle without profiles
        no_buffer_sync = (
            {"forward_sync_buffers": False}
            if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
            else {"broadcast_buffers": False}
        )
        step = DistributedDataParallel(
            step,
            device_ids=[dev.index] if dev.type == "cuda" else None,
            find_unused_parameters=net.profile_proj is not None and profile_emb is None,
            **no_buffer_sync,
        )
        # dropout and ID-dropout masks differ per rank, as they would across the batches of one process
        torch.manual_seed(a.seed + 7919 * rank)
    opt = torch.optim.Adam(net.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    loss_fn = nn.CrossEntropyLoss(ignore_index=data.n_items)
    n_win = len(win["inputs"])
    best = (-1.0, -1, None)  # ndcg, epoch, state
    bad, steps, stop = 0, 0, ""
    train_start = time.perf_counter()
    ranks = f", {world_size} ranks x batch {a.batch_size} on {dev}" if distributed else ""
    say(f"retriever: {n_win} windows, {data.n_items} items, text dim {text_dim}, setup {train_start - t0:.1f}s{ranks}")
    for epoch in range(1, a.epochs + 1):
        step.train()
        order = D.shard_order(rng.permutation(n_win), rank, world_size) if distributed else rng.permutation(n_win)
        total, batches = 0.0, 0
        for lo in range(0, len(order), a.batch_size):
            idx = order[lo : lo + a.batch_size]
            inp = torch.from_numpy(win["inputs"][idx])
            tgt = torch.from_numpy(win["targets"][idx])
            # trim the all-pad columns on the left (short windows) to save time
            first = int((inp != data.n_items).int().argmax(dim=1).min())
            inp, tgt = inp[:, first:].to(dev), tgt[:, first:].to(dev)
            c = torch.from_numpy(win["ctx"][idx][:, first:]).to(dev) if win["ctx"] is not None else None
            prof = profile_emb[torch.from_numpy(win["users"][idx])].to(dev) if profile_emb is not None else None
            id_keep = None
            if net.id_emb is not None and a.id_dropout > 0:
                id_keep = (torch.rand(data.n_items) >= a.id_dropout).to(dev)
            logits = step(inp, c, prof, id_keep, unseen)
            loss = loss_fn(logits.reshape(-1, data.n_items), tgt.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item()
            batches += 1
            steps += 1
            if a.max_steps is not None and steps >= a.max_steps:  # the same step on every rank
                stop = "max_steps"
                break
            if a.time_budget_s is not None:
                over = time.perf_counter() - train_start > a.time_budget_s
                if D.broadcast_flag(over) if distributed else over:  # rank 0's clock decides for all
                    stop = "time_budget"
                    break
        loss_mean = D.all_reduce_mean(total / max(batches, 1)) if distributed else total / max(batches, 1)
        rec: dict[str, Any] = {"epoch": epoch, "loss": round(loss_mean, 4), "seconds": round(time.perf_counter() - train_start, 1)}
        if validation is not None and (epoch % a.eval_every == 0 or stop or epoch == a.epochs):
            # rank 0 validates (the weights are identical on every rank); all ranks then take the same decision
            scores = validation_ndcg(retriever, validation, val_profiles) if main else None
            ndcg, hr = D.broadcast_object(scores) if distributed else scores
            rec.update({"val_NDCG@10": round(ndcg, 5), "val_HR@10": round(hr, 5)})
            if ndcg > best[0]:
                best, bad = (ndcg, epoch, copy.deepcopy(net.state_dict())), 0
            else:
                bad += 1
                if bad >= a.patience:
                    stop = stop or "early_stopping"
        history.append(rec)
        say(f"retriever epoch {rec}")
        if stop:
            break
    if best[2] is not None:
        net.load_state_dict(best[2])
        retriever.metrics = {"val_NDCG@10": best[0], "best_epoch": best[1]}
    retriever.metrics.update({"epochs_run": epoch, "steps": steps, "stop": stop or "epochs", "fit_seconds": round(time.perf_counter() - t0, 1)})
    retriever.history = history
    net.to("cpu")  # a fitted retriever serves on CPU (the library's default), whichever device trained it
    if distributed:
        label = getattr(retriever, "replica_label", "retriever")  # the cold-start probe's own training says so
        retriever.metrics.update({"world_size": world_size, "replica_checksum": D.check_replicas(net.state_dict(), label)})
    net.eval()


__all__ = [
    "TextPairs",
    "data_fingerprint",
    "Trainable",
    "finetune_text_model",
    "item_log_q",
    "mine_hard_negatives",
    "sample_text_pairs",
    "text_finetune_dataset",
    "text_finetune_loss",
    "text_pairs",
    "train_towers",
    "training_windows",
    "user_exclusions",
    "validation_ndcg",
]
