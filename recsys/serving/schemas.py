"""The HTTP schema of the serving app: request and response models and the per-request input limits.

Request models are strict (``k: "5"`` or ``rerank: 0`` is a 422, not a silent conversion) and refuse unknown keys.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

#: Largest request body accepted (bytes); larger ones get 413 before any parsing.
MAX_BODY_BYTES = 1 << 20
MAX_K = 1000
#: Longest history / exclude list and profile text accepted in one request.
MAX_LIST = 10_000
MAX_PROFILE_CHARS = 10_000
#: Most retrieved candidates one request may ask to have reranked (the server's ``max_candidates`` setting may cap lower).
MAX_CANDIDATES = 1000

#: Longest path accepted in a reload request (longer ones cannot name a file on any common system).
MAX_PATH_CHARS = 4096

IdValue = Union[StrictInt, StrictStr]
#: Context values: strings, integers, finite floats (JSON 1e400 is infinite), booleans, null.
ContextValue = Union[StrictStr, StrictInt, Annotated[StrictFloat, Field(allow_inf_nan=False)], StrictBool, None]


class RecommendRequest(BaseModel):
    """A known user (``user_id``), or a new user by ``history`` and/or ``profile``; optional request context."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
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
    explain: bool = Field(False, description="Add an explanation: the history and context used; per item the ranker's reasons and feature contributions and the history items behind it.")
    rerank: bool | None = Field(None, description="Rank with the learned ranker (default: yes when the server was started with --rerank).")
    candidates: int | None = Field(None, ge=1, le=MAX_CANDIDATES, description="How many retrieved items the ranker reads (default and most: the ranking run's depth).")


class RecommendedItem(BaseModel):
    rank: int
    item_id: int | str
    score: float = Field(description="What the list is ordered by: the ranker's score when ranked, else the retrieval score.")
    retrieval_score: float | None = Field(None, description="Cosine similarity of user and item vectors (null for an item only another candidate source proposed).")
    rerank_score: float | None = Field(None, description="The learned ranker's score (when ranked).")
    title: str | None = None
    reasons: dict[str, Any] = Field(
        default_factory=dict,
        description="When ranked: sources (the candidate sources that proposed the item); with explain also ranker (reasons a "
        "person reads, strongest first, e.g. 'you watched Heat', 'popular on tv in the evening'), contributions ({feature: "
        "LightGBM pred_contrib}), history (the history items most similar to this one, with their cosine), closest_history_item "
        "and similarity (the first of them).",
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
    ranker_fingerprint: str | None = None
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
    ranker_fingerprint: str | None = None
    loaded_at: str | None = None


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{"index": "artifacts/index-v2"}]})

    index: str = Field(min_length=1, max_length=MAX_PATH_CHARS, description="Index directory (from `recsys build-index`).")
    dataset: str | None = Field(None, min_length=1, max_length=MAX_PATH_CHARS, description="Dataset directory (default: the one recorded in the index).")
    run: str | None = Field(None, min_length=1, max_length=MAX_PATH_CHARS, description="Retriever run directory (default: the one recorded in the index).")
    rerank: str | None = Field(None, min_length=1, max_length=MAX_PATH_CHARS, description="Ranking run to load with it (default: the current one, if any; it must be built on the new model).")


class ReloadResponse(BaseModel):
    status: str
    seconds: float
    previous: ReadyResponse
    current: ReadyResponse


class ErrorResponse(BaseModel):
    detail: str

#: The error responses every endpoint documents (always ``{"detail": str}``).
ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 413, 422, 500, 503)}
