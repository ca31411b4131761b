"""Inference options (``recsys.onnx.options``): known options parse, anything else is a clear error; study variants register
(no onnxruntime needed)."""

from __future__ import annotations

import pytest

from recsys.errors import RecsysError
from recsys.onnx import EMBEDDER, INT8_SETTINGS, INT8_VARIANTS, QuantSettings, parse_option, register_int8_variants


def test_options_are_checked():
    assert parse_option("fp32", EMBEDDER) == ("fp32", None)
    base, settings = parse_option("onnx-int8", EMBEDDER)
    assert base == "onnx-int8" and settings is not None and settings.per_channel
    assert INT8_SETTINGS[EMBEDDER]
    with pytest.raises(RecsysError, match="inference option must be one of"):
        parse_option("int4", EMBEDDER)
    with pytest.raises(RecsysError, match="unknown int8 variant 'nope'"):
        parse_option("onnx-int8:nope", EMBEDDER)


def test_registered_variants_resolve_and_cannot_be_redefined() -> None:
    study = QuantSettings(reduce_range=True)
    before = dict(INT8_VARIANTS)
    try:
        with pytest.raises(RecsysError, match="unknown int8 variant 'test-rr'"):
            parse_option("onnx-int8:test-rr", EMBEDDER)
        register_int8_variants({"test-rr": study})
        register_int8_variants({"test-rr": study})  # the same settings again: fine
        assert parse_option("onnx-int8:test-rr", EMBEDDER) == ("onnx-int8", study)
        with pytest.raises(RecsysError, match="'test-rr' is already defined"):
            register_int8_variants({"test-rr": QuantSettings()})
        assert parse_option("onnx-int8", EMBEDDER)[1] is INT8_VARIANTS[INT8_SETTINGS[EMBEDDER]]
    finally:
        INT8_VARIANTS.clear()
        INT8_VARIANTS.update(before)
