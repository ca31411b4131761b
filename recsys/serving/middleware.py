"""ASGI middlewares of the serving app (body size limit, Prometheus request metrics) and its error handlers
(every error is ``{"detail": str}``; only server faults are 5xx)."""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from recsys.errors import RecsysError
from recsys.serving.metrics import UNMATCHED, Metrics
from recsys.serving.schemas import MAX_BODY_BYTES

log = logging.getLogger("recsys.serving")


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


def install_error_handlers(app: FastAPI) -> None:
    """Error shapes: always ``{"detail": str}`` (validation errors add ``errors``); a library error is a 422."""

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
