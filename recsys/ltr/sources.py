"""Candidate sources for the learned ranker and the merger that unites their lists with provenance.

A source is anything that, fitted on ``TrainData``, scores every catalogue item for a batch of ``Cases`` (higher
is better, ``-inf`` = cannot score): the harness models already do this, so EASE, SASRec, popularity and the
two-tower retriever enter through one adapter (``RecommenderSource``), and item-item co-occurrence through
``CooccurrenceScores`` (``recsys.ltr.cooccurrence.item_neighbours``, scored for many histories at once).

``merge_candidates`` takes each source's top ``depth`` items per case (the case's excluded items removed), unites
them and returns one row per (case, item) with every source's score and rank: the rank is missing when that source
did not propose the item; the score is the source's score wherever it can score the item (a dense scorer knows the
EASE score of a co-occurrence candidate) unless ``scores_beyond_depth`` is off.
"""

from __future__ import annotations

import importlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Collection
from typing import Any, Protocol, runtime_checkable

import numpy as np
import polars as pl

from recsys.errors import RecsysError
from recsys.data.types import Cases, TrainData
from recsys.models import get_model_class

SOURCE_FILE, MODEL_DIR = "source.pkl", "model"


@runtime_checkable
class CandidateSource(Protocol):
    """Scores the whole catalogue for a batch of requests; the merger turns scores into candidate lists."""

    name: str

    def fit(self, data: TrainData, validation: Cases | None = None) -> "CandidateSource": ...

    def score(self, cases: Cases) -> np.ndarray: ...

    def params_without_validation(self) -> dict[str, Any]: ...

    def save(self, directory: Path) -> None: ...


@dataclass
class SourceSpec:
    """One source of a ranking run: ``kind`` (see ``SOURCE_KINDS``), how many candidates it proposes, its params."""

    kind: str
    depth: int = 100
    params: dict[str, Any] = field(default_factory=dict)
    name: str | None = None

    @property
    def key(self) -> str:
        return self.name or self.kind

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SourceSpec":
        unknown = set(d) - {"kind", "depth", "params", "name"}
        if unknown:
            raise RecsysError(f"candidate source {d!r}: unknown keys {sorted(unknown)} (expected kind, depth, params, name)")
        if d.get("kind") not in SOURCE_KINDS:
            raise RecsysError(f"candidate source kind {d.get('kind')!r} is unknown; choose from: {', '.join(SOURCE_KINDS)}")
        return cls(d["kind"], int(d.get("depth", 100)), dict(d.get("params") or {}), d.get("name"))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "depth": self.depth, "params": dict(self.params), "name": self.key}


class RecommenderSource:
    """A harness ``Recommender`` (EASE, SASRec, popularity, the two-tower retriever, ...) as a candidate source."""

    def __init__(self, name: str, model_name: str, params: dict[str, Any] | None = None) -> None:
        self.name, self.model_name, self.params = name, model_name, dict(params or {})
        self.model = get_model_class(model_name)(**self.params)

    def fit(self, data: TrainData, validation: Cases | None = None) -> "RecommenderSource":
        self.model.fit(data, validation)
        return self

    def score(self, cases: Cases) -> np.ndarray:
        return np.asarray(self.model.score(cases), dtype=np.float32)

    def params_without_validation(self) -> dict[str, Any]:
        return self.model.params_without_validation()

    def save(self, directory: Path) -> None:
        """Pickle; a fitted model with its own ``save``/``load`` (the two-tower retriever) is saved its own way."""
        inner = getattr(self.model, "model_", None)
        if inner is None or not (hasattr(inner, "save") and hasattr(type(inner), "load")):
            _pickle(self, directory)
            return
        inner.save(Path(directory) / MODEL_DIR)
        self.model.model_, self.saved_model_class = None, f"{type(inner).__module__}:{type(inner).__qualname__}"
        try:
            _pickle(self, directory)
        finally:
            self.model.model_ = inner


