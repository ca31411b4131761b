"""Training of the cross-encoder reranker through the sentence-transformers trainer API.

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
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.data.types import Cases, TrainData, train_data_fingerprint
from recsys.hf_training import trainer_defaults
from recsys.reranker.backbone import load_cross_encoder
from recsys.reranker.evaluation import choose_retrieval_weight, evaluate_reranker
from recsys.reranker.examples import Requests, context_swapped_users, retriever_top, sample_negatives
from recsys.text import require_item_text

if TYPE_CHECKING:
    from recsys.reranker.model import Reranker

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


data_fingerprint = train_data_fingerprint  # shared with the other text model


#: a trained cross-encoder whose scores vary less than this over training pairs ranks almost nothing (collapsed,
#: or too few steps; docs/experiments/context-ablation.md)
COLLAPSED_STD = 1e-2


def score_spread(reranker: "Reranker", train: Any, rng: np.random.Generator, n: int = 256) -> float:
    """Standard deviation of the fitted model's logits over ``n`` random training pairs: ~0 means it collapsed
    (every pair gets the label prior's log-odds), which the mean training loss alone does not tell apart from slow
    learning (collapsed and learning runs differ by orders of magnitude; docs/experiments/context-ablation.md)."""
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


__all__ = ["COLLAPSED_STD", "Progress", "data_fingerprint", "fit_reranker", "score_spread"]
