"""Export of a transformers text model to ONNX (``torch.onnx.export``, dynamic batch and sequence axes): the
retriever's sentence embedder (pooled sentence embedding)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from recsys.manifest import atomic_file

#: the kind of text model exported: a sentence embedder (output ``embedding``)
EMBEDDER = "embedder"
OPSET = 17


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

    ``kind="embedder"``: a base model, output ``embedding`` (pooled ``last_hidden_state``). Batch and sequence axes
    are dynamic.
    """
    import torch

    path = Path(path)
    model.eval()
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if "token_type_ids" in tokenizer.model_input_names else [])
    if kind == EMBEDDER:
        wrapped, out = _Embedder.build(model, names, pooling), "embedding"
        enc = tokenizer(["a short text", "a somewhat longer item text here"], padding=True, return_tensors="pt")
    else:
        raise ValueError(f"kind must be {EMBEDDER!r}, not {kind!r}")
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
