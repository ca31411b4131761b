"""The HTTP API of the retriever: ``create_app(index_dir, ...)`` builds a FastAPI app around a RetrievalService.

* The service (model, FAISS index, histories) is loaded once, in the lifespan, and warmed up (one search, the text
  model loaded) before the app reports ready.
* Handlers are plain functions, so FastAPI runs them on its thread pool; each request takes the service reference
  once at its start (``holder.current``) and uses only that object, so a hot swap (``POST /admin/reload``) never
  changes the service under a running request: the old one stays alive until its last request returns.
* FAISS CPU search and torch inference are safe to call concurrently; the sentence-transformers text model (its
  Rust tokenizer mutates its truncation/padding state per call) is not, so every text encode (a new user's profile,
  or any request of a model trained with profiles) runs under a process-wide lock (the text model is shared by every
  loaded service of the process). With ``micro_batch`` (the default) those encodes go through one worker thread
  that encodes the texts of concurrent requests together (:mod:`recsys.serving.batching`).
* Bad input is a 4xx with ``{"detail": message}``; only server faults are 5xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Union

import polars as pl
from fastapi import Body, FastAPI, Header, HTTPException, Path as PathParam, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from recsys.context import TIME_KEYS, context_frame, parse_context
from recsys.data import schema as S
from recsys.errors import RecsysError
from recsys.serving.metrics import CONTENT_TYPE, UNMATCHED, Metrics

log = logging.getLogger("recsys.serving")

ADMIN_TOKEN_ENV = "RECSYS_ADMIN_TOKEN"
#: Largest request body accepted (bytes); larger ones get 413 before any parsing.
MAX_BODY_BYTES = 1 << 20
MAX_K = 1000
#: Longest history / exclude list and profile text accepted in one request.
MAX_LIST = 10_000
MAX_PROFILE_CHARS = 10_000
#: Most retrieved candidates one request may have reranked.
MAX_CANDIDATES = 1000
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

#: Process-wide: the sentence-transformers model (shared by every loaded service) is not thread-safe.
_TEXT_MODEL_LOCK = threading.Lock()

IdValue = Union[StrictInt, StrictStr]
ContextValue = Union[StrictStr, StrictInt, StrictFloat, StrictBool, None]


# ------------------------------------------------------------------------------------------ API models
class RecommendRequest(BaseModel):
    """A known user (``user_id``), or a new user by ``history`` and/or ``profile``; optional request context."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"user_id": 42, "k": 10, "context": {"time": "evening", "device": "mobile"}},
                {"history": [17, 256, 1031], "profile": "loves jazz records", "k": 5, "exclude": [99]},
            ]
        },
    )

    user_id: IdValue | None = Field(None, description="A user of the dataset; their stored history is used.")
    history: list[IdValue] | None = Field(
        None, max_length=MAX_LIST, description="Item ids the (new) user interacted with, oldest first (added to a known user's history)."
    )
    profile: str | None = Field(None, max_length=MAX_PROFILE_CHARS, description="Profile text of a new user, e.g. 'loves jazz records'.")
    context: dict[str, ContextValue] | None = Field(
        None, description="Request context, e.g. {'time': 'evening', 'device': 'mobile', 'weekday': 'sat'}; unknown keys are refused."
    )
    k: int = Field(20, ge=1, le=MAX_K, description="How many items.")
    exclude: list[IdValue] | None = Field(None, max_length=MAX_LIST, description="Item ids never to return (besides those already seen).")
    explain: bool = Field(False, description="Add an explanation: the history and context used; per item the history items behind it and, when reranked, each context field's effect.")
    rerank: bool | None = Field(None, description="Rerank with the cross-encoder (default: yes when the server was started with --rerank).")
    candidates: int | None = Field(None, ge=1, le=MAX_CANDIDATES, description="How many retrieved items the reranker reads (default: the server's --rerank-depth).")


class RecommendedItem(BaseModel):
    rank: int
    item_id: int | str
    score: float = Field(description="What the list is ordered by: the rerank score when reranked, else the retrieval score.")
    retrieval_score: float | None = Field(None, description="Cosine similarity of user and item vectors.")
    rerank_score: float | None = Field(None, description="The cross-encoder's logit (when reranked).")
    title: str | None = None
    reasons: dict[str, Any] = Field(
        default_factory=dict,
        description="With explain: history (the history items most similar to this one, with their cosine), closest_history_item "
        "and similarity (the first of them), and when reranked context ({field: score with it - score with it blanked}).",
    )


