"""Choosing the cold-item channel of a retriever from its training data alone (``cold_start = "auto"``).

Which text signal ranks never-seen items best depends on the data: the pretrained model's cosine where item text
carries the signal (product catalogues), the item tower's trained text path where titles say little and training
learned what they do say (MovieLens). Asking the fitted model is leaky: its adaptor trained on every training item's
text, so scoring training targets "as if cold" favours the trained path everywhere (docs/cold-start.md). The probe
avoids that leak by construction: it draws a random tenth of the training items (those with at least
``PROBE_MIN_INTERACTIONS`` interactions, as the evaluation protocol's cold split does), removes every interaction with
them, trains a short copy of the retriever (same settings, ``cold_probe_epochs`` epochs, no validation) on the rest,
and ranks the held-out items' interactions against the whole catalogue with each channel, exactly as the cold-start
protocol ranks cold items. ``"adaptor"`` is chosen only when its HR@10 beats ``"text"``'s by more than one standard
error of the paired per-case difference; otherwise (a tie, or a loss) ``"text"`` stays, the channel whose cold ranking
is the untrained model's own. The held-out items were never seen by the probe, so neither channel had
trained on them; test data is never involved (the probe sees only the ``TrainData`` given to ``fit``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from recsys.data import schema as S
from recsys.data.types import Cases, Sequences, TrainData
from recsys.evaluation import metrics as M
from recsys.evaluation.split import merge_rows as merge_rows
from recsys.retriever.config import RetrieverTrainingArguments

#: items with at least this many training interactions may be held out (the protocol's cold-split rule)
PROBE_MIN_INTERACTIONS = 5
#: share of those items held out
PROBE_FRACTION = 0.10
#: at most this many held-out interactions are ranked (bounds the probe's scoring cost on large data)
PROBE_MAX_CASES = 4000
CHANNELS = ("text", "adaptor")


@dataclass
class ColdProbe:
    """The held-out split of one ``TrainData``: training data without the held-out items, and their cases."""

    train: TrainData
    cases: Cases
    held_out: np.ndarray


def probe_split(data: TrainData, seed: int) -> ColdProbe | None:
    """Hold out a seeded random ``PROBE_FRACTION`` of the items with ``PROBE_MIN_INTERACTIONS`` or more interactions:
    the rest of the data to train on, and one case per held-out interaction (history: the user's other items, as the
    protocol's cold cases; excluded at ranking: the history and the user's other held-out items). None when too few
    items qualify to hold any out."""
    eligible = np.flatnonzero(data.item_counts >= PROBE_MIN_INTERACTIONS)
    n = int(round(PROBE_FRACTION * len(eligible)))
    if n == 0 or n == len(eligible):
        return None
    rng = np.random.default_rng(seed)
    held = np.sort(rng.choice(eligible, n, replace=False)).astype(np.int32)
    ev = data.events.with_row_index("_row")
    is_held = pl.col("i").is_in(pl.Series(held).implode())
    keep, all_held = ev.filter(~is_held), ev.filter(is_held)
    out = all_held
    if len(out) > PROBE_MAX_CASES:
        out = out.sort("_row").gather(np.sort(rng.choice(len(out), PROBE_MAX_CASES, replace=False)))
    keep = keep.drop("_row")
    seq = Sequences.from_sorted(keep["u"].to_numpy(), keep["i"].to_numpy(), data.n_users)
    train = TrainData(seq, data.n_items, data.items, keep, data.users, held, data.synthetic_timestamps)
    users = out["u"].to_numpy()
    history = seq.take(users)
    held_seq = Sequences.from_sorted(all_held["u"].to_numpy(), all_held["i"].to_numpy(), data.n_users).take(users)
    excl_items, excl_ptr = merge_rows(history, held_seq)  # the protocol's cold-case exclusions
    ctx = out.drop(["_row", "u", "i"] + [c for c in (S.RATING, S.WEIGHT) if c in out.columns])
    cases = Cases(users, history, out["i"].to_numpy(), Sequences(excl_ptr, excl_items), ctx)
    return ColdProbe(train, cases, held)


def target_hits(model: Any, cases: Cases, batch_size: int = 512) -> np.ndarray:
    """Per case, whether the target is in ``model.score``'s top 10 (protocol ranking: exclusions, deterministic tie
    keys), scored in batches so memory stays batch x catalogue."""
    hits = []
    for lo in range(0, len(cases), batch_size):
        idx = np.arange(lo, min(lo + batch_size, len(cases)))
        batch = cases.take(idx)
        scores = model.score(batch)
        rows = np.repeat(np.arange(len(idx)), batch.exclude.lengths)
        s = M.prepare_scores(scores, rows, batch.exclude.items, batch.targets)
        keys = M.tie_keys(idx, scores.shape[1], 0)
        hits.append(M.target_ranks(s, batch.targets, keys) < 10)
    return np.concatenate(hits).astype(np.float64)


def _mean_se(x: np.ndarray) -> dict[str, float]:
    return {"HR@10": float(x.mean()), "HR@10_se": float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")}


def choose_cold_channel(
    make: Callable[[RetrieverTrainingArguments], Any],
    args: RetrieverTrainingArguments,
    data: TrainData,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train a short probe retriever (``make(args)``, ``cold_probe_epochs`` epochs) without a held-out tenth of the
    items and rank those items' interactions with each channel at the configured ``cold_text_shift``.

    Returns ``{"cold_start": winner, "probe": {...}}`` with each channel's HR@10 ± se, their paired difference
    (adaptor - text) ± se, the number of held-out items and cases and the probe's seconds; ``"text"`` without a probe when too few items can be held out.
    """
    t0 = time.perf_counter()
    split = probe_split(data, args.seed)
    if split is None:
        return {"cold_start": "text", "probe": {"skipped": "too few items with enough interactions to hold any out"}}
    probe_args = RetrieverTrainingArguments.from_dict(
        {**args.to_dict(), "cold_start": "text", "epochs": args.cold_probe_epochs, "text_finetune_steps": 0}
    )
    model = make(probe_args)
    model.replica_label = "cold-start probe"  # its replica check (launched runs) is not the retriever's
    model.fit(split.train, None, progress=lambda message: None)  # its epochs are not the retriever's progress
    result: dict[str, Any] = {"held_out_items": int(len(split.held_out)), "cases": int(len(split.cases)), "epochs": args.cold_probe_epochs}
    hits = {}
    for channel in CHANNELS:
        model.args.cold_start = channel
        hits[channel] = target_hits(model, split.cases)
        result[channel] = _mean_se(hits[channel])
    diff = _mean_se(hits["adaptor"] - hits["text"])
    result["adaptor_minus_text"] = {"diff": diff["HR@10"], "se": diff["HR@10_se"]}
    winner = "adaptor" if diff["HR@10"] > diff["HR@10_se"] else "text"
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if progress is not None:
        progress(
            f"cold-start probe: text {result['text']['HR@10']:.4f}, adaptor {result['adaptor']['HR@10']:.4f} on "
            f"{result['cases']} held-out interactions -> {winner} ({result['seconds']}s)"
        )
    return {"cold_start": winner, "probe": result}


__all__ = ["CHANNELS", "ColdProbe", "choose_cold_channel", "probe_split", "target_hits"]
