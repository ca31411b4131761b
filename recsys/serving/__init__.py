"""Online serving: ``create_app`` (FastAPI) around a RetrievalService; ``recsys serve`` runs it with uvicorn.

Needs the ``serve`` extra (``pip install 'recsys[serve]'``: fastapi, uvicorn, httpx); importing this package
does not, only ``create_app`` does.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def create_app(*args: Any, **kwargs: Any):
    """See :func:`recsys.serving.app.create_app`."""
    from recsys.serving.app import create_app as _create_app

    return _create_app(*args, **kwargs)