class Explanation(BaseModel):
    history_length: int = Field(description="Interactions the user vector was computed from (stored and given).")
    recent_history: list[int | str] = Field(description="The most recent of them, oldest first.")
    cold_start: bool = Field(description="True when the user vector is the profile text (no usable history).")
    profile_used: bool
    context: dict[str, Any] = Field(description="The context as the model read it: request time and context columns.")


class RecommendResponse(BaseModel):
    user_id: int | str | None
    k: int
    items: list[RecommendedItem]
    model_fingerprint: str
    index_fingerprint: str
    reranker_fingerprint: str | None = None
    explanation: Explanation | None = None


class ItemResponse(BaseModel):
    item_id: int | str
    fields: dict[str, Any] = Field(description="The item's columns in the dataset (title, category, ...).")
    in_index: bool = Field(description="Whether the item can be recommended (it is in the FAISS index).")


class HealthResponse(BaseModel):
    status: str


class ReadyResponse(BaseModel):
    status: str
    model_fingerprint: str | None = None
    index_fingerprint: str | None = None
    dataset_fingerprint: str | None = None
    index_items: int | None = None
    reranker_fingerprint: str | None = None
    loaded_at: str | None = None


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"index": "artifacts/index-v2"}]})

    index: str = Field(min_length=1, description="Index directory (from `recsys build-index`).")
    dataset: str | None = Field(None, min_length=1, description="Dataset directory (default: the one recorded in the index).")
    run: str | None = Field(None, min_length=1, description="Retriever run directory (default: the one recorded in the index).")
    rerank: str | None = Field(None, min_length=1, description="Reranker run to load with it (default: the current one, if any; it must match the new model).")


class ReloadResponse(BaseModel):
    status: str
    seconds: float
    previous: ReadyResponse
    current: ReadyResponse


class ErrorResponse(BaseModel):
    detail: str


_ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 413, 422, 500, 503)}


# ------------------------------------------------------------------------------------------ the service
@dataclass(frozen=True)
class Loaded:
    """A loaded, warmed-up RetrievalService and what /ready and /metrics say about it."""

    service: Any  # RetrievalService
    model_fingerprint: str
    index_fingerprint: str
    dataset_fingerprint: str
    index_type: str
    loaded_at: str
    uses_text_model: bool  # every request encodes text (a model trained with profiles)
    item_rows: dict[Any, int] = field(repr=False)
    reranker_fingerprint: str | None = None
    rerank_run: str | None = None
    rerank_inference: str = "auto"
    rerank_depth: int | None = None
    batcher: Any = None  # a MicroBatcher encoding the users of concurrent requests together, or None

    def close(self) -> None:
        """Stop the micro-batcher (requests still running on this service then encode on their own thread)."""
        if self.batcher is not None:
            self.batcher.close()

    def describe(self) -> ReadyResponse:
        return ReadyResponse(
            status="ready",
            model_fingerprint=self.model_fingerprint,
            index_fingerprint=self.index_fingerprint,
            dataset_fingerprint=self.dataset_fingerprint,
            index_items=len(self.service.index),
            reranker_fingerprint=self.reranker_fingerprint,
            loaded_at=self.loaded_at,
        )

    @property
    def user_dtype(self) -> pl.DataType:
        return self.service.histories.user_dtype

    @property
    def item_dtype(self) -> pl.DataType:
        return self.service.dataset.items.schema[S.ITEM_ID]


