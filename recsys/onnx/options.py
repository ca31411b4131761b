"""The text models' inference options (``fp32``, ``onnx``, ``onnx-int8``, ``onnx-int8:<variant>``): parsing them
into a base option and int8 settings, and whether onnxruntime and onnx are installed."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from recsys.errors import RecsysError
from recsys.onnx.quantize import INT8_SETTINGS, INT8_VARIANTS, QuantSettings

#: inference options of the text models
OPTIONS = ("fp32", "onnx", "onnx-int8")


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
