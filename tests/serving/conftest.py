"""Fixtures of the serving tests: the real app (real MiniLM, real FAISS) over the session's ``retrieval_stack``."""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("fastapi", reason="serving needs the serve extra: pip install 'recsys[serve]'")
pytest.importorskip("httpx", reason="the FastAPI test client needs httpx (the serve extra)")

ADMIN_TOKEN = "test-admin-token"


@pytest.fixture(scope="package")
def served(retrieval_stack):
    """(client, root, dataset): a TestClient over the app on ``root/index``, lifespan run (service loaded)."""
    from fastapi.testclient import TestClient

    from recsys.serving.app import create_app

    root, ds = retrieval_stack
    app = create_app(root / "index", admin_token=ADMIN_TOKEN)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, root, ds


@pytest.fixture(scope="package")
def second_index(retrieval_stack, tmp_path_factory):
    """A copy of the stack's index with one item added: same model, another index fingerprint."""
    import polars as pl

    from recsys.index.build import add_items

    root, _ = retrieval_stack
    out = tmp_path_factory.mktemp("serving") / "index-v2"
    shutil.copytree(root / "index", out)
    new = pl.DataFrame({"item_id": [990_001], "title": ["Serving Test Item"], "category": ["kitchen"], "description": ["added for the reload test"]})
    add_items(out, new)
    return out
