"""The second stage of every path: a learned ranking run (``recsys train ranker``) over the retriever's candidates.

``RankingStage.rank`` is the one function that ranks requests, behind ``recsys retrieve --rerank``, ``recsys
batch-score --rerank``, ``recsys serve --rerank`` and ``recsys evaluate -m pipeline``. A request carries the user's
history, the retriever's top ``depth`` candidates with their scores (from the index, or the pipeline model's own
retriever), its context and what must not be recommended; the stage adds the other sources' candidates (EASE,
co-occurrence, popularity), builds their features with ``recsys.ltr.features``, scores them with the LightGBM model
and, on demand, renders ``pred_contrib`` reasons (``recsys.ltr.explain``). Items are catalogue rows (the dataset's
item order, which is also the retriever run's catalogue), then the rows of items added to the index after the run
(``add_items``: ranked like the others, with the features their columns and text give).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recsys.data import schema as S
from recsys.data.types import Cases, Sequences
from recsys.errors import ManifestMismatchError, RecsysError
from recsys.ltr.explain import DEFAULT_VERB, interaction_verb
from recsys.ltr.ranker import KIND, LearnedRanker
from recsys.manifest import read_manifest
from recsys.service.ids import IdLookup


@dataclass
class RankRequest:
    """One request to rank. ``history``: catalogue rows, oldest first; ``candidates``/``scores``: the retriever's top
    ``depth`` rows and their scores (best first); ``context``: a one-row frame with ``timestamp`` and context columns
    (``recsys.context.context_frame``), None = no request time; ``exclude``: rows never recommended besides the
    history; ``user``: the user's row in the run's training data (-1 = a user it has not seen)."""

    history: np.ndarray
    candidates: np.ndarray
    scores: np.ndarray
    context: pl.DataFrame | None = None
    exclude: np.ndarray | None = None
    user: int = -1


@dataclass
class Ranking:
    """The ranked candidates of one request, best first: catalogue ``items``, the ranker's ``scores`` (margins),
    each item's ``retrieval`` score (NaN for candidates only another source proposed), the ``sources`` that proposed
    it, and with ``explain`` its ``reasons`` (sentences) and ``contributions`` (feature -> pred_contrib)."""

    items: np.ndarray
    scores: np.ndarray
    retrieval: np.ndarray
    sources: list[list[str]]
    reasons: list[list[str]] | None = None
    contributions: list[dict[str, float]] | None = None


class RankingStage:
    """A loaded ranking run bound to one retriever model and dataset (checked by fingerprint at ``open``).

    ``verb``: what an interaction is in the reasons ("you watched Heat"; ``recsys.ltr.explain.interaction_verb``)."""

    def __init__(self, ranker: LearnedRanker, *, run_dir: Path | str | None = None, verb: str = DEFAULT_VERB) -> None:
        given = ranker.given_sources
        if len(given) != 1:
            raise RecsysError(f"a ranking stage needs exactly one retriever source in its run, found {given or 'none'} (train it with `recsys train ranker`)")
        self.ranker, self.run_dir, self.verb = ranker, Path(run_dir) if run_dir is not None else None, verb
        self.retriever_source = given[0]
        self.depth = next(s.depth for s in ranker.specs if s.key == self.retriever_source)
        self.n_items = int(ranker.n_items_)
        self.run_items = self.n_items  # the ranking run's own catalogue; rows above it were added (``add_items``)
        self.source_names = [s.key for s in ranker.specs]
        user_ids = ranker.tables_.extra.get("user_ids")
        self._users = None if user_ids is None else IdLookup(pl.Series(S.USER_ID, list(user_ids)))

    @classmethod
    def open(
        cls, run_dir: Path | str, *, retriever_fingerprint: str | None = None, dataset_fingerprint: str | None = None, verb: str | None = None
    ) -> "RankingStage":
        """Load a ``recsys train ranker`` run; refuse one built on another retriever model or dataset. ``verb``
        defaults to the one of the dataset the run was built on (its manifest's source; ``interaction_verb``)."""
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise RecsysError(f"ranking run {run_dir} does not exist (train one with `recsys train ranker DATASET --retriever RUN --out {run_dir}`)")
        dataset = read_manifest(run_dir, KIND).get("dataset") or {}
        built_on = dataset.get("fingerprint")
        if dataset_fingerprint is not None and built_on is not None and built_on != dataset_fingerprint:
            raise ManifestMismatchError(
                f"ranking run {run_dir} was built on dataset {built_on}, but the index serves dataset {dataset_fingerprint}: "
                f"rebuild it with `recsys train ranker DATASET --retriever RUN --out {run_dir}`"
            )
        if verb is None:
            verb = interaction_verb(_dataset_source(dataset.get("path")))
        return cls(LearnedRanker.load(run_dir, retriever_fingerprint=retriever_fingerprint), run_dir=run_dir, verb=verb)

    def add_items(self, items: pl.DataFrame) -> np.ndarray:
        """Make items the run has never seen rankable (``recsys index add-items`` after ``recsys train ranker``):
        ``items`` (the dataset's item columns; ``item_id`` and text fields at least) become rows ``n_items``
        onwards. Their features come from ``FeatureTables.extend`` (no interactions: popularity 0, age missing;
        attributes from their columns; text vectors from their text by the MiniLM the tables used), the sources
        fitted on the run's interactions cannot score them (not proposed, score missing), the retriever's score comes
        with the request, and a cross-encoder feature embeds their text. Returns their rows."""
        from recsys.ltr.ranker import catalogue_vectors

        m = items.height
        rows = np.arange(self.n_items, self.n_items + m, dtype=np.int64)
        if m == 0:
            return rows
        ranker = self.ranker
        vectors = catalogue_vectors(items) if ranker.tables_.item_vectors is not None else None
        ranker.tables_ = ranker.tables_.extend(items, item_vectors=vectors)
        if ranker.cross_ is not None:
            _extend_cross_encoder(ranker.cross_, items)
        for name, src in list(ranker.serving_.items()):
            if name != self.retriever_source:
                wrapped = src if isinstance(src, _WithAddedItems) else _WithAddedItems(src, self.run_items)
                wrapped.n_items = self.n_items + m
                ranker.serving_[name] = wrapped
        self.n_items = ranker.n_items_ = self.n_items + m
        return rows

    @property
    def fingerprint(self) -> str:
        return str(getattr(self.ranker, "manifest", {}).get("fingerprint", "unsaved"))

    @property
    def context_keys(self) -> list[str]:
        """Context keys the run's features read (time of day, weekday and the data's string context columns)."""
        return self.ranker.tables_.context_keys()

    def user_rows(self, user_ids: Sequence[Any]) -> np.ndarray:
        """Row of each raw user id in the run's training data (-1 for users it has not seen)."""
        if self._users is None or not len(user_ids):
            return np.full(len(user_ids), -1, dtype=np.int64)
        return self._users.rows(user_ids)

    def rank(self, requests: Sequence[RankRequest], *, explain: bool = False, top: int | None = None) -> list[Ranking]:
        """Rank every request's candidates (its retriever's plus the other sources'), best first; ``top`` cuts each
        list (and bounds the explanation work)."""
        n = len(requests)
        if n == 0:
            return []
        cases = self._cases(requests)
        given = np.full((n, self.n_items), -np.inf, dtype=np.float32)
        for r, q in enumerate(requests):
            cand = np.asarray(q.candidates, dtype=np.int64)
            if len(cand) and (cand.min() < 0 or cand.max() >= self.n_items):
                raise RecsysError(f"request {r}: candidate rows must be within the ranking run's catalogue of {self.n_items} items")
            given[r, cand[: self.depth]] = np.asarray(q.scores, dtype=np.float32)[: self.depth]
        frame = self.ranker.rank_frame(cases, given={self.retriever_source: given})
        # best first per case (ties by item), then the top rows: numpy on the few columns read (no frame-wide gather)
        case, item, score = frame["case"].to_numpy(), frame["item"].to_numpy(), frame["score"].to_numpy()
        order = np.lexsort((item, -score, case))
        rank = np.arange(1, len(order) + 1) - np.searchsorted(case[order], case[order], side="left")
        if top is not None:
            order, rank = order[rank <= top], rank[rank <= top]
        explained = None
        if explain:
            from recsys.ltr.explain import explain_ranked

            ranked = frame[order].hstack([pl.Series("rank", rank, dtype=pl.Int64)])
            explained = explain_ranked(self.ranker, cases, ranked, verb=self.verb)
        rank_cols = [f"{s}_rank" for s in self.source_names]
        proposed = np.column_stack([~np.isnan(frame[c].to_numpy()[order]) for c in rank_cols])  # nulls -> NaN
        bounds = np.searchsorted(case[order], np.arange(n + 1))
        items, scores = item[order], score[order]
        retrieval = frame[f"{self.retriever_source}_score"].to_numpy()[order].astype(np.float32)  # nulls -> NaN
        out = []
        for r in range(n):
            lo, hi = bounds[r], bounds[r + 1]
            ranking = Ranking(
                items[lo:hi].astype(np.int64), scores[lo:hi].astype(np.float32), retrieval[lo:hi],
                [[s for s, p in zip(self.source_names, row) if p] for row in proposed[lo:hi]],
            )  # fmt: skip
            if explained is not None:
                ranking.reasons = explained["reasons"][lo:hi].to_list()
                ranking.contributions = [json.loads(c) for c in explained["contributions"][lo:hi].to_list()]
            out.append(ranking)
        return out

    def _cases(self, requests: Sequence[RankRequest]) -> Cases:
        n = len(requests)
        hist = _sequences([np.asarray(q.history, dtype=np.int32) for q in requests])
        excl = _sequences(
            [np.unique(np.concatenate([np.asarray(q.history, dtype=np.int32), np.asarray(q.exclude if q.exclude is not None else [], dtype=np.int32)])) for q in requests]
        )
        contexts = [q.context for q in requests]
        if all(c is None for c in contexts):
            context = None
        elif any(c is None for c in contexts):
            raise RecsysError("either every request of a batch carries a context frame or none does")
        else:
            context = pl.concat(contexts, how="diagonal_relaxed")
        users = np.asarray([q.user for q in requests], dtype=np.int64)
        return Cases(users, hist, np.zeros(n, dtype=np.int32), excl, context, None)


class _WithAddedItems:
    """A source fitted on the run's catalogue of ``run_items`` items, over a catalogue with items added after it:
    it cannot score them (``-inf``: not proposed, score missing), and reads only the histories' run items."""

    def __init__(self, inner: Any, run_items: int) -> None:
        self.inner, self.run_items, self.name = inner, run_items, getattr(inner, "name", "source")
        self.n_items = run_items

    def score(self, cases: Cases) -> np.ndarray:
        known = Cases(cases.users, self._known(cases.history), cases.targets, self._known(cases.exclude), cases.context, cases.ratings)
        s = np.asarray(self.inner.score(known), dtype=np.float32)
        return np.pad(s, ((0, 0), (0, self.n_items - s.shape[1])), constant_values=-np.inf)

    def params_without_validation(self) -> dict[str, Any]:
        return self.inner.params_without_validation()

    def _known(self, seq: Sequences) -> Sequences:
        """``seq`` without the added items (rows from ``run_items`` on); itself when it has none."""
        if not len(seq.items) or seq.items.max() < self.run_items:
            return seq
        keep = seq.items < self.run_items
        rows = np.repeat(np.arange(len(seq.indptr) - 1), np.diff(seq.indptr))
        indptr = np.zeros(len(seq.indptr), dtype=np.int64)
        np.cumsum(np.bincount(rows[keep], minlength=len(seq.indptr) - 1), out=indptr[1:])
        return Sequences(indptr, seq.items[keep])


def _extend_cross_encoder(model: Any, items: pl.DataFrame) -> None:
    """Append ``items``' text vectors to a cross-encoder's catalogue (it scores items by their text)."""
    from recsys.reranker.model import ITEM

    texts = model.render_items(items)
    model.item_vectors_ = np.concatenate([model.item_vectors_, model.encode(texts, ITEM)])
    if getattr(model, "item_texts_", None) is not None:
        model.item_texts_ = [*model.item_texts_, *texts]
    if getattr(model, "history_texts_", None) is not None:
        model.history_texts_ = [*model.history_texts_, *model.history_texts(items)]


def _dataset_source(path: str | None) -> dict[str, Any] | None:
    """The ``source`` of the dataset manifest at ``path`` (None when it is gone or unreadable)."""
    if not path:
        return None
    try:
        return read_manifest(Path(path)).get("source")
    except (RecsysError, OSError, ValueError):
        return None


def _sequences(rows: Sequence[np.ndarray]) -> Sequences:
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(r) for r in rows], out=indptr[1:])
    items = np.concatenate(rows).astype(np.int32) if len(rows) else np.zeros(0, dtype=np.int32)
    return Sequences(indptr, items)


def full_scores(rankings: Sequence[Ranking], retriever_scores: np.ndarray) -> np.ndarray:
    """(requests, items) float32 scores of the whole catalogue: each ranking's items first, in its order, then every
    other item in retriever order (values are positions, exact in float32). The harness view of ``rank``."""
    n_cases, n = retriever_scores.shape
    order = np.argsort(np.argsort(-np.nan_to_num(retriever_scores, neginf=-1e30), axis=1, kind="stable"), axis=1)
    out = (n - order).astype(np.float32)
    for r, ranking in enumerate(rankings):
        out[r, ranking.items] = 2 * n - np.arange(len(ranking.items), dtype=np.float32)
    return out


__all__ = ["RankRequest", "Ranking", "RankingStage", "full_scores"]
