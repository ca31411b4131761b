"""FastAPI dependencies of the routers: the app's service holder, metrics and settings, and the current service."""

from __future__ import annotations

from fastapi import HTTPException, Request

from recsys.serving.metrics import Metrics
from recsys.serving.state import Loaded, ServiceHolder


def get_holder(request: Request) -> ServiceHolder:
    return request.app.state.holder


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def current_service(request: Request) -> Loaded:
    """The service this request uses from start to end (a hot swap during the request does not change it)."""
    loaded = request.app.state.holder.current
    if loaded is None:
        raise HTTPException(503, "the model and index are not loaded")
    return loaded
