"""ONNX Runtime inference for both text models: the retriever's sentence embedder and the reranker's cross-encoder.

One exporter (``torch.onnx.export``, dynamic batch and sequence axes), one int8 quantiser
(``onnxruntime.quantization.quantize_dynamic``, per-channel weights) and one session wrapper, shared by
``recsys.retriever.model`` (item/profile text embeddings) and ``recsys.reranker.fast`` (pair logits).

Options: ``fp32`` (plain torch, the default), ``onnx`` (the same fp32 network in onnxruntime with every graph
optimisation) and ``onnx-int8`` (int8 weights, the setting in ``INT8_SETTINGS`` chosen with
``benchmarks/rerank_speed.py`` and ``benchmarks/encode.py``). ``onnx-int8:<variant>`` selects another entry of
``INT8_VARIANTS`` (for the benchmarks' studies).

What int8 keeps (measured 2026-11-29, shared 2-core AVX2 EPYC, no VNNI, load average 9-15): for the item encoder
``onnx-int8`` is ``fused-smooth-rr-l0-ffn12``: onnxruntime's BERT fusions, 7-bit per-channel weights, SmoothQuant-style
smoothing (alpha 0.8, calibrated on demo item texts) of the Q/K/V and FFN-input activations, and the most sensitive
nodes kept fp32 (all of layer 0, the FFN output projections of layers 1-2; found by quantising one node group and one
layer at a time). Against fp32 on 1,500 demo items: cosine 0.9977 mean / 0.9950 min, index recall@100 0.9797 (user
queries) / 0.988 (item queries), the definitions of ``benchmarks/encode.py``; 1.55x bare sentence-transformers with 1
thread and ~1.8x with 2 (under load 12-15, ratios +-15%; text path timed on 400 demo items, batch 128, median of 3).
Issue 3's target (>= 1.8x with cosine >= 0.99 and recall@100 >= 0.98) is NOT met on this CPU: the fastest setting,
``fused-rr`` (everything int8), reaches only 1.69x at 1 thread and loses recall (0.963); every node kept fp32 to win
recall back costs speed. Pareto points (1 thread, speed vs bare ST / cosine min / recall users / recall items):
``fused-rr`` 1.69 / 0.987 / 0.963 / 0.979; ``fused-smooth-rr-l0-ffn12`` 1.55 / 0.995 / 0.9797 / 0.988;
``matmul-rr-ffn32`` (the previous default) 1.45 / 0.993 / 0.974 / 0.984.
Reranker: ``onnx-int8`` is the same ``fused-smooth-rr-l0-ffn12`` (calibrated on pairs). On a cross-encoder that learned
something (600 BCE steps against random negatives on demo data, max_length 72; 20 top-100 lists of held-out requests;
quiet machine) it keeps top-10 overlap 0.825 (Spearman 0.992) against 0.73 for ``matmul-rr-ffn32`` (the previous
choice) and 0.67-0.72 for the unsmoothed variants, at the same speed: 1.5-1.95x torch fp32 at 20-100 candidates, 2
threads; ``fused-rr`` (all int8) 1.6-2.2x at 0.665. Overlap >= 0.9 at >= 2.5x is out of reach on this AVX2 CPU, so
the exact ``onnx`` option stays the reranker's fast default. On a quickly fine-tuned MovieLens model whose logits lie
within ~0.01 of each other every int8 variant kept only 0.41-0.52 of the top 10 (``benchmarks/rerank_speed.py``).
Hypotheses that did not pan out: quantising the embedding ``Gather`` tables (the quantiser's default) made no
measurable difference; 8-bit weights (no ``reduce_range``) are better only for the FFN output projections and much
worse wherever smoothing enlarges the weights (int16 saturation of AVX2's u8 x s8 kernels: cosine 0.966 for smoothed
Q/K/V); smoothing the FFN output input (GELU outputs) hurts at every alpha (0.0-0.8); onnxruntime's 8-bit
``MatMulNBits`` with int8 compute (block 32) is nearly exact (cosine 0.9997) but slower than fp32 ONNX on AVX2 (0.73x).

Exported files are cached under ``$RECSYS_CACHE/onnx`` (default ``~/.cache/recsys/onnx``) in one directory
per fingerprint of the weights, the model kind and the exporter's versions, so a second load does not re-export.
Files are written to a temporary name and renamed. Needs ``pip install onnxruntime onnx`` (NOT
``sentence-transformers[onnx]`` / ``optimum``: they pull older sentence-transformers and transformers).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import re
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recsys.errors import RecsysError
from recsys.manifest import atomic_file
from recsys.manifest import cache_dir as recsys_cache_dir

#: inference options of the text models (the reranker adds ``bf16``)
OPTIONS = ("fp32", "onnx", "onnx-int8")
OPSET = 17
MODEL_FILE = "model.onnx"
CLASSIFIER, EMBEDDER = "classifier", "embedder"


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


#: int8 settings measured in the benchmarks (``onnx-int8:<name>``)
INT8_VARIANTS: dict[str, QuantSettings] = {
    # quantize_dynamic's defaults (+ per-channel): what recsys used before; Gather (embeddings) quantised too
    "default": QuantSettings(op_types=(), extra_options=()),
    # only the weight matmuls, 8-bit weights (saturates in int16 on AVX2 without VNNI)
    "matmul": QuantSettings(),
    # only the weight matmuls, 7-bit weights: no int16 saturation on AVX2
    "matmul-rr": QuantSettings(reduce_range=True),
    # unsigned 8-bit weights (u8 x u8 kernels)
    "matmul-u8": QuantSettings(weight_type="QUInt8"),
    # 7-bit weights, the FFN output projections (the widest-range inputs: GELU outputs) kept fp32
    "matmul-rr-ffn32": QuantSettings(reduce_range=True, keep_fp32=(r"layer\.\d+/output/dense/MatMul$",)),
    # 7-bit weights, the last transformer layer and the head kept fp32
    "matmul-rr-last32": QuantSettings(reduce_range=True, keep_fp32=(r"layer\.(5|11|23)/", r"classifier", r"pooler")),
    # matmul-rr / matmul-rr-ffn32 on the fused graph (Attention, SkipLayerNormalization, BiasGelu)
    "fused-rr": QuantSettings(reduce_range=True, op_types=("MatMul", "Attention"), fuse=True),
    "fused-rr-ffn32": QuantSettings(
        reduce_range=True, op_types=("MatMul", "Attention"), fuse=True, keep_fp32=(r"layer\.\d+/output/dense/MatMul$",)
    ),
}
# node-name patterns of the exported (and fused) BERT graphs
_QKV = r"(self/(query|key|value)/MatMul|^Attention_\d+)$"
_FFN_IN = r"intermediate/dense/MatMul$"
_SMOOTH = ((f"{_QKV}|{_FFN_IN}", 0.8),)
INT8_VARIANTS.update({
    # 7-bit weights everywhere; Q/K/V and FFN-input activations smoothed (alpha 0.8); the FFN output projections of
    # the first three layers (the most sensitive ones) kept fp32
    "smooth-rr-ffn012": QuantSettings(reduce_range=True, smooth=_SMOOTH, keep_fp32=(r"layer\.[0-2]/output/dense/MatMul$",)),
    # the same on onnxruntime's fused BERT graph (Attention quantised too)
    "fused-smooth-rr-ffn012": QuantSettings(
        reduce_range=True, op_types=("MatMul", "Attention"), fuse=True, smooth=_SMOOTH, keep_fp32=(r"layer\.[0-2]/output/dense/MatMul$",)
    ),
    "fused-smooth-rr-ffn02": QuantSettings(
        reduce_range=True, op_types=("MatMul", "Attention"), fuse=True, smooth=_SMOOTH, keep_fp32=(r"layer\.[02]/output/dense/MatMul$",)
    ),
    "fused-smooth-rr-ffn0123": QuantSettings(
        reduce_range=True, op_types=("MatMul", "Attention"), fuse=True, smooth=_SMOOTH, keep_fp32=(r"layer\.[0-3]/output/dense/MatMul$",)
    ),
    "fused-smooth-rr-l0-ffn12": QuantSettings(
        reduce_range=True, op_types=("MatMul", "Attention"), fuse=True, smooth=_SMOOTH,
        keep_fp32=(r"layer\.0/", r"^Attention_0$", r"layer\.[12]/output/dense/MatMul$"),
    ),
    "fused-smooth-rr": QuantSettings(reduce_range=True, op_types=("MatMul", "Attention"), fuse=True, smooth=_SMOOTH),
})
#: what ``onnx-int8`` means for each model kind (chosen with the benchmarks: the most accurate variant whose latency
#: was measured; see the module docstring)
INT8_SETTINGS: dict[str, str] = {CLASSIFIER: "fused-smooth-rr-l0-ffn12", EMBEDDER: "fused-smooth-rr-l0-ffn12"}


def onnx_available() -> tuple[bool, str]:
    """(available, reason when not)."""
    missing = [m for m in ("onnxruntime", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        return False, f"{' and '.join(missing)} not installed (pip install onnxruntime onnx)"
    return True, ""


def parse_option(option: str, kind: str, extra: Sequence[str] = ()) -> tuple[str, QuantSettings | None]:
    """(base option, int8 settings or None); a clear error for anything else."""
    base, _, variant = option.partition(":")
    allowed = (*OPTIONS, *extra)
    if base not in allowed or (variant and base != "onnx-int8"):
        raise RecsysError(f"inference option must be one of {', '.join(allowed)} (or onnx-int8:<variant>), not {option!r}")
    if base != "onnx-int8":
        return base, None
    name = variant or INT8_SETTINGS[kind]
    if name not in INT8_VARIANTS:
        raise RecsysError(f"unknown int8 variant {name!r}; known: {', '.join(INT8_VARIANTS)}")
    return base, INT8_VARIANTS[name]


def cache_root(cache_dir: Path | str | None = None) -> Path:
    """Where exported models live: ``cache_dir``, else ``$RECSYS_CACHE/onnx``, else ``~/.cache/recsys/onnx``."""
    return Path(cache_dir) if cache_dir is not None else recsys_cache_dir("onnx")


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


class _Classifier:
    """torch wrapper: (input_ids, attention_mask[, token_type_ids]) -> logits."""

    @staticmethod
    def build(model: Any, names: list[str]) -> Any:
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.m = model

            def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
                return self.m(**dict(zip(names, inputs))).logits

        return Wrapped()


class _Embedder:
    """torch wrapper: (input_ids, attention_mask[, token_type_ids]) -> pooled sentence embedding (mean or CLS),
    exactly the sentence-transformers Pooling module's arithmetic (normalisation happens outside)."""

    @staticmethod
    def build(model: Any, names: list[str], pooling: str) -> Any:
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.m = model

            def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
                feed = dict(zip(names, inputs))
                tokens = self.m(**feed).last_hidden_state
                if pooling == "cls":
                    return tokens[:, 0]
                mask = feed["attention_mask"].unsqueeze(-1).to(tokens.dtype)
                return (tokens * mask).sum(1) / torch.clamp(mask.sum(1), min=1e-9)

        return Wrapped()


