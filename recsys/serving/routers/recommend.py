"""``GET /recommend/{user_id}`` and ``POST /recommend``: top-k items for a known or a new user, optionally ranked by the learned ranker.

The service comes from the :func:`~recsys.serving.dependencies.current_service` dependency, taken once per request;
the work runs on the thread pool under the :class:`~recsys.serving.limits.RerankGate` (deadline, bounded ranking
queue, abandoned requests stop).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path as PathParam, Query, Request
from fastapi.encoders import jsonable_encoder

from recsys.context import context_frame, parse_context
from recsys.data import schema as S
from recsys.serving.dependencies import current_service, get_gate
from recsys.serving.inputs import check_context, finite, parse_id
from recsys.serving.schemas import (
    ERRORS,
    MAX_CANDIDATES,
    MAX_K,
    MAX_LIST,
    Explanation,
    RecommendedItem,
    RecommendRequest,
    RecommendResponse,
)
from recsys.serving.limits import RerankGate, checkpoint
from recsys.serving.settings import ServeSettings
from recsys.serving.state import TEXT_MODEL_LOCK, Loaded

router = APIRouter(tags=["recommend"])


def reranks(loaded: Loaded, req: RecommendRequest) -> bool:
    """Whether the request will be ranked (the server has a ranking run and the request does not turn it off)."""
    return loaded.service.ranker is not None and req.rerank is not False


def rerank_depth(loaded: Loaded, req: RecommendRequest, settings: ServeSettings) -> int | None:
    """How many retrieved items the ranker reads for the request: its ``candidates``, else the server's depth, at
    most ``max_candidates`` (more is a 422) and the ranking run's depth; never more because of k."""
    if req.candidates is not None and req.candidates > settings.max_candidates:
        raise HTTPException(422, f"candidates: at most {settings.max_candidates} on this server (setting serve.max_candidates), got {req.candidates}")
    if not reranks(loaded, req):
        return None
    return min(req.candidates or loaded.service.ranker.depth, settings.max_candidates, loaded.service.ranker.depth)


def recommend(loaded: Loaded, req: RecommendRequest, settings: ServeSettings) -> RecommendResponse:
    """Answer one request on ``loaded`` (ids parsed as the dataset's, context checked, errors as HTTP)."""
    svc = loaded.service
    depth = rerank_depth(loaded, req, settings)
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
    if not stored and req.profile is None and history is not None and not len(svc.to_catalogue(history)):
        raise HTTPException(422, "none of the history's items is in this catalogue; send items of the catalogue or a profile")
    if req.rerank and svc.ranker is None:
        raise HTTPException(400, "this server has no ranking run (it was started without one): omit rerank or send rerank=false")
    checkpoint()
    call = lambda: svc.recommend(  # noqa: E731
        uid, history=history, profile=req.profile, context=context, k=req.k, exclude=exclude, rerank=req.rerank, depth=depth, explain=req.explain
    )
    if loaded.batcher is None and (req.profile is not None or loaded.uses_text_model):
        with TEXT_MODEL_LOCK:  # (the batcher's worker takes it itself)
            recs = call()
    else:
        recs = call()
    items = [
        RecommendedItem(
            rank=r.rank, item_id=r.item_id, score=r.score, retrieval_score=r.retrieval_score, rerank_score=r.rerank_score,
            title=r.title, reasons=finite(jsonable_encoder(explained(r.reasons))),
        )
        for r in recs
    ]
    explanation = None
    if req.explain:
        explanation = explain(loaded, [*stored, *(history or [])], req.profile, context, items)
    return RecommendResponse(
        user_id=uid, k=req.k, items=items, model_fingerprint=loaded.model_fingerprint,
        index_fingerprint=loaded.index_fingerprint, explanation=explanation,
        ranker_fingerprint=loaded.ranker_fingerprint if any(r.rerank_score is not None for r in recs) else None,
    )


@router.get("/recommend/{user_id}", response_model=RecommendResponse, responses=ERRORS)
async def recommend_user(
    user_id: Annotated[str, PathParam(description="A user of the dataset (integer or string, as the dataset's ids).")],
    request: Request,
    loaded: Annotated[Loaded, Depends(current_service)],
    gate: Annotated[RerankGate, Depends(get_gate)],
    k: Annotated[int, Query(ge=1, le=MAX_K, description="How many items.")] = 20,
    context: Annotated[str | None, Query(max_length=2000, description="e.g. time=evening,device=mobile,weekday=sat")] = None,
    explain: Annotated[bool, Query(description="Add an explanation.")] = False,
    rerank: Annotated[bool | None, Query(description="Rank with the learned ranker (default: yes when the server has one).")] = None,
    candidates: Annotated[int | None, Query(ge=1, le=MAX_CANDIDATES, description="How many retrieved items the ranker reads (at most the server's max_candidates and the run's depth).")] = None,
    exclude: Annotated[str | None, Query(max_length=100_000, description="Comma-separated item ids never to return, e.g. 12,45.")] = None,
) -> RecommendResponse:
    """Top-k items for a known user (their stored history), optionally in a request context."""
    uid = parse_id(user_id, loaded.user_dtype, "user")
    ctx = parse_context(context)
    excluded = [x.strip() for x in exclude.split(",") if x.strip()] if exclude else None
    if excluded is not None and len(excluded) > MAX_LIST:
        raise HTTPException(422, f"exclude: at most {MAX_LIST} item ids")
    req = RecommendRequest.model_construct(
        user_id=uid, history=None, profile=None, context=ctx or None, k=k, exclude=excluded, explain=explain, rerank=rerank, candidates=candidates
    )
    return await gate.run(request, lambda: recommend(loaded, req, gate.settings), reranked=reranks(loaded, req))


@router.post("/recommend", response_model=RecommendResponse, responses=ERRORS)
async def recommend_body(
    req: Annotated[RecommendRequest, Body()],
    request: Request,
    loaded: Annotated[Loaded, Depends(current_service)],
    gate: Annotated[RerankGate, Depends(get_gate)],
) -> RecommendResponse:
    """Top-k items for a known user, or a new user by history and/or profile text; context and exclusions optional."""
    return await gate.run(request, lambda: recommend(loaded, req, gate.settings), reranked=reranks(loaded, req))


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
