"""Fixtures of the ONNX tests: the real bundled MiniLM, rendered demo item texts (plus edge cases), their
SentenceTransformer embeddings and one ONNX cache directory shared by the session."""

from __future__ import annotations

import pytest

from recsys.onnx import onnx_available

ONNX_OK, ONNX_WHY = onnx_available()


@pytest.fixture(scope="session")
def texts():
    from recsys.data.demo import generate_demo
    from recsys.text import render_items

    ds, _ = generate_demo(users=30, items=60, seed=1, interactions_per_user=5)
    # real rendered item texts of different lengths, plus edge cases: one word, and one past max_seq_length
    return render_items(ds.items) + ["x", "a very long item description about jazz " * 80]


@pytest.fixture(scope="session")
def st():
    from recsys.retriever.model import load_text_model

    return load_text_model()


@pytest.fixture(scope="session")
def reference(st, texts):
    return st.encode(texts, batch_size=16, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")