def export_onnx(model: Any, tokenizer: Any, path: Path | str, *, kind: str, pooling: str = "mean", opset: int = OPSET) -> Path:
    """Export a transformers model to ONNX (TorchScript exporter: no onnxscript needed), written atomically.

    ``kind="classifier"``: a sequence-classification model, output ``logits``; ``kind="embedder"``: a base model,
    output ``embedding`` (pooled ``last_hidden_state``). Batch and sequence axes are dynamic.
    """
    import torch

    path = Path(path)
    model.eval()
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if "token_type_ids" in tokenizer.model_input_names else [])
    if kind == CLASSIFIER:
        wrapped, out = _Classifier.build(model, names), "logits"
        enc = tokenizer(["a user text"] * 2, ["an item text here"] * 2, padding=True, return_tensors="pt")
    elif kind == EMBEDDER:
        wrapped, out = _Embedder.build(model, names, pooling), "embedding"
        enc = tokenizer(["a short text", "a somewhat longer item text here"], padding=True, return_tensors="pt")
    else:
        raise ValueError(f"kind must be {CLASSIFIER!r} or {EMBEDDER!r}, not {kind!r}")
    args = tuple(enc[n] for n in names)
    dynamic = {n: {0: "batch", 1: "sequence"} for n in names}
    dynamic[out] = {0: "batch"}
    # eager attention traces to plain ops (sdpa with masks does not always export)
    old = getattr(model.config, "_attn_implementation", None)
    try:
        if old is not None:
            model.config._attn_implementation = "eager"
        with atomic_file(path) as tmp, torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
            torch.onnx.export(wrapped, args, str(tmp), input_names=names, output_names=[out], dynamic_axes=dynamic, opset_version=opset, dynamo=False)
    finally:
        if old is not None:
            model.config._attn_implementation = old
    return path


