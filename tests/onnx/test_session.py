"""ONNX Runtime sessions (``recsys.onnx.session``) with the real bundled MiniLM: the fp32 export equals
SentenceTransformer's embeddings, int8 stays close, the retriever embeds with the option it is given."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.errors import RecsysError
from recsys.onnx import sentence_encoder
from tests.onnx.conftest import ONNX_OK, ONNX_WHY

pytestmark = pytest.mark.skipif(not ONNX_OK, reason=ONNX_WHY)


def test_fp32_onnx_equals_sentence_transformer(st, texts, reference, cache):
    emb = sentence_encoder(st, "onnx", cache_dir=cache).encode(texts, batch_size=16)
    assert emb.shape == reference.shape and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    cos = np.sum(emb * reference, axis=1)
    assert cos.min() > 0.9999, cos.min()


def test_int8_embeddings_stay_close(st, texts, reference, cache):
    items = texts[:-2]  # the rendered item texts (a lone "x" is the least stable input of all, ~0.98)
    emb = sentence_encoder(st, "onnx-int8", cache_dir=cache).encode(items, batch_size=16)
    cos = np.sum(emb * reference[:-2], axis=1)
    assert cos.min() >= 0.98 and cos.mean() >= 0.99, (cos.min(), cos.mean())
    assert not np.allclose(emb, reference[:-2], atol=1e-4)  # really quantised, not the fp32 graph


def test_retriever_embed_uses_the_option(st, texts, reference, cache, monkeypatch):
    from recsys.retriever import TwoTowerRetriever

    monkeypatch.setenv("RECSYS_CACHE", str(cache.parent / "env-cache"))
    r = TwoTowerRetriever(encode_batch_size=16)
    r._text_model = st
    np.testing.assert_allclose(r.embed(texts, cache=False), reference, atol=1e-5)
    r.use("onnx")
    cos = np.sum(r.embed(texts, cache=False) * reference, axis=1)
    assert r.inference == "onnx" and cos.min() > 0.9999
    assert list((cache.parent / "env-cache" / "onnx").rglob("model.onnx"))  # exported under $RECSYS_CACHE/onnx
    with pytest.raises(RecsysError):
        r.use("onnx-int4")
