"""The on-disk cache of exported models: one directory per fingerprint of the weights, the model kind and the
exporter's versions under ``$RECSYS_CACHE/onnx`` (default ``~/.cache/recsys/onnx``), so a second load of the same
weights neither re-exports nor re-quantises. Files are written to a temporary name and renamed."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from recsys.errors import RecsysError
from recsys.onnx.calibrate import calibration_batches, smooth_activations
from recsys.onnx.export import EMBEDDER, OPSET, export_onnx
from recsys.onnx.options import onnx_available
from recsys.onnx.quantize import INT8_SETTINGS, INT8_VARIANTS, QuantSettings, fuse_bert, quantize_int8

MODEL_FILE = "model.onnx"


def cache_root(cache_dir: Path | str | None = None) -> Path:
    """Where exported models live: ``cache_dir``, else ``$RECSYS_CACHE/onnx``, else ``~/.cache/recsys/onnx``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("RECSYS_CACHE")
    return (Path(env) if env else Path.home() / ".cache" / "recsys") / "onnx"


def weights_fingerprint(module: Any, kind: str) -> str:
    """Hash of every parameter and buffer (names, shapes, dtypes, bytes) plus the kind and exporter versions:
    an in-memory fine-tuned model or a freshly initialised head gets its own entry, identical weights share one."""
    import onnxruntime
    import torch

    h = hashlib.blake2b(digest_size=10)
    h.update(f"{kind}|opset{OPSET}|torch{torch.__version__}|ort{onnxruntime.__version__}|{type(module).__name__}".encode())
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def export_cached(
    model: Any, tokenizer: Any, option: str, *, kind: str, pooling: str = "mean", cache_dir: Path | str | None = None,
    settings: QuantSettings | None = None,
) -> Path:
    """The ONNX file for ``option`` (``onnx`` or ``onnx-int8``) of these weights, exported/quantised only when the
    cache lacks it."""
    ok, why = onnx_available()
    if not ok:
        raise RecsysError(f"ONNX inference unavailable: {why}")
    fp = weights_fingerprint(model, f"{kind}:{pooling}" if kind == EMBEDDER else kind)
    folder = cache_root(cache_dir) / fp
    fp32 = folder / MODEL_FILE
    if not fp32.exists():
        export_onnx(model, tokenizer, fp32, kind=kind, pooling=pooling)
    if option == "onnx":
        return fp32
    settings = settings or INT8_VARIANTS[INT8_SETTINGS[kind]]
    path = folder / f"model-int8-{settings.key()}.onnx"
    if not path.exists():
        src = fp32
        if settings.fuse:
            src = folder / "model-fused.onnx"
            if not src.exists():
                fuse_bert(fp32, src, num_heads=model.config.num_attention_heads, hidden_size=model.config.hidden_size)
        if settings.smooth:
            smoothed = folder / f"model-smooth-{settings.key()}.onnx"
            smooth_activations(src, smoothed, calibration_batches(tokenizer, kind), settings.smooth)
            src = smoothed
        try:
            quantize_int8(src, path, settings)
        finally:
            if settings.smooth:
                src.unlink(missing_ok=True)  # an intermediate fp32 graph: only the int8 file is reused
    return path