def quantize_int8(src: Path | str, dst: Path | str, settings: QuantSettings | None = None) -> Path:
    """Dynamic int8 weight quantisation of an ONNX model with ``settings`` (default: the classifier's choice)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    settings = settings or INT8_VARIANTS[INT8_SETTINGS[CLASSIFIER]]
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


#: calibration texts for ``QuantSettings.smooth``: rendered item texts of a fixed demo catalogue (item descriptions
#: are what the embedder encodes; activation outlier channels are a property of the weights more than of the texts)
CALIBRATION = {"items": 256, "seed": 7}


def calibration_batches(tokenizer: Any, kind: str, batch_size: int = 64) -> list[dict[str, np.ndarray]]:
    """Tokenised calibration batches (length-sorted) for activation ranges; pairs for the classifier."""
    from recsys.data.demo import generate_demo
    from recsys.text import render_items

    ds, _ = generate_demo(users=20, items=CALIBRATION["items"], seed=CALIBRATION["seed"], interactions_per_user=3)
    texts = sorted(render_items(ds.items), key=len, reverse=True)
    out = []
    for lo in range(0, len(texts), batch_size):
        chunk = texts[lo : lo + batch_size]
        enc = tokenizer(chunk, chunk, padding=True, truncation=True, max_length=256, return_tensors="np") if kind == CLASSIFIER else tokenizer(
            chunk, padding=True, truncation=True, max_length=256, return_tensors="np"
        )
        out.append({k: np.asarray(v, dtype=np.int64) for k, v in enc.items()})
    return out


def smooth_activations(src: Path | str, dst: Path | str, batches: Sequence[Mapping[str, np.ndarray]], smooth: Sequence[tuple[str, float]]) -> Path:
    """SmoothQuant-style channel smoothing of an fp32 graph (see ``QuantSettings.smooth``), written atomically.

    Per input tensor of the matching weight nodes (Q/K/V share one): calibrate ``amax(x)`` per channel over the
    non-padding tokens of ``batches``, then insert ``x * (1/s)`` and scale the weight rows by ``s``."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    groups: dict[str, tuple[float, list[Any]]] = {}
    for node in graph.node:
        if node.op_type not in ("MatMul", "Attention") or len(node.input) < 2 or node.input[1] not in inits:
            continue
        alpha = next((a for pat, a in smooth if re.search(pat, node.name)), None)
        if alpha is not None:
            groups.setdefault(node.input[0], (alpha, []))[1].append(node)
    if not groups:
        raise RecsysError(f"activation smoothing matched no weight node in {src} (patterns {[p for p, _ in smooth]})")
    # calibration: the smoothed inputs as extra outputs of an unoptimised session
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    outputs = {o.name for o in probe.graph.output}
    probe.graph.output.extend(helper.make_tensor_value_info(x, TensorProto.FLOAT, None) for x in groups if x not in outputs)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feeds = [i.name for i in session.get_inputs()]
    names = list(groups)
    amax: dict[str, np.ndarray] = {}
    for batch in batches:
        keep = np.asarray(batch["attention_mask"], dtype=bool)
        for x, value in zip(names, session.run(names, {n: batch[n] for n in feeds})):
            m = np.abs(value[keep] if value.ndim == 3 else value.reshape(-1, value.shape[-1])).max(0)
            amax[x] = m if x not in amax else np.maximum(amax[x], m)
    producers = {out: i for i, node in enumerate(graph.node) for out in node.output}
    inserts: list[tuple[int, Any]] = []
    for x, (alpha, nodes) in groups.items():
        weights = [numpy_helper.to_array(inits[n.input[1]]) for n in nodes]
        wmax = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)  # per input channel (weight rows)
        s = np.clip(np.maximum(amax[x], 1e-5) ** alpha / np.maximum(wmax, 1e-5) ** (1 - alpha), 1e-3, 1e3).astype(np.float32)
        inv = numpy_helper.from_array((1.0 / s).astype(np.float32), f"{x}/smooth_inv")
        graph.initializer.append(inv)
        y = f"{x}/smoothed"
        inserts.append((producers.get(x, -1), helper.make_node("Mul", [x, inv.name], [y], name=f"{nodes[0].name}/smooth")))
        for n, w in zip(nodes, weights):
            inits[n.input[1]].CopyFrom(numpy_helper.from_array((w * s[:, None]).astype(np.float32), n.input[1]))
            n.input[0] = y
    nodes_out = list(graph.node)
    for pos, mul in sorted(inserts, key=lambda t: -t[0]):  # from the back: earlier positions stay valid
        nodes_out.insert(pos + 1, mul)
    del graph.node[:]
    graph.node.extend(nodes_out)
    dst = Path(dst)
    with atomic_file(dst) as tmp:
        onnx.save(model, str(tmp))
    return dst


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


# ------------------------------------------------------------------------------------------ sentence embeddings


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


__all__ = [
    "INT8_SETTINGS", "INT8_VARIANTS", "OPTIONS", "OnnxModel", "OnnxSentenceEncoder", "QuantSettings", "cache_root", "export_cached",
    "export_onnx", "load_onnx", "smooth_activations", "onnx_available", "parse_option", "quantize_int8", "sentence_encoder", "weights_fingerprint",
]
