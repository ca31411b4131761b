"""Int8 weight quantisation of an exported text model (``onnxruntime.quantization.quantize_dynamic``), with
onnxruntime's BERT fusions before it when the settings ask: ``QuantSettings`` says how, ``INT8_SETTINGS`` what
``onnx-int8`` means for each model kind. The settings were chosen with the int8 study in
``benchmarks/int8_variants.py``, whose other variants the benchmarks register with ``register_int8_variants``."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from recsys.errors import RecsysError
from recsys.manifest import atomic_file
from recsys.onnx.export import EMBEDDER


@dataclass(frozen=True)
class QuantSettings:
    """How ``quantize_dynamic`` turns fp32 weights into int8.

    ``keep_fp32``: regular expressions over ONNX node names (e.g. ``layer\\.5/``, ``output/dense`` but not
    attention's); matching nodes stay fp32. ``op_types``: which operator types are quantised.
    """

    per_channel: bool = True
    reduce_range: bool = False
    weight_type: str = "QInt8"
    op_types: tuple[str, ...] = ("MatMul",)
    keep_fp32: tuple[str, ...] = ()
    extra_options: tuple[tuple[str, Any], ...] = (("MatMulConstBOnly", True),)
    #: fuse attention / layer norms / GELU with onnxruntime's BERT optimizer before quantising (the fused
    #: ``Attention`` op is then quantised too)
    fuse: bool = False
    #: SmoothQuant-style activation smoothing before quantising: ``(regex over node names, alpha)`` pairs; each
    #: matching weight MatMul / Attention gets its input divided per channel by ``s = amax(x)^alpha / amax(W_row)^(1-alpha)``
    #: (a ``Mul``) and its weight rows multiplied by ``s`` (exact in fp32), so that the per-tensor int8 activation
    #: range is not set by a few outlier channels; ``amax(x)`` is calibrated on ``CALIBRATION`` texts
    smooth: tuple[tuple[str, float], ...] = ()

    def key(self) -> str:
        """Short stable name of the settings (part of the cached file name)."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True, default=str).encode()).hexdigest()[:10]


#: node-name patterns of the exported (and fused) BERT graphs: the Q/K/V projections and the FFN input projection
QKV_NODES = r"(self/(query|key|value)/MatMul|^Attention_\d+)$"
FFN_IN_NODES = r"intermediate/dense/MatMul$"
#: SmoothQuant-style smoothing of the Q/K/V and FFN-input activations at alpha 0.8
SMOOTH_QKV_FFN_IN = ((f"{QKV_NODES}|{FFN_IN_NODES}", 0.8),)

#: the int8 settings by name (``onnx-int8:<name>``): the one the product uses; the benchmarks add their study's
INT8_VARIANTS: dict[str, QuantSettings] = {
    # onnxruntime's BERT fusions, 7-bit per-channel weights, Q/K/V and FFN-input activations smoothed; all of layer 0
    # and the FFN output projections of layers 1-2 (the most sensitive nodes) kept fp32
    "fused-smooth-rr-l0-ffn12": QuantSettings(
        reduce_range=True, op_types=("MatMul", "Attention"), fuse=True, smooth=SMOOTH_QKV_FFN_IN,
        keep_fp32=(r"layer\.0/", r"^Attention_0$", r"layer\.[12]/output/dense/MatMul$"),
    ),
}
#: what ``onnx-int8`` means for each model kind (the most accurate timed variant of docs/experiments/int8-study.md)
INT8_SETTINGS: dict[str, str] = {EMBEDDER: "fused-smooth-rr-l0-ffn12"}


def register_int8_variants(variants: Mapping[str, QuantSettings]) -> None:
    """Make ``onnx-int8:<name>`` resolve to each of ``variants`` in this process (the benchmarks' int8 studies);
    a name already bound to other settings is an error."""
    for name, settings in variants.items():
        known = INT8_VARIANTS.get(name)
        if known is not None and known != settings:
            raise RecsysError(f"int8 variant {name!r} is already defined with other settings")
        INT8_VARIANTS[name] = settings


def quantize_int8(src: Path | str, dst: Path | str, settings: QuantSettings | None = None) -> Path:
    """Dynamic int8 weight quantisation of an ONNX model with ``settings`` (default: the embedder's choice)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    settings = settings or INT8_VARIANTS[INT8_SETTINGS[EMBEDDER]]
    dst = Path(dst)
    exclude = None
    if settings.keep_fp32:
        pats = [re.compile(p) for p in settings.keep_fp32]
        graph = onnx.load(str(src), load_external_data=False).graph
        exclude = [n.name for n in graph.node if any(p.search(n.name) for p in pats)]
    extra = dict(settings.extra_options)
    if settings.fuse:
        extra.setdefault("DefaultTensorType", onnx.TensorProto.FLOAT)  # fused contrib ops have no inferred types
    root = logging.getLogger()
    level = root.level
    try:
        root.setLevel(logging.ERROR)  # quantize_dynamic's "consider pre-processing" note on every call
        with atomic_file(dst) as tmp:
            quantize_dynamic(
                str(src), str(tmp), per_channel=settings.per_channel, reduce_range=settings.reduce_range,
                weight_type=getattr(QuantType, settings.weight_type), op_types_to_quantize=list(settings.op_types) or None,
                nodes_to_exclude=exclude, extra_options=extra or None,
            )
    finally:
        root.setLevel(level)
    return dst


def fuse_bert(src: Path | str, dst: Path | str, *, num_heads: int, hidden_size: int) -> Path:
    """onnxruntime's offline BERT fusions (Attention, EmbedLayerNormalization, SkipLayerNormalization, BiasGelu)."""
    from onnxruntime.transformers import optimizer

    dst = Path(dst)
    root = logging.getLogger()
    level = root.level
    try:
        root.setLevel(logging.ERROR)
        with atomic_file(dst) as tmp:
            optimizer.optimize_model(str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=0).save_model_to_file(str(tmp))
    finally:
        root.setLevel(level)
    return dst
