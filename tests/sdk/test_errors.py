"""Errors at both front doors: the SDK raises its usual exception class with
the right status, and the body has the client protocol's error shape.

Parametrized over `door` (OpenAI or Anthropic protocol, with its SDK) and,
for upstream errors, over `model` (in process, OpenAI upstream, Anthropic
upstream): an upstream's error is mapped, never passed through raw.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from sdk_support import (
    BROKEN_STREAM_PREFIX,
    CLIENT_TIMEOUT,
    MISSING_KEY_ENV,
    SERVED_BY,
    SCRIPTED_RETRY_AFTER,
    STREAM_CUT,
    STREAM_ERROR,
    UPSTREAM_400,
    UPSTREAM_429,
    UPSTREAM_503,
    Door,
)

OVERSIZED = "x" * 70_000  # over the suite's max_body_bytes of 64 KiB


def raises(door: Door, exc: str, call: Any) -> Any:
    """Runs `call`, asserts it raises `door.sdk.<exc>`, returns the exception."""
    with pytest.raises(getattr(door.sdk, exc)) as info:
        call()
    return info.value


def assert_status_error(door: Door, err: Any, status: int) -> dict[str, Any]:
    """The SDK error's status, and the protocol's error shape and type."""
    assert err.status_code == status, err
    body = door.error(err.response)
    if (kinds := door.error_types(status)) is not None:
        assert body["type"] in kinds, body
    assert err.response.headers.get("x-request-id")
    return body


# --- 9. errors keel raises itself -------------------------------------------------


def test_unknown_model(door: Door, client: Any) -> None:
    err = raises(door, "NotFoundError", lambda: door.create(client, "no-such-model", "hello"))
    body = assert_status_error(door, err, 404)
    assert "no-such-model" in body["message"]
    assert err.response.headers.get("x-keel-error-source") == "client"


def test_missing_messages(door: Door, http: httpx.Client) -> None:
    body = door.body("sim", "hello")
    del body["messages"]
    resp = http.post(door.path, json=body)
    assert resp.status_code == 400, resp.text
    err = door.error(resp)
    assert err["type"] == "invalid_request_error"
    assert "messages" in err["message"]
    if door.name == "openai":
        assert err["param"] == "messages", err


@pytest.mark.parametrize(
    "field, value",
    [("messages", "not a list"), ("messages", [{"role": "user", "content": 42}]), ("model", 7)],
    ids=["messages-string", "content-number", "model-number"],
)
def test_wrong_types(door: Door, client: Any, field: str, value: Any) -> None:
    err = raises(door, "BadRequestError", lambda: door.create(client, "sim", "hello", extra_body={field: value}))
    body = assert_status_error(door, err, 400)
    assert field in body["message"], body


def test_malformed_json(door: Door, http: httpx.Client) -> None:
    resp = http.post(door.path, content=b'{"model": "sim", "messages": [', headers={"content-type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert door.error(resp)["type"] == "invalid_request_error"


def test_body_too_large(door: Door, client: Any) -> None:
    err = raises(door, "APIStatusError", lambda: door.create(client, "sim", OVERSIZED))
    body = assert_status_error(door, err, 413)
    assert "65536" in body["message"], body


def test_body_too_large_without_content_length(door: Door, http: httpx.Client) -> None:
    # A chunked body has no Content-Length: the limit must hold while reading.
    payload = json.dumps(door.body("sim", OVERSIZED)).encode()
    chunks = (payload[i : i + 8192] for i in range(0, len(payload), 8192))
    resp = http.post(door.path, content=chunks, headers={"content-type": "application/json"})
    assert resp.status_code == 413, resp.text
    door.error(resp)


def test_unavailable_provider(door: Door, client: Any) -> None:
    err = raises(door, "InternalServerError", lambda: door.create(client, "unavailable", "hello"))
    body = assert_status_error(door, err, 503)
    assert MISSING_KEY_ENV in body["message"], body


def test_unknown_route(door: Door, http: httpx.Client) -> None:
    headers = {"anthropic-version": "2023-06-01"} if door.name == "anthropic" else {}
    resp = http.get("/v1/no-such-route", headers=headers)
    assert resp.status_code == 404
    door.error(resp)


# --- 10. upstream errors, mapped ------------------------------------------------


def assert_from_upstream(door: Door, err: Any, model: str, status: int) -> dict[str, Any]:
    body = assert_status_error(door, err, status)
    assert "upstream" in body["message"], body
    assert err.response.headers.get("x-keel-error-source") == "upstream"
    assert err.response.headers.get("x-keel-provider") == SERVED_BY[model][0]
    return body


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_upstream_503_is_502(door: Door, client: Any, model: str, stream: bool) -> None:
    err = raises(door, "InternalServerError", lambda: door.create(client, model, UPSTREAM_503, stream=stream))
    assert_from_upstream(door, err, model, 502)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_upstream_429_keeps_retry_after(door: Door, client: Any, model: str, stream: bool) -> None:
    err = raises(door, "RateLimitError", lambda: door.create(client, model, UPSTREAM_429, stream=stream))
    assert_from_upstream(door, err, model, 429)
    assert err.response.headers.get("retry-after") == SCRIPTED_RETRY_AFTER


def test_upstream_400_is_400(door: Door, client: Any, model: str) -> None:
    err = raises(door, "BadRequestError", lambda: door.create(client, model, UPSTREAM_400))
    assert_from_upstream(door, err, model, 400)


@pytest.mark.parametrize("trigger", [STREAM_CUT, STREAM_ERROR], ids=["cut", "error-event"])
def test_broken_stream_raises(door: Door, client: Any, model: str, trigger: str) -> None:
    # The upstream stops (or errors) after its first two words: the SDK must
    # raise once it has read them, never end as if the answer were complete,
    # and never hang.
    received: list[str] = []
    started = time.monotonic()
    err = raises(door, "APIError", lambda: received.extend(door.stream_text(client, model, trigger)))
    assert time.monotonic() - started < CLIENT_TIMEOUT
    assert "".join(received) == BROKEN_STREAM_PREFIX
    assert "upstream" in str(err).lower(), err


@pytest.mark.parametrize("trigger", [STREAM_CUT, STREAM_ERROR], ids=["cut", "error-event"])
def test_broken_non_stream_is_502(door: Door, client: Any, model: str, trigger: str) -> None:
    # Non-stream, `cut` drops the connection mid-body and `stream-error` is a 500.
    err = raises(door, "InternalServerError", lambda: door.create(client, model, trigger))
    assert_from_upstream(door, err, model, 502)
