"""The on-disk export cache (``recsys.onnx.cache``): a second load reuses the files, changed weights get their own."""

from __future__ import annotations

import pytest

from recsys.onnx import EMBEDDER, sentence_encoder, weights_fingerprint
from tests.onnx.conftest import ONNX_OK, ONNX_WHY

pytestmark = pytest.mark.skipif(not ONNX_OK, reason=ONNX_WHY)


def test_second_load_reuses_the_cached_export(st, texts, cache):
    first = sentence_encoder(st, "onnx-int8", cache_dir=cache)
    files = sorted(p for p in cache.rglob("*.onnx"))
    assert {p.name for p in files} >= {"model.onnx", first.session.path.name}
    before = {p: p.stat().st_mtime_ns for p in files}
    again = sentence_encoder(st, "onnx-int8", cache_dir=cache, refresh=True)  # re-fingerprints, new session
    assert again is not first and again.session.path == first.session.path
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*.onnx")} == before
    assert not list(cache.rglob("*.tmp"))  # atomic writes leave no temporary files


def test_changed_weights_get_their_own_export(tmp_path):
    import torch

    lin = torch.nn.Linear(3, 2)
    a = weights_fingerprint(lin, EMBEDDER)
    with torch.no_grad():
        lin.weight[0, 0] += 1e-3
    assert weights_fingerprint(lin, EMBEDDER) != a
