"""The rerank stage: a trained cross-encoder bound to one catalogue, behind ``retrieve --rerank``, batch scoring
and serving.

The stage renders every item's text (and the short history texts) once at load, so a request only renders its
user text; candidates and histories are raw item ids, so items added to the index after the dataset (``index
add-items`` keeps their fields in the index) rerank like any other. Loading checks that the reranker was trained
on candidates of the same retriever model as the index (``ManifestMismatchError`` otherwise).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recsys.context import context_frame
from recsys.data import schema as S
from recsys.data.dataset import Dataset
from recsys.errors import ManifestMismatchError, RecsysError
from recsys.manifest import write_parquet_atomic
from recsys.reranker.run import load_run
from recsys.service.histories import UserHistories

#: inference options of the cross-encoder (see ``recsys.reranker.fast``); ``auto`` = ``onnx`` when onnxruntime is
#: installed (the same scores as torch fp32, faster), else ``fp32``. int8 is not the default: it reorders the top 10
#: (docs/experiments/int8-study.md, docs/performance.md)
INFERENCE_OPTIONS = ("auto", "fp32", "bf16", "onnx", "onnx-int8")


def resolve_inference(option: str) -> str:
    """``auto`` -> ``onnx`` when onnxruntime is importable, else ``fp32``; other options unchanged."""
    if option != "auto":
        return option
    from recsys.onnx import onnx_available

    return "onnx" if onnx_available()[0] else "fp32"


class RerankStage:
    """Score (user, candidate) pairs with a cross-encoder; ``depth`` = how many retrieved candidates get reranked."""

    def __init__(self, reranker: Any, manifest: Mapping[str, Any], items: pl.DataFrame, *, depth: int | None = None, run_dir: Path | str | None = None) -> None:
        self.reranker = reranker
        self.manifest = dict(manifest)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.depth = int(depth if depth is not None else reranker.args.candidates)
        if self.depth <= 0:
            raise RecsysError(f"rerank depth must be positive, got {self.depth}")
        self.item_ids = items[S.ITEM_ID]
        self._rows = pl.DataFrame({S.ITEM_ID: self.item_ids, "__row": np.arange(items.height, dtype=np.int64)})
        self.item_texts = reranker.render_items(items)
        self.history_texts = reranker.history_texts(items)
        self.titles = items["title"].cast(pl.String).to_list() if "title" in items.columns else None
        self._lock = threading.Lock()  # the cross-encoder's Rust tokenizer is not thread-safe (concurrent serving requests)

    @classmethod
    def open(
        cls,
        run_dir: Path | str,
        items: pl.DataFrame,
        *,
        retriever_fingerprint: str | None = None,
        inference: str = "auto",
        depth: int | None = None,
    ) -> "RerankStage":
        """Load a ``recsys train reranker`` run for the catalogue ``items``; refuse a reranker trained with another retriever."""
        if inference not in INFERENCE_OPTIONS and not inference.startswith("onnx-int8:"):
            raise RecsysError(f"reranker inference must be one of {', '.join(INFERENCE_OPTIONS)} (or onnx-int8:VARIANT), not {inference!r}")
        inference = resolve_inference(inference)
        reranker, manifest = load_run(run_dir)
        trained_with = manifest.get("retriever_fingerprint")
        if retriever_fingerprint and trained_with and trained_with != retriever_fingerprint:
            raise ManifestMismatchError(
                f"reranker {run_dir} was trained on candidates of retriever model {trained_with}, but the index is model "
                f"{retriever_fingerprint}: retrain it with `recsys train reranker DATASET --retriever RUN`"
            )
        if inference != "fp32":
            reranker.use(inference)
        return cls(reranker, manifest, items, depth=depth, run_dir=run_dir)

    @property
    def fingerprint(self) -> str:
        return str(self.manifest.get("fingerprint", "unknown"))

    @property
    def retrieval_weight(self) -> float:
        return self.reranker.retrieval_weight

    @property
    def inference(self) -> str:
        return str(self.reranker.inference)

    def rows(self, item_ids: Sequence[Any] | np.ndarray) -> np.ndarray:
        """Text row per raw item id (-1 for an item the stage has no text for)."""
        if len(item_ids) == 0:
            return np.zeros(0, dtype=np.int64)
        q = pl.DataFrame({S.ITEM_ID: pl.Series(list(item_ids) if not isinstance(item_ids, np.ndarray) else item_ids.tolist())})
        q = q.with_columns(pl.col(S.ITEM_ID).cast(self.item_ids.dtype, strict=False))
        return q.join(self._rows, on=S.ITEM_ID, how="left", maintain_order="left")["__row"].fill_null(-1).to_numpy()

    def score(
        self,
        histories: Sequence[Sequence[Any]],
        candidates: Sequence[Sequence[Any]],
        *,
        contexts: Sequence[Mapping[str, Any] | None] | None = None,
        profiles: Sequence[Mapping[str, Any] | None] | None = None,
        batch_size: int = 64,
        retrieval_scores: Sequence[Sequence[float] | np.ndarray] | None = None,
    ) -> list[np.ndarray]:
        """One score array per request, aligned with its candidates (raw item ids, any order); histories are raw ids,
        oldest first. A candidate without text is an error (it cannot be read by the cross-encoder). With
        ``retrieval_scores`` (each candidate's retriever cosine) the scores are the run's fused scores
        (``Reranker.fuse``), which is what every serving path ranks by."""
        hist_rows = [r[r >= 0] for r in (self.rows(h) for h in histories)]
        cand_rows = [self.rows(c) for c in candidates]
        for cand, rows in zip(candidates, cand_rows):
            if (rows < 0).any():
                missing = list(np.asarray(cand, dtype=object)[rows < 0][:3])
                raise RecsysError(f"the reranker has no text for candidate item(s) {missing}: add them with `recsys index add-items`")
        with self._lock:
            return self.reranker.score_candidates(
                hist_rows, cand_rows, self.item_texts, self.history_texts, context=contexts, profiles=profiles, batch_size=batch_size,
                retrieval_scores=retrieval_scores,
            )

    def context_effects(self, history: Sequence[Any], item_id: Any, context: Mapping[str, Any] | None, profile: Mapping[str, Any] | None = None) -> dict[str, float]:
        """{context field: score with the field - score with it blanked} for one recommended item."""
        from recsys.reranker.explain import context_effects

        rows = self.rows(history)
        row = int(self.rows([item_id])[0])
        if row < 0:
            return {}
        with self._lock:
            return context_effects(self.reranker, rows[rows >= 0], self.item_texts[row], self.history_texts, context, profile)


def items_with_added(items: pl.DataFrame, added: Mapping[str, Mapping[str, Any]] | None) -> pl.DataFrame:
    """The dataset's items plus the fields of items added to an index after it (``index add-items``); an added
    item's fields replace the dataset's when both know it (a changed item)."""
    if not added:
        return items
    rows = [{S.ITEM_ID: k, **dict(v)} for k, v in added.items()]
    extra = pl.DataFrame(rows, infer_schema_length=None)
    extra = extra.with_columns(pl.col(S.ITEM_ID).cast(items.schema[S.ITEM_ID], strict=False))
    extra = extra.select([c for c in extra.columns if c in items.columns])
    casts = {c: items.schema[c] for c in extra.columns}
    try:
        extra = extra.cast(casts, strict=False)
    except pl.exceptions.InvalidOperationError:
        extra = extra.select(S.ITEM_ID, *[c for c in extra.columns if c != S.ITEM_ID and extra.schema[c] == items.schema[c]])
    kept = items.join(extra.select(S.ITEM_ID), on=S.ITEM_ID, how="anti")
    return pl.concat([kept, extra], how="diagonal_relaxed")


def _read_candidates(path: Path) -> pl.DataFrame:
    if path.is_dir():
        parts = sorted(path.glob("part-*.parquet"))
        if not parts:
            raise RecsysError(f"{path} holds no part-*.parquet candidate files")
        frame = pl.read_parquet(parts)
    elif path.exists():
        frame = pl.read_parquet(path)
    else:
        raise RecsysError(f"candidates {path} do not exist")
    missing = [c for c in (S.USER_ID, S.ITEM_ID) if c not in frame.columns]
    if missing:
        raise RecsysError(f"candidates {path} lack column(s) {', '.join(missing)}")
    return frame


def rerank_candidates(
    run_dir: Path | str,
    candidates: Path | str,
    out: Path | str,
    *,
    dataset: Path | str | None = None,
    context: Mapping[str, Any] | None = None,
    top: int | None = None,
    inference: str = "fp32",
    explain: bool = False,
    batch_size: int = 64,
) -> dict[str, Any]:
    """``recsys rerank``: score every (user, candidate item) row, reorder per user by ``rerank_score`` and write
    parquet (``rank`` = new rank, ``retrieval_rank`` = the old one). The request context is ``context`` when given,
    else the candidates' own ``timestamp``/context columns when present, else now. With ``explain`` a JSON
    ``reasons`` column holds the supporting history items and context effects."""
    import time

    start = time.perf_counter()
    reranker, manifest = load_run(run_dir)
    if inference != "fp32":
        reranker.use(inference)
    data_dir = dataset or (manifest.get("dataset") or {}).get("path")
    if not data_dir:
        raise RecsysError(f"reranker run {run_dir} does not record its dataset; pass --dataset")
    ds = Dataset.load(data_dir)
    frame = _read_candidates(Path(candidates))
    items = ds.items
    catalogue_ids = items[S.ITEM_ID]
    item_texts = reranker.render_items(items)
    hist_texts = reranker.history_texts(items)
    lookup = pl.DataFrame({S.ITEM_ID: catalogue_ids, "__cat": np.arange(len(catalogue_ids), dtype=np.int64)})
    frame = frame.with_row_index("__row").join(
        lookup.with_columns(pl.col(S.ITEM_ID).cast(frame.schema[S.ITEM_ID], strict=False)), on=S.ITEM_ID, how="left", maintain_order="left"
    )
    if frame["__cat"].null_count():
        raise RecsysError(f"{frame['__cat'].null_count()} candidate item(s) are not in the dataset's catalogue")
    histories = UserHistories(ds, catalogue_ids)
    groups = frame.partition_by(S.USER_ID, maintain_order=True, as_dict=False)
    users = pl.Series(S.USER_ID, [g[S.USER_ID][0] for g in groups], dtype=frame.schema[S.USER_ID])
    rows = histories.rows(users)
    profiles_frame = ds.users
    prof_lookup: dict[Any, dict[str, Any]] = {}
    if profiles_frame is not None:
        prof_lookup = {r[S.USER_ID]: r for r in profiles_frame.to_dicts()}
    ctx_cols = list(ds.context_columns)
    own_ctx = [c for c in (S.TIMESTAMP, *ctx_cols) if c in frame.columns]
    fixed = None
    if context is not None or not own_ctx:
        fixed = context_frame(context, ctx_cols).to_dicts()[0]
    item_vectors = None
    if explain:
        from recsys.retriever.run import load_run as load_retriever

        rdir = manifest.get("retriever_run")
        if rdir and Path(rdir).is_dir():
            retriever, _, _ = load_retriever(rdir)
            item_vectors = retriever.encode_items()
    scores_all = np.zeros(frame.height, dtype=np.float32)
    reasons_all: list[str | None] = [None] * frame.height
    hist_list, cand_list, ctx_list, prof_list = [], [], [], []
    for user, row, g in zip(users.to_list(), rows, groups):
        h = histories.history(int(row))[0] if row >= 0 else np.zeros(0, dtype=np.int32)
        hist_list.append(h)
        cand_list.append(g["__cat"].to_numpy())
        ctx_list.append(fixed if fixed is not None else g.select(own_ctx).row(0, named=True))
        prof_list.append({k: v for k, v in prof_lookup.get(user, {}).items() if k != S.USER_ID} or None)
    # a retrieval_score column (batch-score output) is fused with the logits by the run's retrieval weight
    fused = [g["retrieval_score"].cast(pl.Float32).to_numpy() for g in groups] if "retrieval_score" in frame.columns else None
    scores = reranker.score_candidates(
        hist_list, cand_list, item_texts, hist_texts, context=ctx_list, profiles=prof_list, batch_size=batch_size, retrieval_scores=fused
    )
    for g, s in zip(groups, scores):
        scores_all[g["__row"].to_numpy()] = s
    if explain:
        import json as _json

        from recsys.reranker.explain import explain as explain_one

        titles = items["title"].cast(pl.String).to_list() if "title" in items.columns else None
        for g, h, c, p in zip(groups, hist_list, ctx_list, prof_list):
            for r, i in zip(g["__row"].to_list(), g["__cat"].to_list()):
                e = explain_one(reranker, int(i), h, item_vectors=item_vectors, item_texts=item_texts, history_texts=hist_texts, context=c, profile=p, item_ids=catalogue_ids.to_list(), titles=titles)
                reasons_all[r] = _json.dumps(e, default=str)
    result = frame.with_columns(rerank_score=pl.Series(scores_all, dtype=pl.Float32))
    if explain:
        result = result.with_columns(reasons=pl.Series(reasons_all, dtype=pl.String))
    if "rank" in result.columns:
        result = result.rename({"rank": "retrieval_rank"})
    result = result.sort([S.USER_ID, "rerank_score", "__row"], descending=[False, True, False], maintain_order=True)
    result = result.with_columns(rank=pl.int_range(1, pl.len() + 1).over(S.USER_ID).cast(pl.Int32))
    if top is not None:
        result = result.filter(pl.col("rank") <= top)
    # users keep their first-seen order
    order = pl.DataFrame({S.USER_ID: users, "__u": np.arange(len(users))})
    result = result.join(order, on=S.USER_ID, how="left").sort(["__u", "rank"]).drop(["__u", "__row", "__cat"])
    out = Path(out)
    write_parquet_atomic(out, result)
    seconds = time.perf_counter() - start
    return {
        "out": str(out), "users": len(users), "rows": int(frame.height), "written": int(result.height), "inference": inference,
        "seconds": round(seconds, 1), "pairs_per_second": round(frame.height / seconds, 1) if seconds > 0 else None,
        "reranker_run": str(run_dir), "dataset": str(data_dir),
    }


__all__ = ["INFERENCE_OPTIONS", "RerankStage", "items_with_added", "rerank_candidates", "resolve_inference"]
