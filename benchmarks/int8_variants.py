"""The int8 study of the text models: the ``onnx-int8:<variant>`` settings that ``benchmarks/encode.py`` (item
encoder) and the removed ``rerank_speed.py`` (reranker) compared with the product's ``onnx-int8``
(``recsys.onnx.INT8_SETTINGS``). The library keeps only the chosen setting; ``register_study_variants()`` makes the
others resolvable in the benchmark's process.

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
"""

from __future__ import annotations

from recsys.onnx.quantize import SMOOTH_QKV_FFN_IN, QuantSettings, register_int8_variants

_FUSED = {"reduce_range": True, "op_types": ("MatMul", "Attention"), "fuse": True}

#: the int8 settings the study measured, by name (``onnx-int8:<name>``)
STUDY_VARIANTS: dict[str, QuantSettings] = {
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
    "fused-rr": QuantSettings(**_FUSED),
    "fused-rr-ffn32": QuantSettings(**_FUSED, keep_fp32=(r"layer\.\d+/output/dense/MatMul$",)),
    # 7-bit weights everywhere; Q/K/V and FFN-input activations smoothed (alpha 0.8); the FFN output projections of
    # the first three layers (the most sensitive ones) kept fp32
    "smooth-rr-ffn012": QuantSettings(reduce_range=True, smooth=SMOOTH_QKV_FFN_IN, keep_fp32=(r"layer\.[0-2]/output/dense/MatMul$",)),
    # the same on onnxruntime's fused BERT graph (Attention quantised too), with fewer or more FFN outputs kept fp32
    "fused-smooth-rr-ffn012": QuantSettings(**_FUSED, smooth=SMOOTH_QKV_FFN_IN, keep_fp32=(r"layer\.[0-2]/output/dense/MatMul$",)),
    "fused-smooth-rr-ffn02": QuantSettings(**_FUSED, smooth=SMOOTH_QKV_FFN_IN, keep_fp32=(r"layer\.[02]/output/dense/MatMul$",)),
    "fused-smooth-rr-ffn0123": QuantSettings(**_FUSED, smooth=SMOOTH_QKV_FFN_IN, keep_fp32=(r"layer\.[0-3]/output/dense/MatMul$",)),
    "fused-smooth-rr": QuantSettings(**_FUSED, smooth=SMOOTH_QKV_FFN_IN),
}


def register_study_variants() -> None:
    """Make every ``onnx-int8:<name>`` of ``STUDY_VARIANTS`` resolvable in this process."""
    register_int8_variants(STUDY_VARIANTS)
