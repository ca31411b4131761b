"""Retrieval as a service object: a loaded retriever run, its FAISS index and the users' histories.

One object behind ``recsys retrieve``, nightly batch scoring and online serving, so all three encode users,
filter seen items and rank the same way (``recsys.service.ranking.RankingStage``). Loading checks that the index
was built by this exact run, and that an attached ranking run was built on this run and dataset (fingerprints).
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
from recsys.service.ids import IdLookup


@dataclass
class Recommendation:
    """``score`` is what the list is ordered by: the ranker's score when ranked (``rerank_score``), else the retrieval
    cosine; ``retrieval_score`` is None for an item only another candidate source proposed."""

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

    def __init__(self, index: ItemIndex, run_dir: Path, dataset: Dataset, *, histories: bool = True, ranker: Any = None) -> None:
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
        self._cat_lookup = IdLookup(self.catalogue_ids)
        self._titles = self._title_table()
        self.ranker = ranker  # a recsys.service.ranking.RankingStage, or None (retrieve only)
        # the ranker's catalogue: the run's, then items added to the index after it (``attach_ranker``)
        self.rank_ids, self._rank_lookup = self.catalogue_ids, self._cat_lookup
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
        rerank_depth: int | None = None,
        histories: bool = True,
        verb: str | None = None,
    ) -> "RetrievalService":
        """Load the index, its retriever run and dataset (recorded in the index unless given); with ``rerank_run``, also
        the ranking run (``recsys train ranker``) that ranks the retriever's top ``rerank_depth`` (default: the run's
        depth) with its other candidate sources.

        ``histories=False`` skips the interactions entirely (batch scoring reads each chunk's histories lazily);
        ``recommend`` for stored users then needs them, so retrieve and serve keep the default. ``verb``: what an
        interaction is in the ranker's reasons (default: from the dataset, ``recsys.ltr.explain.interaction_verb``)."""
        index = ItemIndex.load(index_dir, device=device)
        run = run_dir or index.metadata.get("run")
        data = dataset_dir or index.metadata.get("dataset")
        if not run:
            raise RecsysError(f"index {index_dir} does not record its retriever run; pass --run")
        if not data:
            raise RecsysError(f"index {index_dir} does not record its dataset; pass --dataset")
        service = cls(index, Path(run), Dataset.load(data, with_interactions=histories), histories=histories)
        if rerank_run is not None:
            service.attach_ranker(rerank_run, depth=rerank_depth, verb=verb)
        return service

    def attach_ranker(self, run_dir: Path | str, *, depth: int | None = None, verb: str | None = None) -> Any:
        """Load a ranking run built on this service's retriever model and dataset (refused otherwise) and rank with it;
        ``depth`` lowers how many retrieved items it reads (never above the depth it was trained with); ``verb``
        overrides the dataset's in the reasons. Items added to the index after the run (``recsys index add-items``)
        are added to the stage (``RankingStage.add_items``), so they are ranked among the others."""
        from recsys.ltr.explain import interaction_verb
        from recsys.service.ranking import RankingStage

        stage = RankingStage.open(
            run_dir, retriever_fingerprint=self.run_manifest["fingerprint"], dataset_fingerprint=self.dataset.fingerprint,
            verb=interaction_verb(self.dataset.manifest.get("source"), override=verb),
        )  # fmt: skip
        if depth is not None:
            if not 1 <= depth <= stage.depth:
                raise RecsysError(f"rank depth must be 1-{stage.depth} (the depth ranking run {run_dir} was trained with), got {depth}")
            stage.depth = int(depth)
        added = self.added_items()
        stage.add_items(added)
        self.rank_ids = pl.concat([self.catalogue_ids, added[S.ITEM_ID].cast(self.catalogue_ids.dtype)])
        self._rank_lookup = IdLookup(self.rank_ids)
        self.ranker = stage
        return stage

    def added_items(self) -> pl.DataFrame:
        """Items in the index that the retriever run's catalogue lacks (added by ``recsys index add-items``), with
        the fields the index recorded for them, in the dataset's item columns (missing ones null)."""
        items = self.dataset.items
        recorded = self.index.metadata.get("added_items", {})
        if not recorded:
            return items.clear()
        ids = [self.dataset.item_id_from_text(k) if isinstance(k, str) else k for k in recorded]
        fields = list(recorded.values())
        known = set(self.catalogue_ids.to_list())
        keep = [j for j, i in enumerate(ids) if i not in known and i in self.index]
        values = {c: [ids[j] if c == S.ITEM_ID else fields[j].get(c) for j in keep] for c in items.columns}
        return pl.DataFrame([pl.Series(c, values[c], dtype=t, strict=False) for c, t in items.schema.items()])

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
        rows = self._cat_lookup.rows(item_ids)
        return rows[rows >= 0].astype(np.int32)

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

        With a ranking run attached (``rerank`` defaults to True then), the retriever's top ``depth`` (at most the
        run's depth) go to ``RankingStage.rank`` with the request context, which adds the other sources' candidates
        and orders them all; with k above what it ranked, the rest follow in retrieval order (``rerank_score`` None).
        ``explain`` adds ``reasons``: the ranker's sentences and feature contributions when ranked, and the history
        items that support each item.
        """
        if k <= 0:
            raise RecsysError(f"k must be positive, got {k}")
        if rerank is None:
            rerank = self.ranker is not None
        if rerank and self.ranker is None:
            raise RecsysError("no ranking run is loaded: pass --rerank RANKING_RUN (a `recsys train ranker` run)")
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
        depth = min(int(depth or self.ranker.depth), self.ranker.depth) if rerank else k
        scores, ids = self.index.search(vec, max(k, depth), exclude=[np.asarray(seen, dtype=object) if seen else None])
        finite = np.isfinite(scores[0])
        items = [i.item() if hasattr(i, "item") else i for i in ids[0][finite]]
        retrieval = scores[0][finite].astype(float)
        ranked: list[Recommendation] = []
        if rerank:
            seen_rows = self._catalogue_rows(seen)
            ranking = self.rank_requests(
                [hist_idx], [items[:depth]], [retrieval[:depth]], full_ctx, exclude=[seen_rows[seen_rows >= 0]],
                users=[user_id], explain=explain, top=k,
            )[0]  # fmt: skip
            ids_ranked = self.rank_ids.gather(ranking.items).to_list() if len(ranking.items) else []
            for j, (item, score, cos) in enumerate(zip(ids_ranked, ranking.scores, ranking.retrieval)):
                reasons: dict[str, Any] = {"sources": ranking.sources[j]}
                if ranking.reasons is not None:
                    reasons.update(ranker=ranking.reasons[j], contributions=ranking.contributions[j])
                ranked.append(Recommendation(
                    j + 1, item, float(score), self._titles.get(item), reasons, None if np.isnan(cos) else float(cos), float(score)
                ))  # fmt: skip
        have = {r.item_id for r in ranked}
        for item, cos in zip(items, retrieval):  # retrieval order below (or without) the ranked list
            if len(ranked) >= k:
                break
            if item not in have:
                ranked.append(Recommendation(len(ranked) + 1, item, float(cos), self._titles.get(item), retrieval_score=float(cos)))
        if explain and ranked:
            for rec, sup in zip(ranked, self.supporting_history(hist_ids, [r.item_id for r in ranked])):
                rec.reasons["history"] = sup
        return ranked

    def rank_requests(
        self,
        histories: Sequence[np.ndarray],
        candidates: Sequence[Sequence[Any]],
        retrieval: Sequence[np.ndarray],
        contexts: pl.DataFrame | None,
        *,
        exclude: Sequence[np.ndarray] | None = None,
        users: Sequence[Any] | None = None,
        explain: bool = False,
        top: int | None = None,
    ) -> list[Any]:
        """``RankingStage.rank`` for requests in raw ids: histories as catalogue rows, each request's retrieved raw item
        ids with their scores (items the ranker's catalogue lacks dropped; items added to the index after the ranking
        run are in it), one context row per request; ranked items are rows of ``rank_ids``. Shared by ``recommend``
        and batch scoring."""
        from recsys.service.ranking import RankRequest

        rows = self.ranker.user_rows(list(users)) if users is not None else np.full(len(histories), -1)
        requests = []
        for r, (h, cand, cos) in enumerate(zip(histories, candidates, retrieval)):
            cat = self._catalogue_rows(cand)
            keep = cat >= 0
            requests.append(RankRequest(
                np.asarray(h, dtype=np.int64), cat[keep], np.asarray(cos, dtype=np.float32)[keep],
                contexts[r : r + 1] if contexts is not None else None, exclude[r] if exclude is not None else None, int(rows[r]),
            ))  # fmt: skip
        return self.ranker.rank(requests, explain=explain, top=top)

    def _catalogue_rows(self, item_ids: Sequence[Any]) -> np.ndarray:
        """Row in the ranker's catalogue (``rank_ids``) per raw item id, -1 for ids it lacks (order and length kept)."""
        return self._rank_lookup.rows(item_ids)
