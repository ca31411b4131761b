"""Inference options agree with fp32 (the untrained bundled cross-encoder: same network, same numerics)."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.reranker.fast import agreement, make_scorer, onnx_available

ONNX_OK, ONNX_WHY = onnx_available()
USER = "36 year old US, Big fan of jazz records and retro gaming. Now: night, Friday, device: desktop. Recently: Classic Bebop Swing Vinyl; Pro Arcade Pixel Cartridge"


@pytest.fixture(scope="module")
def setup(demo_dataset):
    from recsys.reranker import Reranker, RerankerTrainingArguments

    r = Reranker(RerankerTrainingArguments(max_length=96))
    texts = r.render_items(demo_dataset.items)[:40]
    pairs = [(USER, t) for t in texts]
    return r, pairs, r.predict(pairs)


def test_torch_scorer_matches_crossencoder_predict(setup):
    r, pairs, ref = setup
    s = make_scorer(r.model, "fp32", max_length=96)(pairs, batch_size=16)
    np.testing.assert_allclose(s, ref, atol=1e-4)


def test_bf16_agrees_in_ranking(setup):
    r, pairs, ref = setup
    s = make_scorer(r.model, "bf16", max_length=96)(pairs)
    a = agreement(ref, s)
    assert a["spearman"] > 0.8, a


@pytest.mark.skipif(not ONNX_OK, reason=ONNX_WHY)
@pytest.mark.slow
def test_onnx_fp32_and_int8_agree_with_torch(setup, tmp_path):
    r, pairs, ref = setup
    onnx = make_scorer(r.model, "onnx", max_length=96, workdir=tmp_path)(pairs)
    np.testing.assert_allclose(onnx, ref, atol=1e-3)
    int8 = make_scorer(r.model, "onnx-int8", max_length=96, workdir=tmp_path)(pairs)
    a = agreement(ref, int8)
    assert a["spearman"] > 0.8 and a["top10_overlap"] >= 0.6, a
    # the reranker's own switch uses the same scorers (threads: onnxruntime intra-op threads, same numerics)
    r.use("onnx", workdir=tmp_path, threads=1)
    try:
        np.testing.assert_allclose(r.predict(pairs), onnx, atol=1e-5)
    finally:
        r.use("fp32")
    # exported once per weights fingerprint: a second scorer reuses the files
    files = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.onnx")}
    assert len(files) == 3  # the fp32 export, the fused graph the int8 setting starts from, the int8 model
    make_scorer(r.model, "onnx-int8", max_length=96, workdir=tmp_path)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.onnx")} == files


@pytest.mark.skipif(not ONNX_OK, reason=ONNX_WHY)
@pytest.mark.slow
def test_chosen_int8_stays_close_on_the_fine_tuned_model(trained_reranker, demo_dataset, tmp_path):
    """A 40-step fine-tune leaves the logits of one request within ~0.01 of each other, as close as int8's error
    (benchmarks/rerank_speed.py: no int8 setting keeps 9 of the top 10 on such a model), so this asserts what int8
    must keep anyway: small absolute errors and the coarse order; the fp32 ONNX graph keeps the exact top 10."""
    r = trained_reranker
    texts = r.render_items(demo_dataset.items)
    pairs = [(USER, t) for t in texts[:60]]
    ref = make_scorer(r.model, "fp32", max_length=r.args.max_length)(pairs)
    onnx = make_scorer(r.model, "onnx", max_length=r.args.max_length, workdir=tmp_path)(pairs)
    assert agreement(ref, onnx)["top10_overlap"] == 1.0
    int8 = make_scorer(r.model, "onnx-int8", max_length=r.args.max_length, workdir=tmp_path)(pairs)
    a = agreement(ref, int8)
    assert a["max_abs_diff"] < 0.05 and a["spearman"] > 0.3, a


def test_unknown_option_is_a_clear_error(setup):
    from recsys.errors import RecsysError

    with pytest.raises(RecsysError, match="inference option must be one of fp32, onnx, onnx-int8, bf16"):
        make_scorer(setup[0].model, "int4")
