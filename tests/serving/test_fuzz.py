"""Property-based fuzzing: arbitrary JSON bodies for POST /recommend and arbitrary path values never give a 5xx."""

from __future__ import annotations

from urllib.parse import quote

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytestmark = pytest.mark.slow

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)

json_scalar = st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
json_value = st.recursive(json_scalar, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
ids = st.integers(min_value=-5, max_value=200) | st.integers(min_value=-(2**70), max_value=2**70) | st.text(max_size=6) | json_value
context_values = st.sampled_from(["evening", "morning", "mobile", "tv", "sat", "25", "", "2024-05-01T10:00:00", "9999-12-31"]) | json_scalar
contexts = st.dictionaries(
    st.sampled_from(["time", "time_of_day", "hour", "weekday", "timestamp", "device", "moon"]) | st.text(max_size=6), context_values, max_size=4
)
bodies = st.fixed_dictionaries(
    {},
    optional={
        "user_id": ids,
        "history": st.lists(ids, max_size=6) | json_value,
        "profile": st.text(max_size=40) | json_value,
        "context": contexts | json_value,
        "k": st.integers(min_value=-3, max_value=1200) | json_value,
        "exclude": st.lists(ids, max_size=4) | json_value,
        "explain": st.booleans() | json_value,
        "rerank": st.none() | st.booleans() | json_value,
        "candidates": st.integers(min_value=-3, max_value=1200) | json_value,
    },
) | json_value


@pytest.fixture(scope="module")
def client(served):
    return served[0]


@SETTINGS
@given(body=bodies)
def test_post_recommend_never_5xx(client, body):
    r = client.post("/recommend", json=body)
    assert r.status_code < 500, (body, r.status_code, r.text)
    assert r.status_code in (200, 400, 404, 422), (body, r.status_code, r.text)  # 400: rerank on a server without one


@SETTINGS
@given(raw=st.binary(max_size=64) | st.sampled_from([b'{"k": Infinity}', b'{"history": [1], "context": {"device": NaN}}', b'{"user_id": -Infinity}']))
def test_post_raw_bytes_never_5xx(client, raw):
    r = client.post("/recommend", content=raw, headers={"content-type": "application/json"})
    assert r.status_code < 500, (raw, r.status_code, r.text)


@SETTINGS
@given(
    user=st.text(max_size=12) | st.integers(min_value=-(2**70), max_value=2**70).map(str),
    k=st.none() | st.integers(min_value=-2, max_value=1500).map(str) | st.text(max_size=4),
    context=st.none() | st.text(max_size=30),
    explain=st.none() | st.sampled_from(["true", "false", "1", "yes", "maybe"]),
    item=st.text(max_size=12),
    rerank=st.none() | st.sampled_from(["true", "false", "0", "maybe"]),
    candidates=st.none() | st.integers(min_value=-2, max_value=1500).map(str) | st.text(max_size=4),
    exclude=st.none() | st.text(max_size=20) | st.lists(st.integers(min_value=-3, max_value=300).map(str), max_size=5).map(",".join),
)
def test_paths_never_5xx(client, user, k, context, explain, item, rerank, candidates, exclude):
    given_params = (("k", k), ("context", context), ("explain", explain), ("rerank", rerank), ("candidates", candidates), ("exclude", exclude))
    params = {name: v for name, v in given_params if v is not None}
    r = client.get(f"/recommend/{quote(user, safe='')}", params=params)
    assert r.status_code < 500, (user, params, r.status_code, r.text)
    r = client.get(f"/items/{quote(item, safe='')}")
    assert r.status_code < 500, (item, r.status_code, r.text)


# ------------------------------------------------------------------------------------------ schemathesis
schemathesis = pytest.importorskip("schemathesis")

#: What every generated request's response must satisfy: no 5xx, a documented status code, content type, headers
#: and a body that matches the OpenAPI schema.
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
]


def _without_lifespan(app):
    """The app for schemathesis' ASGI client, which runs the lifespan per client: the ``served`` app is loaded once
    already, and its shutdown would unload it for the other tests."""

    async def asgi(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await app(scope, receive, send)

    return asgi


def test_schemathesis_no_5xx_and_responses_match_the_schema(served):
    """Every operation of the app's own OpenAPI schema, called in process over ASGI (the ``served`` app, its service
    loaded), with a bounded number of generated requests each (schemathesis' strategies driven by hypothesis here:
    its pytest plugin's lazy fixtures do not run under this pytest)."""
    client, _, _ = served
    api = schemathesis.openapi.from_asgi("/openapi.json", _without_lifespan(client.app))
    operations = [result.ok() for result in api.get_all_operations()]
    assert {op.label for op in operations} >= {"GET /recommend/{user_id}", "POST /recommend", "GET /items/{item_id}", "POST /admin/reload"}
    for operation in operations:

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def check(case):
            case.call_and_validate(checks=CHECKS)

        check()
