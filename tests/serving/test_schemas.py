"""The request models refuse what the handlers must never see: coerced types, unknown keys, non-finite context
values, lists and texts over the limits. (Bodies through the real app: tests/serving/test_app.py.)"""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from recsys.serving.schemas import (
    ERRORS,
    MAX_CANDIDATES,
    MAX_K,
    MAX_LIST,
    MAX_PATH_CHARS,
    MAX_PROFILE_CHARS,
    RecommendRequest,
    RecommendResponse,
    ReloadRequest,
)


def test_a_valid_request_keeps_its_values():
    req = RecommendRequest.model_validate_json(
        json.dumps({"user_id": "u7", "history": [3, "b9"], "context": {"device": "tv", "hour": 20, "score": 0.5, "vip": True, "x": None},
                    "k": MAX_K, "candidates": MAX_CANDIDATES, "rerank": False, "explain": True})
    )  # fmt: skip
    assert req.user_id == "u7" and req.history == [3, "b9"] and req.k == MAX_K and req.rerank is False
    assert req.context == {"device": "tv", "hour": 20, "score": 0.5, "vip": True, "x": None}
    assert RecommendRequest.model_validate_json('{"user_id": 1}').k == 20


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"user_id": 1, "k": "5"}, "k"),  # strict: no silent conversion
        ({"user_id": 1, "rerank": 0}, "rerank"),
        ({"user_id": 1, "explain": "yes"}, "explain"),
        ({"user_id": 1, "k": 0}, "k"),
        ({"user_id": 1, "k": MAX_K + 1}, "k"),
        ({"user_id": 1, "candidates": 0}, "candidates"),
        ({"user_id": 1, "candidates": MAX_CANDIDATES + 1}, "candidates"),
        ({"user_id": [1]}, "user_id"),
        ({"history": list(range(MAX_LIST + 1))}, "history"),
        ({"user_id": 1, "exclude": [1.5]}, "exclude"),
        ({"profile": "x" * (MAX_PROFILE_CHARS + 1)}, "profile"),
        ({"user_id": 1, "context": {"device": ["tv"]}}, "context"),
        ({"user_id": 1, "Context": {}}, "Context"),  # keys are case-sensitive: an unknown key
    ],
)
def test_bad_requests_name_the_field(payload, field):
    with pytest.raises(ValidationError) as exc:
        RecommendRequest.model_validate_json(json.dumps(payload))
    assert any(field in map(str, e["loc"]) for e in exc.value.errors()), exc.value.errors()


def test_non_finite_context_numbers_are_refused():
    with pytest.raises(ValidationError):
        RecommendRequest.model_validate_json('{"user_id": 1, "context": {"score": 1e400}}')  # JSON's infinity
    with pytest.raises(ValidationError):
        RecommendRequest.model_validate({"user_id": 1, "context": {"score": float("nan")}})


def test_reload_paths_are_bounded():
    assert ReloadRequest.model_validate_json('{"index": "idx", "rerank": "ranker"}').rerank == "ranker"
    for bad in ({"index": ""}, {"index": "i" * (MAX_PATH_CHARS + 1)}, {"index": "idx", "dataset": ""}, {"index": "idx", "extra": 1}, {}):
        with pytest.raises(ValidationError):
            ReloadRequest.model_validate_json(json.dumps(bad))


def test_response_schema_and_documented_errors():
    resp = RecommendResponse(user_id=None, k=1, items=[{"rank": 1, "item_id": "a", "score": 0.5}], model_fingerprint="m", index_fingerprint="i")
    out = json.loads(resp.model_dump_json())
    assert out["items"][0] == {"rank": 1, "item_id": "a", "score": 0.5, "retrieval_score": None, "rerank_score": None, "title": None, "reasons": {}}
    assert out["ranker_fingerprint"] is None and out["explanation"] is None
    assert set(ERRORS) == {400, 401, 403, 404, 413, 422, 500, 503}
