"""Retrieval as a service object: a loaded retriever run, its FAISS index and the users' histories.

One object behind ``recsys retrieve``, nightly batch scoring and online serving, so all three encode users and
filter seen items the same way. Loading checks that the index was built by this exact run (fingerprints).
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
from recsys.evaluation.split import Sequences
from recsys.index.faiss_index import ItemIndex


@dataclass
class Recommendation:
    rank: int
    item_id: Any
    score: float
    title: str | None = None
    reasons: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class UserHistories:
    """Every user's interactions in time order (stable over source rows), as catalogue indices and raw ids."""

    def __init__(self, dataset: Dataset, catalogue_ids: pl.Series) -> None:
        if not dataset.interactions_loaded:
            raise RecsysError(f"dataset {dataset.path} was loaded without its interactions; load it in full to build histories")
        inter = dataset.interactions
        events = inter.select(S.USER_ID, S.ITEM_ID, S.TIMESTAMP).with_row_index("__src").sort([S.USER_ID, S.TIMESTAMP, "__src"])
        self._build(events.select(S.USER_ID, S.ITEM_ID), catalogue_ids, inter.schema[S.USER_ID])

    @classmethod
    def from_sorted(cls, events: pl.DataFrame, catalogue_ids: pl.Series, user_dtype: pl.DataType) -> "UserHistories":
        """Histories from (user_id, item_id) rows already in history order (user, time, source row), e.g. one chunk
        of users read from a prepared file: the same indexing as the full build, so both give identical histories."""
        out = cls.__new__(cls)
        out._build(events, catalogue_ids, user_dtype)
        return out

    def _build(self, events: pl.DataFrame, catalogue_ids: pl.Series, user_dtype: pl.DataType) -> None:
        id_type = events.schema[S.ITEM_ID]
        lookup = pl.DataFrame({S.ITEM_ID: catalogue_ids.cast(id_type, strict=False), "__cat": np.arange(len(catalogue_ids), dtype=np.int32)})
        events = events.select(S.USER_ID, S.ITEM_ID).join(lookup, on=S.ITEM_ID, how="left", maintain_order="left")
        users = events.group_by(S.USER_ID, maintain_order=True).len()
        self.user_ids = users[S.USER_ID]
        self._row = pl.DataFrame({S.USER_ID: self.user_ids, "__row": np.arange(users.height)})
        indptr = np.zeros(users.height + 1, dtype=np.int64)
        np.cumsum(users["len"].to_numpy(), out=indptr[1:])
        self.catalogue = Sequences(indptr, events["__cat"].fill_null(-1).to_numpy().astype(np.int32))
        self.item_ids = events[S.ITEM_ID].to_numpy()
        self.user_dtype = user_dtype

    def rows(self, user_ids: Sequence[Any] | pl.Series) -> np.ndarray:
        """Row per user id, -1 for unknown users."""
        q = pl.DataFrame({S.USER_ID: pl.Series(list(user_ids) if not isinstance(user_ids, pl.Series) else user_ids).cast(self.user_dtype, strict=False)})
        return q.join(self._row, on=S.USER_ID, how="left", maintain_order="left")["__row"].fill_null(-1).to_numpy()

    def history(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """(catalogue indices the model knows, every seen raw item id) for one user row."""
        lo, hi = self.catalogue.indptr[row], self.catalogue.indptr[row + 1]
        cat = self.catalogue.items[lo:hi]
        return cat[cat >= 0], self.item_ids[lo:hi]


class RetrievalService:
    """Retrieve top-k items for known users, new users (history and/or profile) and any context."""

    def __init__(self, index: ItemIndex, run_dir: Path, dataset: Dataset, *, histories: bool = True) -> None:
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
        # batch scoring opens the service without histories and reads them per chunk (recsys.histories)
        self.histories: UserHistories | None = UserHistories(dataset, self.catalogue_ids) if histories else None
        self._cat_lookup = pl.DataFrame({S.ITEM_ID: self.catalogue_ids, "__cat": np.arange(len(self.catalogue_ids), dtype=np.int32)})
        self._titles = self._title_table()

    @classmethod
    def open(
        cls,
        index_dir: Path | str,
        *,
        dataset_dir: Path | str | None = None,
        run_dir: Path | str | None = None,
        device: str = "auto",
        histories: bool = True,
    ) -> "RetrievalService":
        """Load the index, its run and dataset. ``histories=False`` skips the interactions entirely (batch scoring
        reads each chunk's histories lazily); ``recommend`` for stored users then needs them, so retrieve and
        serve keep the default."""
        index = ItemIndex.load(index_dir, device=device)
        run = run_dir or index.metadata.get("run")
        data = dataset_dir or index.metadata.get("dataset")
        if not run:
            raise RecsysError(f"index {index_dir} does not record its retriever run; pass --run")
        if not data:
            raise RecsysError(f"index {index_dir} does not record its dataset; pass --dataset")
        return cls(index, Path(run), Dataset.load(data, with_interactions=histories), histories=histories)

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
            vectors[cold] = self.model.encode_items(texts)
        return vectors

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
    ) -> list[Recommendation]:
        """Top-k for one request. A known ``user_id`` brings its stored history; ``history``/``profile`` serve new users."""
        if k <= 0:
            raise RecsysError(f"k must be positive, got {k}")
        seen: list[Any] = list(exclude or [])
        hist_idx = np.zeros(0, dtype=np.int32)
        if user_id is not None:
            if self.histories is None:
                raise RecsysError("this retrieval service was opened without user histories (histories=False)")
            row = int(self.histories.rows([user_id])[0])
            if row >= 0:
                hist_idx, seen_ids = self.histories.history(row)
                seen += seen_ids.tolist()
            elif history is None and profile is None:
                raise RecsysError(f"unknown user {user_id!r}: not in {self.dataset.path}; pass --history and/or --profile for a new user")
        if history is not None:
            hist_idx = np.concatenate([hist_idx, self.to_catalogue(list(history))]).astype(np.int32)
            seen += list(history)
        if user_id is None and history is None and profile is None:
            raise RecsysError("give a user id, a history or a profile")
        prof = {"text": profile} if isinstance(profile, str) else (dict(profile) if profile else None)
        ctx = context_frame(context, self.known_context_keys)[[S.TIMESTAMP, *self.context_columns]]
        vec = self.user_vectors([hist_idx], ctx, [prof])
        scores, ids = self.index.search(vec, k, exclude=[np.asarray(seen, dtype=object) if seen else None])
        out = []
        for r, (s, i) in enumerate(zip(scores[0], ids[0])):
            if not np.isfinite(s):
                break
            item = i.item() if hasattr(i, "item") else i
            out.append(Recommendation(r + 1, item, float(s), self._titles.get(item)))
        return out
