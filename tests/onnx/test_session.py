"""ONNX Runtime text inference (``recsys.onnx_inference``) with the real bundled MiniLM: the fp32 export equals
SentenceTransformer's embeddings, int8 stays close, the on-disk cache is reused, bad options are clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.errors import RecsysError
from recsys.onnx_inference import INT8_SETTINGS, EMBEDDER, onnx_available, parse_option, sentence_encoder

ONNX_OK, ONNX_WHY = onnx_available()
pytestmark = pytest.mark.skipif(not ONNX_OK, reason=ONNX_WHY)


@pytest.fixture(scope="module")
def texts():
    from recsys.data.demo import generate_demo
    from recsys.text import render_items

    ds, _ = generate_demo(users=30, items=60, seed=1, interactions_per_user=5)
    # real rendered item texts of different lengths, plus edge cases: one word, and one past max_seq_length
    return render_items(ds.items) + ["x", "a very long item description about jazz " * 80]


@pytest.fixture(scope="module")
def st():
    from recsys.retriever.model import load_text_model

    return load_text_model()


@pytest.fixture(scope="module")
def reference(st, texts):
    return st.encode(texts, batch_size=16, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


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

    from recsys.onnx_inference import weights_fingerprint

    lin = torch.nn.Linear(3, 2)
    a = weights_fingerprint(lin, EMBEDDER)
    with torch.no_grad():
        lin.weight[0, 0] += 1e-3
    assert weights_fingerprint(lin, EMBEDDER) != a


def test_options_are_checked():
    assert parse_option("fp32", EMBEDDER) == ("fp32", None)
    base, settings = parse_option("onnx-int8", EMBEDDER)
    assert base == "onnx-int8" and settings is not None and settings.per_channel
    assert INT8_SETTINGS[EMBEDDER]
    with pytest.raises(RecsysError, match="inference option must be one of"):
        parse_option("int4", EMBEDDER)
    with pytest.raises(RecsysError, match="unknown int8 variant 'nope'"):
        parse_option("onnx-int8:nope", EMBEDDER)


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


def test_activation_smoothing_is_exact_in_fp32(st, texts, cache, tmp_path):
    """The smoothing rewrite (x / s, W * s) leaves the fp32 graph's output unchanged; only int8 sees its effect."""
    from recsys.onnx_inference import EMBEDDER, OnnxModel, calibration_batches, smooth_activations

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
