"""Fine-tuning of the cross-encoder on two CPU cores: listwise softmax over one positive and hard negatives.

The frozen lower layers' outputs are computed once for every user text and item text (cached as float16), so each
step runs only the top layer(s) and the heads: over a batch of cases, the user texts and the distinct items of their
lists. Loss: cross entropy of ``scale`` x score over [positive, negatives] per case (no sigmoid on the scores). The
time budget is the process CPU time of the whole fit (``time.process_time``: every thread's CPU seconds), so it
means the same on an idle and on a shared machine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from recsys.data.types import TrainData, train_data_fingerprint
from recsys.reranker.examples import Scorer, hard_negatives, training_cases
from recsys.reranker.model import ITEM, USER, CrossEncoder
from recsys.text import require_item_text

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


def fit_cross_encoder(model: CrossEncoder, data: TrainData, scorer: Scorer, *, progress: Progress | None = None) -> CrossEncoder:
    """Train ``model`` on ``data`` with hard negatives from ``scorer`` (a first stage fitted on the same data), then
    index the catalogue. Records what it trained on (``data_fingerprint``) and how (``history``)."""
    import torch

    a = model.args
    say = progress or (lambda m: log.info(m))
    if a.threads:
        torch.set_num_threads(a.threads)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    item_texts = model.render_items(data.items)
    require_item_text(item_texts, data.items, a.templates(), model="the cross-encoder")
    if a.max_steps == 0:  # the untrained model: the bi-encoder cosine, nothing to cache
        model.data_fingerprint = train_data_fingerprint(data, item_texts)
        model.index_catalogue(data.items)
        model.history = {"steps": 0, "stopped_by": "max_steps", "cpu_s": round(time.process_time() - cpu0, 1)}
        return model
    cases = training_cases(data, a.positives_per_user)
    if len(cases) == 0:
        raise ValueError("no training cases: every user needs at least two training interactions")
    negs = hard_negatives(cases, scorer, a.hard_pool, a.negatives, rng)
    lists = np.concatenate([cases.targets[:, None], negs], axis=1)
    users = model.user_texts([cases.history.row(r) for r in range(len(cases))], model.history_texts(data.items))
    user_states = model.frozen_states(users, half=True)
    item_states = model.frozen_states(item_texts, half=True)
    setup_cpu = time.process_time() - cpu0
    say(f"cross-encoder: {len(cases)} cases x {lists.shape[1]} items, frozen states cached in {setup_cpu:.0f} s CPU")

    top, heads = model.trainable_parameters()
    groups = [{"params": top, "lr": a.lr}, {"params": heads, "lr": a.head_lr}]
    opt = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=a.weight_decay)
    warm = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, a.warmup_steps)))
    target = torch.zeros(a.batch_size, dtype=torch.long)
    steps_per_epoch = int(np.ceil(len(cases) / a.batch_size))
    max_steps = int(a.max_steps) if a.max_steps is not None else int(np.ceil(a.max_epochs * steps_per_epoch))
    step, losses, stop = 0, [], "max_steps"
    model.top.train()
    while step < max_steps:
        order = rng.permutation(len(cases))
        for lo in range(0, len(order), a.batch_size):
            if step >= max_steps:
                break
            if a.cpu_budget_s is not None and time.process_time() - cpu0 >= a.cpu_budget_s:
                stop = "cpu_budget"
                break
            rows = order[lo : lo + a.batch_size]
            batch = lists[rows]
            uniq, inv = np.unique(batch, return_inverse=True)
            u = model.pooled([user_states[r] for r in rows], USER)
            v = model.pooled([item_states[i] for i in uniq], ITEM)
            scores = (u @ v.T).gather(1, torch.as_tensor(inv.reshape(batch.shape)))
            loss = torch.nn.functional.cross_entropy(a.scale * scores, target[: len(rows)])
            opt.zero_grad()
            loss.backward()
            opt.step()
            warm.step()
            losses.append(float(loss.detach()))
            step += 1
            if step % 50 == 0:
                say(f"cross-encoder: step {step}, loss {np.mean(losses[-50:]):.4f}, {time.process_time() - cpu0:.0f} s CPU")
        if stop == "cpu_budget":
            break
    model.top.eval()
    model.data_fingerprint = train_data_fingerprint(data, item_texts)
    model.index_catalogue(data.items)
    window = min(50, max(1, step // 4))  # mean loss over the first and the last quarter (at most 50 steps)
    first = round(float(np.mean(losses[:window])), 5) if losses else None
    last = round(float(np.mean(losses[-window:])), 5) if losses else None
    model.history = {
        "cases": len(cases), "list_size": int(lists.shape[1]), "steps": step, "epochs": round(step / steps_per_epoch, 3),
        "stopped_by": stop, "loss_first": first, "loss_last": last, "setup_cpu_s": round(setup_cpu, 1),
        "cpu_s": round(time.process_time() - cpu0, 1), "wall_s": round(time.perf_counter() - wall0, 1),
    }  # fmt: skip
    say(f"cross-encoder: {model.history}")
    return model


__all__ = ["Progress", "fit_cross_encoder"]
