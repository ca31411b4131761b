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

from recsys.data import schema as S
from recsys.errors import ManifestMismatchError, RecsysError

#: inference options of the cross-encoder (see ``recsys.reranker.fast``); ``auto`` = ``onnx`` when onnxruntime is
#: installed (the same scores as torch fp32, 1.9-3.4x faster here), else ``fp32``. int8 is not the default: on the
#: rerankers trained here it reorders the top 10 (overlap < 0.9)
INFERENCE_OPTIONS = ("auto", "fp32", "bf16", "onnx", "onnx-int8")


def resolve_inference(option: str) -> str:
    """``auto`` -> ``onnx`` when onnxruntime is importable, else ``fp32``; other options unchanged."""
    if option != "auto":
        return option
    from recsys.onnx_inference import onnx_available

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
        from recsys.reranker.model import load_run

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


__all__ = ["INFERENCE_OPTIONS", "RerankStage", "items_with_added", "resolve_inference"]
