"""Retrieval as a service object: a loaded retriever run, its FAISS index and the users' histories.

One object behind ``recsys retrieve``, nightly batch scoring and online serving, so all three encode users,
filter seen items and rerank the same way. Loading checks that the index was built by this exact run, and that an
attached reranker was trained on this run's candidates (fingerprints).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recsys.context import context_frame
from recsys.data import schema as S
from recsys.data.dataset import Dataset
from recsys.errors import ManifestMismatchError, RecsysError
from recsys.index import ItemIndex
from recsys.service.histories import UserHistories


@dataclass
class Recommendation:
    """``score`` is what the list is ordered by: the rerank score when reranked, else the retrieval cosine."""

    rank: int
    item_id: Any
    score: float
    title: str | None = None
    reasons: dict[str, Any] = field(default_factory=dict)
    retrieval_score: float | None = None
    rerank_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RetrievalService:
    """Retrieve top-k items for known users, new users (history and/or profile) and any context."""

    def __init__(self, index: ItemIndex, run_dir: Path, dataset: Dataset, *, histories: bool = True, reranker: Any = None) -> None:
        from recsys.retriever.run import load_run

        self.index = index
        self.model, self.catalogue_ids, self.run_manifest = load_run(run_dir)
        if self.run_manifest["fingerprint"] != index.model_fingerprint:
            raise ManifestMismatchError(
                f"index {index.path} was built by model {index.model_fingerprint}, but run {run_dir} is model "
                f"{self.run_manifest['fingerprint']}: rebuild the index with `recsys build-index {run_dir} ...`"
            )
        self.run_dir = Path(run_dir)
        self.dataset = dataset
        # batch scoring opens the service without histories and reads them per chunk (recsys.service.histories)
        self.histories: UserHistories | None = UserHistories(dataset, self.catalogue_ids) if histories else None
        self._cat_lookup = pl.DataFrame({S.ITEM_ID: self.catalogue_ids, "__cat": np.arange(len(self.catalogue_ids), dtype=np.int32)})
        self._titles = self._title_table()
        self.reranker = reranker  # a recsys.service.rerank.RerankStage, or None (retrieve only)
        self.cooccurrence: Any = None  # a recsys.service.cooccurrence.CooccurrenceSource merged into the rerank candidates
        self._profiles = None
        if dataset.users is not None:
            self._profiles = dataset.users.with_columns(pl.col(S.USER_ID).cast(dataset.interactions.schema[S.USER_ID], strict=False))

    @classmethod
    def open(
        cls,
        index_dir: Path | str,
        *,
        dataset_dir: Path | str | None = None,
        run_dir: Path | str | None = None,
        device: str = "auto",
        rerank_run: Path | str | None = None,
        rerank_inference: str = "auto",
        rerank_depth: int | None = None,
        cooccurrence: Path | str | None = None,
        histories: bool = True,
    ) -> "RetrievalService":
        """Load the index, its retriever run and dataset (recorded in the index unless given); with ``rerank_run``,
        also the cross-encoder that reranks the top ``rerank_depth`` candidates of every request, and with
        ``cooccurrence`` a second candidate source merged with the two-tower's before reranking.

        ``histories=False`` skips the interactions entirely (batch scoring reads each chunk's histories lazily);
        ``recommend`` for stored users then needs them, so retrieve and serve keep the default."""
        index = ItemIndex.load(index_dir, device=device)
        run = run_dir or index.metadata.get("run")
        data = dataset_dir or index.metadata.get("dataset")
        if not run:
            raise RecsysError(f"index {index_dir} does not record its retriever run; pass --run")
        if not data:
            raise RecsysError(f"index {index_dir} does not record its dataset; pass --dataset")
        service = cls(index, Path(run), Dataset.load(data, with_interactions=histories), histories=histories)
        if rerank_run is not None:
            service.attach_reranker(rerank_run, inference=rerank_inference, depth=rerank_depth)
        if cooccurrence is not None:
            service.attach_cooccurrence(cooccurrence)
        return service

    def attach_cooccurrence(self, directory: Path | str) -> Any:
        """Load a co-occurrence source fitted on this service's dataset; reranked requests then read its candidates too."""
        from recsys.service.cooccurrence import CooccurrenceSource

        self.cooccurrence = CooccurrenceSource.load(directory, dataset_fingerprint=self.dataset.fingerprint)
        return self.cooccurrence

    def attach_reranker(self, run_dir: Path | str, *, inference: str = "auto", depth: int | None = None) -> Any:
        """Load a reranker run for this catalogue (the dataset's items plus any added to the index) and use it."""
        from recsys.service.rerank import RerankStage, items_with_added

        items = items_with_added(self.dataset.items, self.index.metadata.get("added_items"))
        self.reranker = RerankStage.open(
            run_dir, items, retriever_fingerprint=self.run_manifest["fingerprint"], inference=inference, depth=depth
        )
        return self.reranker

    # ------------------------------------------------------------------------------------------------ helpers
    def _title_table(self) -> dict[Any, str]:
        items = self.dataset.items
        col = "title" if "title" in items.columns else None
        titles: dict[Any, str] = {}
        if col:
            titles = dict(zip(items[S.ITEM_ID].to_list(), items[col].cast(pl.String).to_list()))
        for k, v in self.index.metadata.get("added_titles", {}).items():
            titles[self.dataset.item_id_from_text(k) if isinstance(k, str) else k] = v
        return titles

    def to_catalogue(self, item_ids: Sequence[Any]) -> np.ndarray:
        """Catalogue indices of raw item ids the model knows (unknown ones dropped, order kept)."""
        if len(item_ids) == 0:
            return np.zeros(0, dtype=np.int32)
        q = pl.DataFrame({S.ITEM_ID: pl.Series(list(item_ids)).cast(self.catalogue_ids.dtype, strict=False)})
        idx = q.join(self._cat_lookup, on=S.ITEM_ID, how="left", maintain_order="left")["__cat"].drop_nulls()
        return idx.to_numpy().astype(np.int32)

    @property
    def context_columns(self) -> list[str]:
        """Context columns the model reads."""
        return list(self.model.context_columns)

    @property
    def known_context_keys(self) -> list[str]:
        """Context the request may carry: the model's columns and the dataset's (the latter may be unused)."""
        return list(dict.fromkeys([*self.model.context_columns, *self.dataset.context_columns]))

    def user_vectors(
        self,
        histories: list[np.ndarray],
        contexts: pl.DataFrame | None,
        profiles: list[Mapping[str, Any] | None] | None = None,
    ) -> np.ndarray:
        """User vectors: the sequence tower over histories; a profile-only user is its profile text in item space."""
        from recsys.text import render_profile

        n = len(histories)
        vectors = np.zeros((n, self.index.dim), dtype=np.float32)
        with_history = [i for i, h in enumerate(histories) if len(h)]
        if with_history:
            ctx = contexts[with_history] if contexts is not None else None
            prof = None
            if profiles is not None and self.model.args.use_profiles:
                prof = [profiles[i] or {} for i in with_history]
            vectors[with_history] = self.model.encode_users([histories[i] for i in with_history], ctx, prof)
        cold = [i for i, h in enumerate(histories) if not len(h)]
        if cold:
            texts = []
            for i in cold:
                p = (profiles[i] if profiles is not None else None) or {}
                text = p.get("text") if isinstance(p.get("text"), str) else render_profile(p, self.model.args.templates)
                if not text:
                    raise RecsysError("a user with no history needs a profile (or pass --history)")
                texts.append(text)
            vectors[cold] = self.model.encode_text_users(texts)
        return vectors

    def profiles(self, user_ids: Sequence[Any]) -> list[dict[str, Any] | None]:
        """Each user's stored profile fields (None for users without a profile row)."""
        if self._profiles is None or not len(user_ids):
            return [None] * len(user_ids)
        q = pl.DataFrame({S.USER_ID: pl.Series(list(user_ids)).cast(self._profiles.schema[S.USER_ID], strict=False)})
        rows = q.with_row_index("__q").join(self._profiles, on=S.USER_ID, how="left", maintain_order="left")
        out: list[dict[str, Any] | None] = []
        fields = [c for c in self._profiles.columns if c != S.USER_ID]
        for row in rows.select(fields).to_dicts():
            kept = {k: v for k, v in row.items() if v is not None}
            out.append(kept or None)
        return out

    def supporting_history(self, history: Sequence[Any], item_ids: Sequence[Any], *, k: int = 3) -> list[list[dict[str, Any]]]:
        """Per item, the ``k`` history items most similar to it (cosine of their index vectors), most similar first."""
        known = [h for h in dict.fromkeys(history) if h in self.index]
        if not known or not len(item_ids):
            return [[] for _ in item_ids]
        sims = self.index.get_vectors(list(item_ids)) @ self.index.get_vectors(known).T
        out = []
        for item, row in zip(item_ids, sims):
            order = [j for j in np.argsort(-row, kind="stable") if known[j] != item][:k]
            out.append([{"item_id": known[j], "title": self._titles.get(known[j]), "similarity": round(float(row[j]), 4)} for j in order])
        return out

    def merge_cooccurrence(
        self, user_vector: np.ndarray, history: list[Any], seen: list[Any], items: list[Any], retrieval: np.ndarray, n: int
    ) -> tuple[list[Any], np.ndarray, list[str]]:
        """Two-tower candidates + the co-occurrence source's top ``n`` not already there (and in the index); every
        candidate's retrieval score is its two-tower cosine, so the list stays comparable. Shared by ``recommend``
        and batch scoring."""
        co_ids, _ = self.cooccurrence.candidates(history, n, exclude=seen)
        have = set(items)
        extra = [i for i in co_ids if i not in have and i in self.index]
        sources = ["two-tower"] * len(items) + ["co-occurrence"] * len(extra)
        if extra:
            cos = self.index.get_vectors(extra) @ user_vector
            both = set(co_ids) & have
            sources = ["both" if i in both else "two-tower" for i in items] + ["co-occurrence"] * len(extra)
            items = items + extra
            retrieval = np.concatenate([retrieval, cos.astype(float)])
        return items, retrieval, sources

    # ------------------------------------------------------------------------------------------------- verbs
    def recommend(
        self,
        user_id: Any | None = None,
        *,
        history: Sequence[Any] | None = None,
        profile: str | Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        k: int = 20,
        exclude: Sequence[Any] | None = None,
        rerank: bool | None = None,
        depth: int | None = None,
        explain: bool = False,
    ) -> list[Recommendation]:
        """Top-k for one request. A known ``user_id`` brings its stored history; ``history``/``profile`` serve new users.

        With a reranker attached (``rerank`` defaults to True then), the top ``depth`` retrieved candidates are
        reranked by the cross-encoder with the request context; with k > depth the rest follow in retrieval order
        (``rerank_score`` None), so the reranking work is bounded by ``depth``, never by k. ``explain`` adds ``reasons``: the history items
        that support each item and, when reranked, how much each context field moved its score.
        """
        if k <= 0:
            raise RecsysError(f"k must be positive, got {k}")
        if rerank is None:
            rerank = self.reranker is not None
        if rerank and self.reranker is None:
            raise RecsysError("no reranker is loaded: pass --rerank RERANK_RUN (a `recsys train reranker` run)")
        seen: list[Any] = list(exclude or [])
        hist_idx = np.zeros(0, dtype=np.int32)
        hist_ids: list[Any] = []
        if user_id is not None:
            if self.histories is None:
                raise RecsysError("this retrieval service was opened without user histories (histories=False)")
            row = self.histories.row(user_id)
            if row >= 0:
                hist_idx, seen_ids = self.histories.history(row)
                hist_ids = seen_ids.tolist()
                seen += hist_ids
            elif history is None and profile is None:
                raise RecsysError(f"unknown user {user_id!r}: not in {self.dataset.path}; pass --history and/or --profile for a new user")
        if history is not None:
            hist_idx = np.concatenate([hist_idx, self.to_catalogue(list(history))]).astype(np.int32)
            hist_ids += list(history)
            seen += list(history)
        if user_id is None and history is None and profile is None:
            raise RecsysError("give a user id, a history or a profile")
        prof = {"text": profile} if isinstance(profile, str) else (dict(profile) if profile else None)
        full_ctx = context_frame(context, self.known_context_keys)
        ctx = full_ctx[[S.TIMESTAMP, *self.context_columns]]
        vec = self.user_vectors([hist_idx], ctx, [prof])
        depth = int(depth or self.reranker.depth) if rerank else k
        scores, ids = self.index.search(vec, max(k, depth), exclude=[np.asarray(seen, dtype=object) if seen else None])
        finite = np.isfinite(scores[0])
        items = [i.item() if hasattr(i, "item") else i for i in ids[0][finite]]
        retrieval = scores[0][finite].astype(float)
        items, tail, retrieval, tail_retrieval = items[:depth], items[depth:], retrieval[:depth], retrieval[depth:]  # tail: below the reranked depth
        sources = ["two-tower"] * len(items)
        if rerank and self.cooccurrence is not None:
            items, retrieval, sources = self.merge_cooccurrence(vec[0], hist_ids, seen, items, retrieval, depth)
        rerank_scores: np.ndarray | None = None
        user_profile: dict[str, Any] | None = None
        request_ctx = full_ctx.row(0, named=True)
        if rerank and items:
            stored = self.profiles([user_id])[0] if user_id is not None else None
            user_profile = {**(stored or {}), **(prof or {})} or None
            rerank_scores = self.reranker.score([hist_ids], [items], contexts=[request_ctx], profiles=[user_profile], retrieval_scores=[retrieval])[0]
            order = np.argsort(-rerank_scores, kind="stable")[:k]
        else:
            order = np.arange(min(k, len(items)))
        if len(order) < k and tail:
            pooled = set(items)
            keep = [j for j, i in enumerate(tail) if i not in pooled][: k - len(order)]
            order = np.concatenate([order, len(items) + np.arange(len(keep))]).astype(np.int64)
            items = items + [tail[j] for j in keep]
            retrieval = np.concatenate([retrieval, tail_retrieval[keep]])
            sources = sources + ["two-tower"] * len(keep)
        out = []
        for r, j in enumerate(order):
            item = items[j]
            rr = float(rerank_scores[j]) if rerank_scores is not None and j < len(rerank_scores) else None
            out.append(Recommendation(r + 1, item, rr if rr is not None else float(retrieval[j]), self._titles.get(item), retrieval_score=float(retrieval[j]), rerank_score=rr))
        if self.cooccurrence is not None and rerank:
            for rec, j in zip(out, order):
                rec.reasons["source"] = sources[j]
        if explain and out:
            support = self.supporting_history(hist_ids, [r.item_id for r in out])
            for rec, sup in zip(out, support):
                rec.reasons["history"] = sup
                if rec.rerank_score is not None:
                    rec.reasons["context"] = self.reranker.context_effects(hist_ids, rec.item_id, request_ctx, user_profile)
        return out
