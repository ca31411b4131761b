"""Inputs of the retriever's towers: text embeddings of items and profiles, request-context indices, padded
histories, and the zero-shot user vector built from item text vectors.

Shared by ``recsys.retriever.model`` (the network and the retriever) and ``recsys.retriever.training``, which
therefore never import each other's way: training depends on these features, the model on both.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
import torch

from recsys.data import schema as S
from recsys.data.types import Sequences
from recsys.manifest import fingerprint_json
from recsys.retriever.config import default_base_model

N_HOURS, N_WEEKDAYS, CONTEXT_HASH_BUCKETS = 24, 7, 64

# ------------------------------------------------------------------------------------- text embeddings

_MODELS: dict[str, Any] = {}
_EMBEDDINGS: dict[tuple[str, str], np.ndarray] = {}
_LOCK = threading.Lock()


def load_text_model(name_or_path: str | None = None) -> Any:
    """The sentence-transformers model, loaded once per process (CPU; never downloads when given a path)."""
    from sentence_transformers import SentenceTransformer

    key = name_or_path or default_base_model()
    with _LOCK:
        if key not in _MODELS:
            device = "cuda" if torch.cuda.is_available() else "cpu"
            model = SentenceTransformer(key, device=device)
            if device == "cuda":
                model.half()  # fp16 text encoding on GPU; vectors are cast back to float32
            _MODELS[key] = model
        return _MODELS[key]


def embed_texts(
    texts: Sequence[str], model: Any, *, batch_size: int = 128, cache_key: str | None = None, inference: str = "fp32", threads: int | None = None
) -> np.ndarray:
    """L2-normalised float32 text embeddings; cached in memory by (model, inference, texts) when ``cache_key`` is
    given. ``inference``: ``fp32`` (torch), ``onnx`` or ``onnx-int8`` (``recsys.onnx``; same tokenisation,
    pooling and normalisation, fp32 ONNX agrees to cosine > 0.9999)."""
    texts = list(texts)
    key = (f"{cache_key}|{inference}", fingerprint_json(texts)) if cache_key else None
    if key is not None and key in _EMBEDDINGS:
        return _EMBEDDINGS[key]
    if not texts:
        dim = model.get_sentence_embedding_dimension()
        return np.zeros((0, dim), dtype=np.float32)
    if inference == "fp32":
        with torch.inference_mode():
            e = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    else:
        from recsys.onnx import parse_option, sentence_encoder  # optional dependency (onnxruntime)

        parse_option(inference, "embedder")
        e = sentence_encoder(model, inference, threads=threads).encode(texts, batch_size=batch_size)
    e = np.ascontiguousarray(e, dtype=np.float32)
    if key is not None:
        _EMBEDDINGS[key] = e
    return e


def clear_embedding_cache() -> None:
    _EMBEDDINGS.clear()


# ------------------------------------------------------------------------------------- context features


def context_features(context: pl.DataFrame | None, n: int, columns: Sequence[str] = (), *, time: bool = True) -> np.ndarray:
    """(n, 2 + len(columns)) int64: hour of day, weekday, then hashed categorical columns (-1 = unknown).

    ``time=False`` (synthesised timestamps) leaves hour and weekday unknown whatever the timestamp says.

    Indices are already offset into one shared embedding table (hours, weekdays, then one bucket range per column).
    """
    out = np.full((n, 2 + len(columns)), -1, dtype=np.int64)
    if context is None or context.height == 0:
        return out
    if time and S.TIMESTAMP in context.columns and context.schema[S.TIMESTAMP].is_temporal():
        ts = context[S.TIMESTAMP]
        out[:, 0] = ts.dt.hour().fill_null(-1).to_numpy()
        wd = ts.dt.weekday().fill_null(0).to_numpy() - 1  # polars: Monday = 1
        out[:, 1] = np.where(wd >= 0, N_HOURS + wd, -1)
    for k, c in enumerate(columns):
        if c in context.columns:
            h = context[c].cast(pl.String).hash(seed=0).to_numpy() % CONTEXT_HASH_BUCKETS
            nulls = context[c].is_null().to_numpy()
            out[:, 2 + k] = np.where(nulls, -1, N_HOURS + N_WEEKDAYS + k * CONTEXT_HASH_BUCKETS + h.astype(np.int64))
    return out


def context_columns_of(events: pl.DataFrame) -> list[str]:
    """Categorical request-context columns of an event frame (strings/categoricals other than ids and time)."""
    skip = {"u", "i", S.TIMESTAMP, S.RATING, S.WEIGHT, S.USER_ID, S.ITEM_ID}
    return [c for c, dt in events.schema.items() if c not in skip and (dt == pl.String or dt == pl.Categorical or dt == pl.Enum)]


# ------------------------------------------------------------------------------------- histories


def as_histories(histories: Sequences | Sequence[np.ndarray] | Sequence[Sequence[int]]) -> list[np.ndarray]:
    """One int64 array of catalogue indices per user, oldest first."""
    if isinstance(histories, Sequences):
        return [histories.row(r) for r in range(histories.n_rows)]
    return [np.asarray(h, dtype=np.int64) for h in histories]


def pad_left(histories: list[np.ndarray], max_len: int, pad: int) -> np.ndarray:
    """Last ``max_len`` items of each history, left-padded with ``pad`` (at least one column)."""
    width = max(1, min(max_len, max((len(h) for h in histories), default=1)))
    out = np.full((len(histories), width), pad, dtype=np.int64)
    for r, h in enumerate(histories):
        h = h[-width:]
        if len(h):
            out[r, width - len(h) :] = h
    return out


def recency_weighted_mean(histories: list[np.ndarray], item_vectors: np.ndarray, decay: float) -> np.ndarray:
    """Zero-shot user vector: sum_k exp(-decay * k) * v(item k from the end), normalised (k = 0 newest)."""
    out = np.zeros((len(histories), item_vectors.shape[1]), dtype=np.float32)
    for r, h in enumerate(histories):
        if len(h) == 0:
            continue
        w = np.exp(-decay * np.arange(len(h))[::-1]).astype(np.float32)
        out[r] = w @ item_vectors[h]
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)


__all__ = [
    "CONTEXT_HASH_BUCKETS",
    "N_HOURS",
    "N_WEEKDAYS",
    "as_histories",
    "clear_embedding_cache",
    "context_columns_of",
    "context_features",
    "embed_texts",
    "load_text_model",
    "pad_left",
    "recency_weighted_mean",
]