class ServedRetrieverSource:
    """The served two-tower retriever (a ``recsys train retriever`` run, or a fitted ``TwoTowerRetriever``) as the
    ranking run's retriever source.

    ``fit`` loads the run (or keeps the given model) instead of training: the serving fold *is* the served retriever
    (its catalogue must be the data's); ``params_without_validation`` hands the label fold the retriever's settings
    and its best validation epoch count, so the label-fold copy is retrained on the label fold's data the way the
    served one was trained. ``save`` writes only the run's path: at serving time the retriever's scores come with each request (the
    index's top ``depth``), and the ranking stage refuses an index built by another run (the manifest's fingerprint).
    """

    def __init__(self, run_dir: Path | str | None = None, name: str = "retriever", *, model: Any = None) -> None:
        if (run_dir is None) == (model is None):
            raise RecsysError("a served retriever source takes a run directory or a fitted model")
        self.name, self.run_dir = name, str(run_dir) if run_dir is not None else None
        self.model_: Any = model

    def fit(self, data: TrainData, validation: Cases | None = None) -> "ServedRetrieverSource":
        if self.run_dir is not None:
            from recsys.retriever.run import load_run

            self.model_, _, _ = load_run(self.run_dir)
        if self.model_.n_items != data.n_items:
            raise RecsysError(f"retriever {self.run_dir or ''} has {self.model_.n_items} catalogue items, the ranking data {data.n_items}: train both on one dataset")
        self.users_ = data.users
        return self

    def score(self, cases: Cases) -> np.ndarray:
        if self.model_ is None:
            raise RecsysError(f"the retriever source of a saved ranking run has no weights: its scores come with each request (run {self.run_dir})")
        profiles = self.users_[cases.users] if (self.users_ is not None and self.model_.args.use_profiles) else None
        return np.asarray(self.model_.score(cases, profiles), dtype=np.float32)

    def params_without_validation(self) -> dict[str, Any]:
        m = self.model_.metrics  # the served weights are the best validation epoch's: the label fold trains that many
        epochs = int(m.get("best_epoch") or m.get("epochs_run") or self.model_.args.epochs)
        return {**self.model_.args.to_dict(), "epochs": epochs, "epochs_without_validation": epochs, "time_budget_s": None}

    def save(self, directory: Path) -> None:
        model, self.model_ = self.model_, None
        try:
            _pickle(self, directory)
        finally:
            self.model_ = model


class CooccurrenceScores:
    """Item-item co-occurrence (``recsys.ltr.cooccurrence.item_neighbours``): score(j) = sum of cos(h, j) over
    history items h among j's ``neighbours`` nearest items (the harness's ItemKNN scores), batched."""

    def __init__(self, name: str = "cooccurrence", neighbours: int = 50) -> None:
        self.name, self.neighbours = name, int(neighbours)

    def fit(self, data: TrainData, validation: Cases | None = None) -> "CooccurrenceScores":
        from recsys.ltr.cooccurrence import item_neighbours

        self.matrix_ = item_neighbours(data.matrix, self.neighbours)
        return self

    def score(self, cases: Cases) -> np.ndarray:
        h = cases.history.to_csr(self.matrix_.shape[0])
        s = np.asarray((h @ self.matrix_).todense(), dtype=np.float32)
        s[s <= 0] = -np.inf  # nothing in the history co-occurs with it: no score
        return s

    def params_without_validation(self) -> dict[str, Any]:
        return {}

    def save(self, directory: Path) -> None:
        _pickle(self, directory)


def _pickle(obj: Any, directory: Path) -> None:
    Path(directory).mkdir(parents=True, exist_ok=True)
    with open(Path(directory) / SOURCE_FILE, "wb") as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)


def load_source(directory: Path) -> CandidateSource:
    path = Path(directory) / SOURCE_FILE
    if not path.is_file():
        raise RecsysError(f"{path} is missing: the ranking run is incomplete")
    with open(path, "rb") as f:
        source = pickle.load(f)  # noqa: S301 - our own artefact, fingerprint-checked by the caller
    saved = getattr(source, "saved_model_class", None)
    if saved:
        module, _, name = saved.partition(":")
        source.model.model_ = getattr(importlib.import_module(module), name).load(Path(directory) / MODEL_DIR)
    return source


#: kind -> (harness model name or None for co-occurrence)
SOURCE_KINDS: dict[str, str | None] = {
    "ease": "ease",
    "cooccurrence": None,
    "popularity": "popularity",
    "sasrec": "sasrec",
    "retriever": "retriever",
    "itemknn": "itemknn",
    "ials": "ials",
}


def make_source(spec: SourceSpec, overrides: dict[str, Any] | None = None) -> CandidateSource:
    """A fresh, unfitted source for ``spec`` (``overrides`` merged into its params, e.g. epochs for a refit)."""
    params = {**spec.params, **(overrides or {})}
    model = SOURCE_KINDS[spec.kind]
    if model is None:
        return CooccurrenceScores(spec.key, **params)
    return RecommenderSource(spec.key, model, params)