def load_service(
    index_dir: Path | str,
    *,
    dataset_dir: Path | str | None = None,
    run_dir: Path | str | None = None,
    micro_batch: bool = True,
    rerank_run: Path | str | None = None,
    rerank_inference: str = "auto",
    rerank_depth: int | None = None,
    cooccurrence: Path | str | None = None,
) -> Loaded:
    """Open the service and warm it up (text model loaded, one search run, one rerank), so the first request is not
    slow; with ``micro_batch``, concurrent requests' user encodes are batched (:mod:`recsys.serving.batching`)."""
    from recsys.manifest import read_manifest
    from recsys.service.retrieval import RetrievalService

    service = RetrievalService.open(
        index_dir, dataset_dir=dataset_dir, run_dir=run_dir, rerank_run=rerank_run, rerank_inference=rerank_inference, rerank_depth=rerank_depth,
        cooccurrence=cooccurrence,
    )
    index_fp = str(read_manifest(Path(index_dir), kind="index").get("fingerprint", "unknown"))
    users = service.histories.user_ids
    with _TEXT_MODEL_LOCK:
        service.model.encode_items(["warm-up"])
        if len(users):
            service.recommend(users[0], k=1)
    items = service.dataset.items[S.ITEM_ID].to_list()
    batcher = None
    if micro_batch:
        from recsys.serving.batching import install

        batcher = install(service, text_lock=_TEXT_MODEL_LOCK)
    return Loaded(
        service=service,
        model_fingerprint=str(service.run_manifest["fingerprint"]),
        index_fingerprint=index_fp,
        dataset_fingerprint=service.dataset.fingerprint,
        index_type=service.index.index_type,
        loaded_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        uses_text_model=bool(service.model.args.use_profiles),
        item_rows={v: i for i, v in enumerate(items)},
        reranker_fingerprint=service.reranker.fingerprint if service.reranker is not None else None,
        rerank_run=str(rerank_run) if rerank_run is not None else None,
        rerank_inference=rerank_inference,
        rerank_depth=rerank_depth,
        batcher=batcher,
    )


class ServiceHolder:
    """The current service; replaced by one reference assignment (atomic), reloads serialised by a lock."""

    def __init__(self) -> None:
        self.current: Loaded | None = None
        self.reload_lock = asyncio.Lock()


# ------------------------------------------------------------------------------------------ input parsing
def parse_id(value: Any, dtype: pl.DataType, what: str) -> int | str:
    """A JSON or path value as the dataset's id type; a mismatch is a 422 naming the expected type."""
    if dtype == pl.Int64:
        if isinstance(value, bool):
            number = None
        elif isinstance(value, int):
            number = value
        else:
            try:
                number = int(str(value).strip())
            except ValueError:
                number = None
        if number is None:
            raise HTTPException(422, f"{what} id {value!r} is not an integer, but this dataset's {what} ids are integers")
        if not INT64_MIN <= number <= INT64_MAX:
            raise HTTPException(422, f"{what} id {value!r} is out of the 64-bit integer range")
        return number
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise HTTPException(422, f"{what} id {value!r} must be a string")
    return str(value)


def check_context(context: Mapping[str, Any], known: list[str]) -> dict[str, Any]:
    """Refuse unknown keys (listing the known ones) and timestamps out of range, before the model sees them."""
    unknown = sorted(set(context) - set(TIME_KEYS) - set(known))
    if unknown:
        raise HTTPException(422, f"unknown context key(s) {', '.join(unknown)}; this model knows: {', '.join([*TIME_KEYS, *known])}")
    if "timestamp" in context:
        try:
            ts = dt.datetime.fromisoformat(str(context["timestamp"]))
        except ValueError as exc:
            raise HTTPException(422, f"context timestamp is not ISO 8601: {exc}") from None
        if not 1900 <= ts.year <= 2999:
            raise HTTPException(422, f"context timestamp {context['timestamp']!r} is out of range (years 1900-2999)")
    return dict(context)


