"""Inference options of the reranker on CPU: ``fp32`` (plain torch, the default), ``bf16`` (torch autocast),
``onnx`` (the classifier exported with ``torch.onnx.export`` and run by ``onnxruntime``) and ``onnx-int8`` (the ONNX
graph with per-channel dynamic int8 weight quantisation, ``onnxruntime.quantization.quantize_dynamic``).

The ONNX paths need ``pip install onnxruntime onnx`` (NOT ``sentence-transformers[onnx]`` / ``optimum``, which pull
older sentence-transformers and transformers). A scorer takes (user text, item text) pairs and returns float32
logits exactly like ``Reranker.predict`` (same tokenisation: pairs, ``longest_first`` truncation to
``max_length``; batches of similar lengths).

Measured agreement and speed: ``benchmarks/rerank_speed.py``.
"""

from __future__ import annotations

import importlib.util
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

OPTIONS = ("fp32", "bf16", "onnx", "onnx-int8")
ONNX_FILE, INT8_FILE = "reranker.onnx", "reranker-int8.onnx"


def onnx_available() -> tuple[bool, str]:
    """(available, reason when not)."""
    missing = [m for m in ("onnxruntime", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        return False, f"{' and '.join(missing)} not installed (pip install onnxruntime onnx)"
    return True, ""


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


def export_onnx(cross_encoder: Any, path: Path | str, *, opset: int = 17) -> Path:
    """Export the CrossEncoder's classifier (input_ids, attention_mask[, token_type_ids] -> logits) to ONNX with
    dynamic batch and sequence axes (the TorchScript exporter: no onnxscript needed)."""
    import torch

    path = Path(path)
    model = cross_encoder.model
    model.eval()
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if "token_type_ids" in cross_encoder.tokenizer.model_input_names else [])

    class _Logits(torch.nn.Module):
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.m(**dict(zip(names, inputs))).logits

    enc = cross_encoder.tokenizer(["a user text"] * 2, ["an item text here"] * 2, padding=True, return_tensors="pt")
    args = tuple(enc[n] for n in names)
    dynamic = {n: {0: "batch", 1: "sequence"} for n in names}
    dynamic["logits"] = {0: "batch"}
    # eager attention traces to plain ops (sdpa with masks does not always export)
    old = getattr(model.config, "_attn_implementation", None)
    try:
        if old is not None:
            model.config._attn_implementation = "eager"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
            torch.onnx.export(
                _Logits(model), args, str(path), input_names=names, output_names=["logits"], dynamic_axes=dynamic, opset_version=opset, dynamo=False
            )
    finally:
        if old is not None:
            model.config._attn_implementation = old
    return path


def quantize_int8(src: Path | str, dst: Path | str) -> Path:
    """Per-channel dynamic int8 weight quantisation of an ONNX model."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QInt8)
    return Path(dst)


class OnnxScorer(Scorer):
    """onnxruntime CPU session over an exported (optionally int8-quantised) classifier."""

    def __init__(self, cross_encoder: Any, max_length: int, *, int8: bool = False, workdir: Path | str | None = None, threads: int | None = None) -> None:
        ok, why = onnx_available()
        if not ok:
            raise RuntimeError(f"ONNX inference unavailable: {why}")
        import onnxruntime as ort

        super().__init__(cross_encoder, max_length)
        self.option = "onnx-int8" if int8 else "onnx"
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="recsys-onnx-")
            workdir = self._tmp.name
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        fp32 = workdir / ONNX_FILE
        if not fp32.exists():
            export_onnx(cross_encoder, fp32)
        path = fp32
        if int8:
            path = workdir / INT8_FILE
            if not path.exists():
                quantize_int8(fp32, path)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            so.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.path = path

    def _logits(self, batch: Sequence[tuple[str, str]]) -> np.ndarray:
        enc = self.tokenize(batch, "np")
        feed = {n: np.asarray(enc[n], dtype=np.int64) for n in self.inputs}
        return np.asarray(self.session.run(["logits"], feed)[0], dtype=np.float32)[:, 0]


def make_scorer(cross_encoder: Any, option: str, *, max_length: int = 256, workdir: Path | str | None = None, threads: int | None = None) -> Scorer:
    """A scorer for ``option`` in ``OPTIONS``; ``workdir`` keeps the exported ONNX files (reused when present)."""
    if option not in OPTIONS:
        raise ValueError(f"inference option must be one of {', '.join(OPTIONS)}, not {option!r}")
    if option in ("fp32", "bf16"):
        return TorchScorer(cross_encoder, max_length, bf16=option == "bf16")
    return OnnxScorer(cross_encoder, max_length, int8=option == "onnx-int8", workdir=workdir, threads=threads)


def agreement(reference: np.ndarray, other: np.ndarray, k: int = 10) -> dict[str, float]:
    """Top-k overlap (share of the reference's top k also in the other's top k) and Spearman rank correlation."""
    from scipy.stats import spearmanr

    k = min(k, len(reference))
    a = set(np.argsort(-reference, kind="stable")[:k].tolist())
    b = set(np.argsort(-other, kind="stable")[:k].tolist())
    rho = spearmanr(reference, other).statistic if len(reference) > 1 else 1.0
    return {f"top{k}_overlap": len(a & b) / max(k, 1), "spearman": float(rho), "max_abs_diff": float(np.max(np.abs(reference - other))) if len(reference) else 0.0}


__all__ = ["OPTIONS", "OnnxScorer", "Scorer", "TorchScorer", "agreement", "export_onnx", "make_scorer", "onnx_available", "quantize_int8"]
