"""FastAPI dependencies of the routers: the app's service holder, metrics and rerank gate, and the current service."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import HTTPException, Request

from recsys.serving.limits import RerankGate
from recsys.serving.metrics import Metrics
from recsys.serving.state import Loaded, ServiceHolder


def get_holder(request: Request) -> ServiceHolder:
    return request.app.state.holder


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def get_gate(request: Request) -> RerankGate:
    return request.app.state.gate


def current_service(request: Request) -> Iterator[Loaded]:
    """The service this request uses from start to end (a hot swap during the request does not change it); it is
    counted as in use until the request is done, so a replaced service is reclaimed after its last request."""
    holder: ServiceHolder = request.app.state.holder
    loaded = holder.acquire()
    if loaded is None:
        raise HTTPException(503, "the model and index are not loaded")
    try:
        yield loaded
    finally:
        holder.release(loaded)
