"""Activation smoothing (``recsys.onnx.calibrate``): exact in fp32, one ``Mul`` per smoothed input."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.errors import RecsysError
from recsys.onnx import EMBEDDER, OnnxModel, calibration_batches, sentence_encoder, smooth_activations
from tests.onnx.conftest import ONNX_OK, ONNX_WHY

pytestmark = pytest.mark.skipif(not ONNX_OK, reason=ONNX_WHY)


def test_activation_smoothing_is_exact_in_fp32(st, texts, cache, tmp_path):
    """The smoothing rewrite (x / s, W * s) leaves the fp32 graph's output unchanged; only int8 sees its effect."""
    enc = sentence_encoder(st, "onnx", cache_dir=cache)
    src = enc.session.path
    dst = smooth_activations(src, tmp_path / "smoothed.onnx", calibration_batches(enc.tokenizer, EMBEDDER)[:1], ((r"(query|key|value|intermediate/dense)/MatMul$", 0.8),))
    import onnx

    muls = [n for n in onnx.load(str(dst), load_external_data=False).graph.node if n.name.endswith("/smooth")]
    assert len(muls) == 2 * st[0].auto_model.config.num_hidden_layers  # one per Q/K/V input and one per FFN input
    batch = enc.tokenizer(texts[:8], padding=True, truncation=True, max_length=enc.max_length, return_tensors="np")
    np.testing.assert_allclose(OnnxModel(dst).run(batch), OnnxModel(src).run(batch), atol=2e-4, rtol=1e-3)
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(RecsysError, match="matched no weight node"):
        smooth_activations(src, tmp_path / "none.onnx", [], (("no-such-node", 0.5),))
