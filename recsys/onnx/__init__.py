"""ONNX Runtime inference for the retriever's sentence embedder.

Options: ``fp32`` (plain torch, the default), ``onnx`` (the same fp32 network in onnxruntime with every graph
optimisation) and ``onnx-int8`` (int8 weights, ``INT8_SETTINGS``); ``onnx-int8:<variant>`` names another entry of
``INT8_VARIANTS`` (the benchmarks register their study's, ``benchmarks/int8_variants.py``). One exporter
(``export``), one quantiser (``quantize``, ``calibrate``), one cache of exported files (``cache``) and one session
wrapper (``session``), used by ``recsys.retriever``. (The text cross-encoder, ``recsys.reranker``, encodes one
user text per request against cached item vectors and needs none of this.) Needs
``pip install onnxruntime onnx`` (NOT ``sentence-transformers[onnx]`` / ``optimum``: they pull older
sentence-transformers and transformers).
"""

from recsys.onnx.cache import MODEL_FILE, cache_root, export_cached, weights_fingerprint
from recsys.onnx.calibrate import CALIBRATION, calibration_batches, smooth_activations
from recsys.onnx.export import EMBEDDER, OPSET, export_onnx
from recsys.onnx.options import OPTIONS, onnx_available, parse_option
from recsys.onnx.quantize import INT8_SETTINGS, INT8_VARIANTS, QuantSettings, fuse_bert, quantize_int8, register_int8_variants
from recsys.onnx.session import OnnxModel, OnnxSentenceEncoder, load_onnx, sentence_encoder

__all__ = [
    "CALIBRATION", "EMBEDDER", "INT8_SETTINGS", "INT8_VARIANTS", "MODEL_FILE", "OPSET", "OPTIONS", "OnnxModel",
    "OnnxSentenceEncoder", "QuantSettings", "cache_root", "calibration_batches", "export_cached", "export_onnx", "fuse_bert",
    "load_onnx", "onnx_available", "parse_option", "quantize_int8", "register_int8_variants", "sentence_encoder",
    "smooth_activations", "weights_fingerprint",
]
