"""Calibration for int8: demo item texts tokenised as the model reads them, and SmoothQuant-style activation
smoothing of an fp32 graph calibrated on them (exact in fp32; it keeps a few outlier channels from setting the
int8 activation range, see ``QuantSettings.smooth``)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recsys.errors import RecsysError
from recsys.manifest import atomic_file


#: calibration texts for ``QuantSettings.smooth``: rendered item texts of a fixed demo catalogue (item descriptions
#: are what the embedder encodes; activation outlier channels are a property of the weights more than of the texts)
CALIBRATION = {"items": 256, "seed": 7}


def calibration_batches(tokenizer: Any, kind: str, batch_size: int = 64) -> list[dict[str, np.ndarray]]:
    """Tokenised calibration batches (length-sorted) for activation ranges (``kind``: the model kind, ``embedder``)."""
    from recsys.data.demo import generate_demo
    from recsys.text import render_items

    ds, _ = generate_demo(users=20, items=CALIBRATION["items"], seed=CALIBRATION["seed"], interactions_per_user=3)
    texts = sorted(render_items(ds.items), key=len, reverse=True)
    out = []
    for lo in range(0, len(texts), batch_size):
        chunk = texts[lo : lo + batch_size]
        enc = tokenizer(chunk, padding=True, truncation=True, max_length=256, return_tensors="np")
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
