"""Operations: ``/health`` (liveness), ``/ready`` (readiness, says what is loaded), ``/metrics`` (Prometheus)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse

from recsys.serving.dependencies import get_holder, get_metrics
from recsys.serving.metrics import CONTENT_TYPE, Metrics
from recsys.serving.schemas import HealthResponse, ReadyResponse
from recsys.serving.state import ServiceHolder

router = APIRouter(tags=["operations"])


@router.get("/health", response_model=HealthResponse)
async def health() -> HealthResponse:
    """The process is up (liveness)."""
    return HealthResponse(status="ok")


@router.get("/ready", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
async def ready(holder: Annotated[ServiceHolder, Depends(get_holder)]):
    """Model, index and histories are loaded (readiness); says which."""
    loaded = holder.current
    if loaded is None:
        return JSONResponse(ReadyResponse(status="loading").model_dump(), status_code=503)
    return loaded.describe()


@router.get("/metrics", response_class=PlainTextResponse)
async def prometheus_metrics(metrics: Annotated[Metrics, Depends(get_metrics)]) -> PlainTextResponse:
    """Prometheus text format: requests by endpoint and status, latency histogram, model/index info."""
    return PlainTextResponse(metrics.render(), media_type=CONTENT_TYPE)