def source_scores(source: CandidateSource, cases: Cases, batch_size: int = 512) -> np.ndarray:
    """(len(cases), n_items) float32 scores of one source, in batches (one batch: the cases as they are, no copy)."""
    if 0 < len(cases) <= batch_size:
        return source.score(cases)
    parts = [source.score(cases.take(np.arange(lo, min(lo + batch_size, len(cases))))) for lo in range(0, len(cases), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)


def excluded_mask(cases: Cases, n_items: int) -> np.ndarray:
    """Boolean (cases x items): True where the protocol excludes the item for that case (its history)."""
    mask = np.zeros((len(cases), n_items), dtype=bool)
    excl = cases.exclude
    mask[np.repeat(np.arange(len(cases)), excl.lengths), excl.items] = True
    return mask


def top_depth(scores: np.ndarray, excluded: np.ndarray, depth: int) -> np.ndarray:
    """(cases x items) int32 rank (1 = best) of each source's top ``depth`` scorable, non-excluded items; 0 elsewhere.

    Ties are broken by item index (deterministic)."""
    s = np.where(excluded, -np.inf, scores)
    n_cases, n_items = s.shape
    k = min(depth, n_items)
    ranks = np.zeros((n_cases, n_items), dtype=np.int32)
    if k <= 0 or n_cases == 0:
        return ranks
    top = np.argpartition(-s, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(s, top, axis=1)
    order = np.lexsort((top, -vals), axis=1)
    top = np.take_along_axis(top, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    rows = np.repeat(np.arange(n_cases), k).reshape(n_cases, k)
    keep = np.isfinite(vals)
    ranks[rows[keep], top[keep]] = (np.broadcast_to(np.arange(1, k + 1), (n_cases, k)))[keep]
    return ranks


def merge_candidates(
    scores: dict[str, np.ndarray],
    depths: dict[str, int],
    cases: Cases,
    *,
    scores_beyond_depth: bool = True,
    include_targets: bool = False,
    within_depth: Collection[str] = (),
) -> pl.DataFrame:
    """One row per (case, candidate item) from the union of every source's top ``depths[name]``.

    Columns: ``case`` (row in ``cases``), ``item``, ``n_sources`` (how many proposed it), and per source
    ``<name>_score`` (Float32, null when it cannot score the item or, with ``scores_beyond_depth`` off, did not
    propose it) and ``<name>_rank`` (1 = its best; null when it did not propose the item). ``include_targets`` adds
    each case's target even when no source proposed it (for diagnostics only; training never uses it). Sources
    named in ``within_depth`` keep their score only where they proposed the item (the served retriever: a request
    carries its top ``depth`` from the index, nothing beyond).
    """
    if not scores:
        raise RecsysError("no candidate sources: configure at least one")
    n_cases, n_items = next(iter(scores.values())).shape
    excluded = excluded_mask(cases, n_items)
    ranks = {name: top_depth(s, excluded, depths[name]) for name, s in scores.items()}
    union = np.zeros((n_cases, n_items), dtype=bool)
    for r in ranks.values():
        union |= r > 0
    if include_targets:
        union[np.arange(n_cases), cases.targets] = True
    case_idx, item_idx = np.nonzero(union)
    cols: dict[str, Any] = {"case": case_idx.astype(np.int32), "item": item_idx.astype(np.int32)}
    proposed = np.zeros(len(case_idx), dtype=np.int32)
    for name, s in scores.items():
        r = ranks[name][case_idx, item_idx]
        v = s[case_idx, item_idx].astype(np.float32)
        ok = np.isfinite(v) & ((r > 0) | (scores_beyond_depth and name not in within_depth))
        # nulls straight from numpy (NaN, masked 0): polars' per-query overhead dominates a single request
        cols[f"{name}_score"] = pl.Series(f"{name}_score", np.where(ok, v, np.nan), dtype=pl.Float32, nan_to_null=True)
        cols[f"{name}_rank"] = pl.Series(f"{name}_rank", np.ma.masked_equal(r, 0), dtype=pl.Int32)
        proposed += r > 0
    cols["n_sources"] = proposed
    return pl.DataFrame(cols)


def recall_at(candidates: pl.DataFrame, targets: np.ndarray) -> float:
    """Share of cases whose target is among their candidates."""
    hits = candidates.join(pl.DataFrame({"case": np.arange(len(targets), dtype=np.int32), "item": targets.astype(np.int32)}), on=["case", "item"])
    return hits.height / max(len(targets), 1)


__all__ = [
    "SOURCE_KINDS",
    "CandidateSource",
    "CooccurrenceScores",
    "RecommenderSource",
    "ServedRetrieverSource",
    "SourceSpec",
    "excluded_mask",
    "load_source",
    "make_source",
    "merge_candidates",
    "recall_at",
    "source_scores",
    "top_depth",
]
