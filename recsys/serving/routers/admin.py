"""``POST /admin/reload``: load another index (and run/dataset) fully, then swap it in; token-protected."""

from __future__ import annotations

import hmac
import logging
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from recsys.errors import RecsysError
from recsys.serving.dependencies import get_holder, get_metrics
from recsys.serving.metrics import Metrics
from recsys.serving.schemas import ERRORS, ReadyResponse, ReloadRequest, ReloadResponse
from recsys.serving.state import ServiceHolder, load_service

log = logging.getLogger("recsys.serving")
router = APIRouter(tags=["operations"])


def check_admin_token(request: Request, authorization: str | None, x_admin_token: str | None) -> None:
    """404 when the app has no admin token (the endpoint does not exist), 401 without a token, 403 for a wrong one."""
    token = request.app.state.admin_token
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


@router.post("/admin/reload", response_model=ReloadResponse, responses=ERRORS)
async def reload(
    req: ReloadRequest,
    request: Request,
    holder: Annotated[ServiceHolder, Depends(get_holder)],
    metrics: Annotated[Metrics, Depends(get_metrics)],
    authorization: Annotated[str | None, Header(description="Bearer <token> ($RECSYS_ADMIN_TOKEN).")] = None,
    x_admin_token: Annotated[str | None, Header(description="Alternative to Authorization: the token itself.")] = None,
) -> ReloadResponse:
    """Load another index (and run/dataset) fully, then swap atomically; a failed load keeps the old one serving."""
    check_admin_token(request, authorization, x_admin_token)
    options = request.app.state.load_options
    for name, path in (("index", req.index), ("dataset", req.dataset), ("run", req.run), ("rerank", req.rerank)):
        if path is not None and "\x00" in path:
            raise HTTPException(422, f"{name}: a path cannot contain a NUL character")
    async with holder.reload_lock:
        old = holder.current
        previous = old.describe() if old is not None else ReadyResponse(status="loading")
        rerank = req.rerank or (old.rerank_run if old is not None else None)
        del old  # hold no reference to the service being replaced
        start = time.perf_counter()
        try:
            loaded = await run_in_threadpool(load_service, req.index, dataset_dir=req.dataset, run_dir=req.run, rerank_run=rerank, **options)
        except RecsysError as exc:
            metrics.reload("client_error")
            message = str(exc).replace("pass --run", 'send "run"').replace("pass --dataset", 'send "dataset"')  # the library speaks CLI
            raise HTTPException(400, f"reload failed, still serving the previous index: {message}") from None
        except OSError as exc:  # a path the OS refuses (name too long, not readable, ...)
            metrics.reload("client_error")
            reason = exc.strerror or type(exc).__name__
            raise HTTPException(400, f"reload failed, still serving the previous index: cannot read {_short(req.index)}: {reason}") from None
        except Exception as exc:  # noqa: BLE001 - any failure leaves the old service in place
            metrics.reload("server_error")
            log.exception("reload of %s failed", req.index)
            raise HTTPException(500, f"reload failed, still serving the previous index: {type(exc).__name__}: {exc}") from None
        request.app.state.publish(loaded)
        metrics.reload("ok")
        log.info("reloaded: index %s (model %s)", req.index, loaded.model_fingerprint)
    return ReloadResponse(status="reloaded", seconds=round(time.perf_counter() - start, 3), previous=previous, current=loaded.describe())


def _short(path: str, limit: int = 120) -> str:
    """A path for an error message, cut in the middle when long."""
    return repr(path) if len(path) <= limit else repr(path[: limit // 2] + "..." + path[-limit // 2 :])
