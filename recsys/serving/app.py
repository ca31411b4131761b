"""The HTTP API of the retriever: ``create_app(index_dir, ...)`` wires a FastAPI app around a RetrievalService.

The layout follows FastAPI's "bigger applications": :mod:`~recsys.serving.schemas` (request/response models),
:mod:`~recsys.serving.middleware` (body limit, metrics, error shapes), :mod:`~recsys.serving.state` (the
hot-swappable service), :mod:`~recsys.serving.routers` (handlers, the current service as a dependency). This module
only wires them. Reference: docs/serving.md.

* The service (model, FAISS index, histories) is loaded once, in the lifespan, and warmed up before the app reports
  ready; ``POST /admin/reload`` swaps in another one, and requests running on the old one finish on it.
* FAISS CPU search and torch inference are safe to call concurrently; the sentence-transformers text model is not,
  so every text encode runs under a process-wide lock (or through the micro-batcher's one worker thread).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from pathlib import Path

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from recsys.errors import RecsysError
from recsys.serving.limits import RerankGate
from recsys.serving.metrics import Metrics
from recsys.serving.middleware import BodyLimitMiddleware, MetricsMiddleware, install_error_handlers
from recsys.serving.routers import admin, items, operations, recommend
from recsys.serving.routers.docs import install_docs
from recsys.serving.settings import ServeSettings
from recsys.serving.state import Loaded, ServiceHolder, load_service, set_compute_threads

log = logging.getLogger("recsys.serving")

ADMIN_TOKEN_ENV = "RECSYS_ADMIN_TOKEN"


def create_app(
    index_dir: Path | str,
    *,
    dataset_dir: Path | str | None = None,
    run_dir: Path | str | None = None,
    admin_token: str | None = None,
    max_body_bytes: int | None = None,
    micro_batch: bool = True,
    threads: int | None = None,
    rerank_run: Path | str | None = None,
    rerank_depth: int | None = None,
    settings: ServeSettings | None = None,
) -> FastAPI:
    """The serving app. ``admin_token`` (default: ``$RECSYS_ADMIN_TOKEN``) enables ``POST /admin/reload``;
    ``micro_batch`` encodes the users of concurrent requests together (see :mod:`recsys.serving.batching`);
    ``threads`` sets torch's and FAISS's intra-op threads for the whole process at start (None: leave them);
    ``rerank_run`` loads a ranking run (``recsys train ranker``) that ranks each request's top ``rerank_depth`` with
    its other candidate sources by default. ``settings`` bounds what one request
    may cost (:class:`~recsys.serving.settings.ServeSettings`; ``max_body_bytes`` overrides its body limit)."""
    settings = settings or ServeSettings()
    if max_body_bytes is not None:
        settings = dataclasses.replace(settings, max_body_bytes=max_body_bytes)
    if rerank_depth is not None and rerank_depth > settings.max_candidates:
        raise RecsysError(f"rerank depth {rerank_depth} is over the serve setting max_candidates={settings.max_candidates}")
    load_options = {"micro_batch": micro_batch, "rerank_depth": rerank_depth}
    holder = ServiceHolder()
    metrics = Metrics()

    def publish(loaded: Loaded) -> None:
        holder.swap(loaded)  # requests holding the old one finish on it
        metrics.set_service(
            {
                "model_fingerprint": loaded.model_fingerprint,
                "index_fingerprint": loaded.index_fingerprint,
                "dataset_fingerprint": loaded.dataset_fingerprint,
                "index_type": loaded.index_type,
                "ranker_fingerprint": loaded.ranker_fingerprint or "none",
            },
            len(loaded.service.index),
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if threads is not None:
            set_compute_threads(threads)
        app.state.gate = RerankGate(settings)  # (its asyncio primitives belong to the serving loop)
        publish(await run_in_threadpool(load_service, index_dir, dataset_dir=dataset_dir, run_dir=run_dir, rerank_run=rerank_run, **load_options))
        log.info("serving index %s (model %s)", index_dir, holder.current.model_fingerprint)
        yield
        holder.swap(None)

    app = FastAPI(
        title="recsys",
        version=_version(),
        summary="Two-tower BERT retriever over FAISS and a learned ranker: recommendations for known and new users, with request context.",
        lifespan=lifespan,
        docs_url=None,  # served from local assets by install_docs
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.holder = holder
    app.state.metrics = metrics
    app.state.publish = publish
    app.state.load_options = load_options
    app.state.admin_token = admin_token if admin_token is not None else os.environ.get(ADMIN_TOKEN_ENV) or None
    routers = (recommend.router, items.router, operations.router, admin.router)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    # added last = outermost; the routes it looks a 413's endpoint up in are the routers' own (no prefixes)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=lambda: [r for router in routers for r in router.routes])
    install_error_handlers(app)
    for router in routers:
        app.include_router(router)
    install_docs(app)
    return app


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("recsys")
    except Exception:  # noqa: BLE001
        return "0"