# ------------------------------------------------------------------------------------------ middlewares
class BodyLimitMiddleware:
    """413 for a body over ``limit`` bytes: by Content-Length, or by counting a streamed (chunked) body."""

    def __init__(self, app: Any, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, int(limit)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._reply(scope, receive, send, 400, "invalid Content-Length header")
                    return
                if declared > self.limit:
                    await self._reply(scope, receive, send, 413, f"request body of {declared} bytes is over the limit of {self.limit} bytes")
                    return
        if scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._reply(scope, receive, send, 413, f"request body is over the limit of {self.limit} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _reply(scope, receive, send, status: int, message: str) -> None:
        response = JSONResponse({"detail": message}, status_code=status)
        await response(scope, receive, send)


class MetricsMiddleware:
    """Counts every HTTP request by route template and status and times it (outermost, so 413s count too)."""

    def __init__(self, app: Any, metrics: Metrics, routes: Any = None) -> None:
        self.app, self.metrics, self.routes = app, metrics, routes

    def _endpoint(self, scope) -> str:
        route = scope.get("route")
        if route is None and self.routes is not None:  # answered before routing (413): find the route it was for
            from starlette.routing import Match

            candidates = [r for r in self.routes() if r.matches(scope)[0] != Match.NONE]
            route = candidates[0] if candidates else None
        return getattr(route, "path", None) or UNMATCHED

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        self.metrics.started()

        async def send_wrapper(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.observe(scope.get("method", "?"), self._endpoint(scope), status, time.perf_counter() - start)


# ------------------------------------------------------------------------------------------ the app
def create_app(
    index_dir: Path | str,
    *,
    dataset_dir: Path | str | None = None,
    run_dir: Path | str | None = None,
    admin_token: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    micro_batch: bool = True,
    threads: int | None = None,
    rerank_run: Path | str | None = None,
    rerank_inference: str = "auto",
    rerank_depth: int | None = None,
    cooccurrence: Path | str | None = None,
) -> FastAPI:
    """The serving app. ``admin_token`` (default: ``$RECSYS_ADMIN_TOKEN``) enables ``POST /admin/reload``;
    ``micro_batch`` encodes the users of concurrent requests together (see :mod:`recsys.serving.batching`);
    ``threads`` sets torch's and FAISS's intra-op threads for the whole process at start (None: leave them);
    ``rerank_run`` loads a cross-encoder that reranks each request's top ``rerank_depth`` by default, and
    ``cooccurrence`` a second candidate source merged into what it reranks."""
    rerank_options = {"rerank_inference": rerank_inference, "rerank_depth": rerank_depth, "cooccurrence": cooccurrence}
    token = admin_token if admin_token is not None else os.environ.get(ADMIN_TOKEN_ENV) or None
    holder = ServiceHolder()
    metrics = Metrics()

    def publish(loaded: Loaded) -> None:
        previous, holder.current = holder.current, loaded  # the atomic swap: requests holding the old one finish on it
        if previous is not None:
            previous.close()
        metrics.set_service(
            {
                "model_fingerprint": loaded.model_fingerprint,
                "index_fingerprint": loaded.index_fingerprint,
                "dataset_fingerprint": loaded.dataset_fingerprint,
                "index_type": loaded.index_type,
                "reranker_fingerprint": loaded.reranker_fingerprint or "none",
            },
            len(loaded.service.index),
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if threads is not None:
            set_compute_threads(threads)
        loaded = await run_in_threadpool(
            load_service, index_dir, dataset_dir=dataset_dir, run_dir=run_dir, micro_batch=micro_batch, rerank_run=rerank_run, **rerank_options
        )
        publish(loaded)
        log.info("serving index %s (model %s)", index_dir, loaded.model_fingerprint)
        yield
        last, holder.current = holder.current, None
        if last is not None:
            last.close()

    app = FastAPI(
        title="recsys",
        version=_version(),
        summary="Two-tower BERT retriever over FAISS: recommendations for known and new users, with request context.",
        lifespan=lifespan,
    )
    app.state.holder = holder
    app.state.metrics = metrics
    app.add_middleware(BodyLimitMiddleware, limit=max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=lambda: app.routes)  # added last = outermost

    # ---------------------------------------------------------------- error shapes: always {"detail": str}
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: e.get(k) for k in ("type", "loc", "msg")} for e in exc.errors()]
        parts = [f"{'.'.join(str(x) for x in e['loc'] if x != 'body') or 'body'}: {e['msg']}" for e in errors]
        return JSONResponse({"detail": "; ".join(parts) or "invalid request", "errors": jsonable_encoder(errors)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RecsysError)
    async def _recsys(request: Request, exc: RecsysError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)

    def current() -> Loaded:
        loaded = holder.current
        if loaded is None:
            raise HTTPException(503, "the model and index are not loaded")
        return loaded

    # ---------------------------------------------------------------- recommendations
    def recommend(loaded: Loaded, req: RecommendRequest) -> RecommendResponse:
        svc = loaded.service
        uid = parse_id(req.user_id, loaded.user_dtype, "user") if req.user_id is not None else None
        history = [parse_id(x, loaded.item_dtype, "item") for x in req.history] if req.history is not None else None
        exclude = [parse_id(x, loaded.item_dtype, "item") for x in req.exclude] if req.exclude is not None else None
        context = check_context(req.context or {}, svc.known_context_keys)
        stored: list[Any] = []
        if uid is not None:
            row = int(svc.histories.rows([uid])[0])
            if row >= 0:
                stored = svc.histories.history(row)[1].tolist()
            elif history is None and req.profile is None:
                raise HTTPException(404, f"unknown user {uid!r}; send a history and/or a profile for a new user")
        if uid is None and history is None and req.profile is None:
            raise HTTPException(422, "give a user_id, a history or a profile")
        if req.rerank and svc.reranker is None:
            raise HTTPException(400, "this server has no reranker: start it with --rerank RERANK_RUN")
        call = lambda: svc.recommend(  # noqa: E731
            uid, history=history, profile=req.profile, context=context, k=req.k, exclude=exclude, rerank=req.rerank, depth=req.candidates, explain=req.explain
        )
        if loaded.batcher is None and (req.profile is not None or loaded.uses_text_model):
            with _TEXT_MODEL_LOCK:  # (the batcher's worker takes it itself)
                recs = call()
        else:
            recs = call()
        items = [
            RecommendedItem(
                rank=r.rank, item_id=r.item_id, score=r.score, retrieval_score=r.retrieval_score, rerank_score=r.rerank_score,
                title=r.title, reasons=_finite(jsonable_encoder(explained(r.reasons))),
            )
            for r in recs
        ]
        explanation = None
        if req.explain:
            explanation = explain(loaded, [*stored, *(history or [])], req.profile, context, items)
        return RecommendResponse(
            user_id=uid, k=req.k, items=items, model_fingerprint=loaded.model_fingerprint,
            index_fingerprint=loaded.index_fingerprint, explanation=explanation,
            reranker_fingerprint=loaded.reranker_fingerprint if any(r.rerank_score is not None for r in recs) else None,
        )

    @app.get("/recommend/{user_id}", response_model=RecommendResponse, responses=_ERRORS, tags=["recommend"])
    def recommend_user(
        user_id: Annotated[str, PathParam(description="A user of the dataset (integer or string, as the dataset's ids).")],
        k: Annotated[int, Query(ge=1, le=MAX_K, description="How many items.")] = 20,
        context: Annotated[str | None, Query(max_length=2000, description="e.g. time=evening,device=mobile,weekday=sat")] = None,
        explain: Annotated[bool, Query(description="Add an explanation.")] = False,
        rerank: Annotated[bool | None, Query(description="Rerank with the cross-encoder (default: yes when the server has one).")] = None,
        candidates: Annotated[int | None, Query(ge=1, le=MAX_CANDIDATES, description="How many retrieved items the reranker reads.")] = None,
        exclude: Annotated[str | None, Query(max_length=100_000, description="Comma-separated item ids never to return, e.g. 12,45.")] = None,
    ) -> RecommendResponse:
        """Top-k items for a known user (their stored history), optionally in a request context."""
        loaded = current()
        uid = parse_id(user_id, loaded.user_dtype, "user")
        ctx = parse_context(context)
        excluded = [x.strip() for x in exclude.split(",") if x.strip()] if exclude else None
        if excluded is not None and len(excluded) > MAX_LIST:
            raise HTTPException(422, f"exclude: at most {MAX_LIST} item ids")
        req = RecommendRequest.model_construct(
            user_id=uid, history=None, profile=None, context=ctx or None, k=k, exclude=excluded, explain=explain, rerank=rerank, candidates=candidates
        )
        return recommend(loaded, req)

    @app.post("/recommend", response_model=RecommendResponse, responses=_ERRORS, tags=["recommend"])
    def recommend_body(req: Annotated[RecommendRequest, Body()]) -> RecommendResponse:
        """Top-k items for a known user, or a new user by history and/or profile text; context and exclusions optional."""
        return recommend(current(), req)

    # ---------------------------------------------------------------- items, health
    @app.get("/items/{item_id}", response_model=ItemResponse, responses=_ERRORS, tags=["items"])
    def get_item(item_id: Annotated[str, PathParam(description="An item id (integer or string, as the dataset's ids).")]) -> ItemResponse:
        """The item's fields from the dataset."""
        loaded = current()
        iid = parse_id(item_id, loaded.item_dtype, "item")
        row = loaded.item_rows.get(iid)
        in_index = iid in loaded.service.index
        if row is None:
            if not in_index:
                raise HTTPException(404, f"unknown item {iid!r}")
            title = loaded.service._titles.get(iid)  # an item added to the index after the dataset
            return ItemResponse(item_id=iid, fields={"title": title} if title is not None else {}, in_index=True)
        fields = loaded.service.dataset.items.row(row, named=True)
        fields.pop(S.ITEM_ID, None)
        return ItemResponse(item_id=iid, fields=_finite(jsonable_encoder(fields)), in_index=in_index)

    @app.get("/health", response_model=HealthResponse, tags=["operations"])
    async def health() -> HealthResponse:
        """The process is up (liveness)."""
        return HealthResponse(status="ok")

    @app.get("/ready", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}}, tags=["operations"])
    async def ready():
        """Model, index and histories are loaded (readiness); says which."""
        loaded = holder.current
        if loaded is None:
            return JSONResponse(ReadyResponse(status="loading").model_dump(), status_code=503)
        return loaded.describe()

    @app.get("/metrics", response_class=PlainTextResponse, tags=["operations"])
    async def prometheus_metrics() -> PlainTextResponse:
        """Prometheus text format: requests by endpoint and status, latency histogram, model/index info."""
        return PlainTextResponse(metrics.render(), media_type=CONTENT_TYPE)

    # ---------------------------------------------------------------- hot swap
    @app.post("/admin/reload", response_model=ReloadResponse, responses=_ERRORS, tags=["operations"])
    async def reload(
        req: ReloadRequest,
        authorization: Annotated[str | None, Header(description="Bearer <token> ($RECSYS_ADMIN_TOKEN).")] = None,
        x_admin_token: Annotated[str | None, Header(description="Alternative to Authorization: the token itself.")] = None,
    ) -> ReloadResponse:
        """Load another index (and run/dataset) fully, then swap atomically; a failed load keeps the old one serving."""
        if token is None:
            raise HTTPException(404, "Not Found")
        given = x_admin_token
        if given is None and authorization is not None:
            scheme, _, value = authorization.partition(" ")
            given = value.strip() if scheme.lower() == "bearer" else None
        if given is None:
            raise HTTPException(401, "admin token required (Authorization: Bearer <token>)", headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode("utf-8", "surrogateescape")):
            raise HTTPException(403, "invalid admin token")
        async with holder.reload_lock:
            previous = current().describe() if holder.current is not None else ReadyResponse(status="loading")
            start = time.perf_counter()
            try:
                old = holder.current
                rerank = req.rerank or (old.rerank_run if old is not None else None)
                loaded = await run_in_threadpool(
                    load_service, req.index, dataset_dir=req.dataset, run_dir=req.run, micro_batch=micro_batch, rerank_run=rerank, **rerank_options
                )
            except RecsysError as exc:
                metrics.reload("client_error")
                raise HTTPException(400, f"reload failed, still serving the previous index: {exc}") from None
            except Exception as exc:  # noqa: BLE001 - any failure leaves the old service in place
                metrics.reload("server_error")
                log.exception("reload of %s failed", req.index)
                raise HTTPException(500, f"reload failed, still serving the previous index: {type(exc).__name__}: {exc}") from None
            publish(loaded)
            metrics.reload("ok")
            log.info("reloaded: index %s (model %s)", req.index, loaded.model_fingerprint)
        return ReloadResponse(status="reloaded", seconds=round(time.perf_counter() - start, 3), previous=previous, current=loaded.describe())

    return app


def explained(reasons: Mapping[str, Any]) -> dict[str, Any]:
    """The service's reasons plus ``closest_history_item``/``similarity`` (the most similar history item)."""
    out = dict(reasons)
    if out.get("history"):
        out["closest_history_item"] = out["history"][0]["item_id"]
        out["similarity"] = out["history"][0]["similarity"]
    return out


def explain(loaded: Loaded, history: list[Any], profile: str | None, context: dict[str, Any], items: list[RecommendedItem]) -> Explanation:
    """What the user vector was made of (the per-item reasons come from the service)."""
    svc = loaded.service
    frame = context_frame(context, svc.known_context_keys)[[S.TIMESTAMP, *svc.context_columns]]
    ctx = jsonable_encoder(frame.row(0, named=True))
    return Explanation(
        history_length=len(history),
        recent_history=history[-10:],
        cold_start=not len(svc.to_catalogue(history)),
        profile_used=profile is not None,
        context=ctx,
    )


def set_compute_threads(n: int) -> None:
    """Intra-op threads of torch and FAISS (OpenMP) for this process. Serving parallelises across requests, so 1
    is usually best: on a busy machine, per-request thread teams spin and wait for each other (measured: one user
    encode took 35 ms with 1 thread and 550 ms with 2 on a 2-core machine under load)."""
    import faiss
    import torch

    if n >= 1:
        torch.set_num_threads(int(n))
        faiss.omp_set_num_threads(int(n))


def _finite(value: Any) -> Any:
    """NaN/inf floats (not valid JSON) become None."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("recsys")
    except Exception:  # noqa: BLE001
        return "0"
