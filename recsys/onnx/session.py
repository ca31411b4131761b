"""onnxruntime sessions over exported text models: ``OnnxModel`` (one CPU session, int64 inputs, float32 output),
``load_onnx`` (the session for an inference option, exported through the cache) and ``OnnxSentenceEncoder``
(``SentenceTransformer.encode`` in onnxruntime, one per model object and option per process)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recsys.errors import RecsysError
from recsys.onnx.cache import cache_root, export_cached
from recsys.onnx.export import EMBEDDER
from recsys.onnx.options import parse_option


class OnnxModel:
    """An onnxruntime CPU session over an exported (optionally int8) text model; ``run(encoding)`` -> float32."""

    def __init__(self, path: Path | str, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.inter_op_num_threads = 1
        if threads:
            so.intra_op_num_threads = threads
        self.path = Path(path)
        self.session = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.output = self.session.get_outputs()[0].name

    def run(self, encoding: Mapping[str, Any]) -> np.ndarray:
        feed = {n: np.asarray(encoding[n], dtype=np.int64) for n in self.inputs}
        return np.asarray(self.session.run([self.output], feed)[0], dtype=np.float32)


def load_onnx(
    model: Any, tokenizer: Any, option: str, *, kind: str, pooling: str = "mean", cache_dir: Path | str | None = None,
    threads: int | None = None,
) -> OnnxModel:
    """A session for ``option`` (``onnx``, ``onnx-int8`` or ``onnx-int8:<variant>``) of a transformers model."""
    base, settings = parse_option(option, kind)
    if base == "fp32":
        raise ValueError("fp32 runs in torch, not onnxruntime")
    path = export_cached(model, tokenizer, base, kind=kind, pooling=pooling, cache_dir=cache_dir, settings=settings)
    return OnnxModel(path, threads=threads)


def _st_pooling(st: Any) -> str:
    """'mean' or 'cls' from a SentenceTransformer's modules; anything else cannot take the ONNX path."""
    modules = list(st._modules.values()) if hasattr(st, "_modules") else list(st)
    kinds = [type(m).__name__ for m in modules]
    extra = [k for k in kinds if k not in ("Transformer", "Pooling", "Normalize")]
    if extra or "Pooling" not in kinds:
        raise RecsysError(f"ONNX text embedding supports Transformer + Pooling (+ Normalize) models, not {' + '.join(kinds)}")
    pool = modules[kinds.index("Pooling")]
    mode = getattr(pool, "pooling_mode", None)
    if mode is None:
        cfg = pool.get_config_dict() if hasattr(pool, "get_config_dict") else {}
        mode = "mean" if cfg.get("pooling_mode_mean_tokens") else "cls" if cfg.get("pooling_mode_cls_token") else "other"
    mode = str(mode).lower()
    mode = "mean" if mode in ("mean", "mean_tokens") else "cls" if mode in ("cls", "cls_token") else mode
    if mode not in ("mean", "cls") or getattr(pool, "include_prompt", True) is False:
        raise RecsysError(f"ONNX text embedding supports mean or CLS pooling, not {mode!r}")
    return mode


@dataclass
class OnnxSentenceEncoder:
    """``SentenceTransformer.encode(normalize_embeddings=True)`` in onnxruntime: same tokenisation (truncation at
    ``max_seq_length``), batches of similar lengths, same pooling, L2-normalised float32."""

    st: Any
    option: str = "onnx"
    threads: int | None = None
    cache_dir: Path | str | None = None
    session: OnnxModel = field(init=False)

    def __post_init__(self) -> None:
        first = self.st[0]
        self.tokenizer = first.tokenizer
        self.max_length = self.st.max_seq_length
        pooling = _st_pooling(self.st)
        self.session = load_onnx(first.auto_model, self.tokenizer, self.option, kind=EMBEDDER, pooling=pooling, cache_dir=self.cache_dir, threads=self.threads)

    def encode(self, texts: Sequence[str], *, batch_size: int = 128) -> np.ndarray:
        texts = list(texts)
        dim = self.st.get_embedding_dimension() if hasattr(self.st, "get_embedding_dimension") else self.st.get_sentence_embedding_dimension()
        out = np.zeros((len(texts), dim), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for lo in range(0, len(texts), batch_size):
            idx = order[lo : lo + batch_size]
            enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=self.max_length, return_tensors="np")
            out[idx] = self.session.run(enc)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


_ENCODERS: dict[tuple[int, str, int | None, str], OnnxSentenceEncoder] = {}
_ENC_LOCK = threading.Lock()


def sentence_encoder(
    st: Any, option: str, *, threads: int | None = None, cache_dir: Path | str | None = None, refresh: bool = False
) -> OnnxSentenceEncoder:
    """One ONNX encoder per (model object, option, threads) per process; the export itself is cached on disk.
    ``refresh`` re-fingerprints the weights (after they changed in place, e.g. a text fine-tune)."""
    key = (id(st), option, threads, str(cache_root(cache_dir)))
    with _ENC_LOCK:
        enc = _ENCODERS.get(key)
        if enc is None or enc.st is not st or refresh:
            enc = _ENCODERS[key] = OnnxSentenceEncoder(st, option, threads, cache_dir)
        return enc
