"""Inference options of the reranker on CPU: ``fp32`` (plain torch, the default), ``bf16`` (torch autocast),
``onnx`` (the classifier exported with ``torch.onnx.export`` and run by ``onnxruntime``: same scores to 1e-4, the
fast path that keeps the ranking) and ``onnx-int8`` (int8 weights: faster still, but on a weakly trained model whose
scores lie close together it reorders the top 10). Export, quantisation and the cache live in
``recsys.onnx``.

The ONNX paths need ``pip install onnxruntime onnx`` (NOT ``sentence-transformers[onnx]`` / ``optimum``, which pull
older sentence-transformers and transformers). A scorer takes (user text, item text) pairs and returns float32
logits exactly like ``Reranker.predict`` (same tokenisation: pairs, ``longest_first`` truncation to
``max_length``; batches of similar lengths).

Measured agreement and speed: ``benchmarks/rerank_speed.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recsys.onnx import CLASSIFIER, export_onnx, load_onnx, onnx_available, parse_option, quantize_int8

OPTIONS = ("fp32", "bf16", "onnx", "onnx-int8")


def _length_batches(pairs: Sequence[tuple[str, str]], batch_size: int) -> tuple[np.ndarray, list[np.ndarray]]:
    order = np.argsort([-(len(a) + len(b)) for a, b in pairs], kind="stable")
    return order, [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


class Scorer:
    """Base: tokenises batches of pairs like the CrossEncoder and returns logits in the input order."""

    option = "fp32"

    def __init__(self, cross_encoder: Any, max_length: int) -> None:
        self.cross_encoder = cross_encoder
        self.tokenizer = cross_encoder.tokenizer
        self.max_length = max_length

    def tokenize(self, batch: Sequence[tuple[str, str]], tensors: str) -> Any:
        return self.tokenizer(
            [a for a, _ in batch], [b for _, b in batch], padding=True, truncation="longest_first", max_length=self.max_length, return_tensors=tensors
        )

    def _logits(self, batch: Sequence[tuple[str, str]]) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, pairs: Sequence[tuple[str, str]], *, batch_size: int = 64) -> np.ndarray:
        out = np.zeros(len(pairs), dtype=np.float32)
        if not len(pairs):
            return out
        _, batches = _length_batches(pairs, batch_size)
        for idx in batches:
            out[idx] = self._logits([pairs[i] for i in idx]).reshape(-1)
        return out


class TorchScorer(Scorer):
    """fp32 or bf16 (``torch.autocast("cpu", torch.bfloat16)``: matmuls in bf16, weights stay fp32)."""

    def __init__(self, cross_encoder: Any, max_length: int, *, bf16: bool = False) -> None:
        super().__init__(cross_encoder, max_length)
        self.bf16 = bf16
        self.option = "bf16" if bf16 else "fp32"
        self.model = cross_encoder.model  # the transformers sequence-classification model
        self.model.eval()

    def _logits(self, batch: Sequence[tuple[str, str]]) -> np.ndarray:
        import contextlib

        import torch

        enc = self.tokenize(batch, "pt")
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        with torch.inference_mode(), ctx:
            logits = self.model(**enc).logits
        return logits.float().numpy()[:, 0]


class OnnxScorer(Scorer):
    """onnxruntime CPU session over the exported (optionally int8-quantised) classifier (``recsys.onnx``:
    exported once per weights fingerprint into the ONNX cache, or into ``workdir`` when given)."""

    def __init__(self, cross_encoder: Any, max_length: int, *, option: str = "onnx", workdir: Path | str | None = None, threads: int | None = None) -> None:
        super().__init__(cross_encoder, max_length)
        self.option = option
        self.session = load_onnx(cross_encoder.model, self.tokenizer, option, kind=CLASSIFIER, cache_dir=workdir, threads=threads)
        self.path = self.session.path

    def _logits(self, batch: Sequence[tuple[str, str]]) -> np.ndarray:
        return self.session.run(self.tokenize(batch, "np"))[:, 0]


def make_scorer(cross_encoder: Any, option: str, *, max_length: int = 256, workdir: Path | str | None = None, threads: int | None = None) -> Scorer:
    """A scorer for ``option`` in ``OPTIONS`` (or ``onnx-int8:<variant>``, see ``recsys.onnx``);
    ``workdir`` replaces the shared ONNX cache directory (files there are reused when the weights match)."""
    base, _ = parse_option(option, CLASSIFIER, extra=("bf16",))
    if base in ("fp32", "bf16"):
        return TorchScorer(cross_encoder, max_length, bf16=base == "bf16")
    ok, why = onnx_available()
    if not ok:
        raise RuntimeError(f"ONNX inference unavailable: {why}")
    return OnnxScorer(cross_encoder, max_length, option=option, workdir=workdir, threads=threads)


def agreement(reference: np.ndarray, other: np.ndarray, k: int = 10) -> dict[str, float]:
    """Top-k overlap (share of the reference's top k also in the other's top k) and Spearman rank correlation."""
    from scipy.stats import spearmanr

    k = min(k, len(reference))
    a = set(np.argsort(-reference, kind="stable")[:k].tolist())
    b = set(np.argsort(-other, kind="stable")[:k].tolist())
    rho = spearmanr(reference, other).statistic if len(reference) > 1 else 1.0
    return {f"top{k}_overlap": len(a & b) / max(k, 1), "spearman": float(rho), "max_abs_diff": float(np.max(np.abs(reference - other))) if len(reference) else 0.0}


__all__ = ["OPTIONS", "OnnxScorer", "Scorer", "TorchScorer", "agreement", "export_onnx", "make_scorer", "onnx_available", "quantize_int8"]
