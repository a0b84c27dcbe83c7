"""What must hold the same at both front doors, whatever the upstream:
response headers, request ids, scripted answers arriving verbatim, stop
sequences, the model list; plus liveness and readiness over plain HTTP.

Parametrized over `door` (the OpenAI or the Anthropic protocol, with its
SDK), and over `model` where the upstream kind matters.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from sdk_support import ALIASES, MISSING_KEY_ENV, SCRIPTED_REPLY, SCRIPTED_REPLY_TEXT, SERVED_BY, Door

QUESTION = "Tell me something about sailing boats."

streamed = pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])


@streamed
def test_headers_name_the_provider(door: Door, client: Any, model: str, stream: bool) -> None:
    headers, text = door.exchange(client, model, QUESTION, stream=stream)
    provider, upstream_model = SERVED_BY[model]
    assert headers.get("x-request-id")
    assert headers.get("x-keel-provider") == provider
    assert headers.get("x-keel-model") == upstream_model
    content_type = "text/event-stream" if stream else "application/json"
    assert headers["content-type"].startswith(content_type)
    assert text.strip()


@streamed
def test_client_request_id_is_echoed(door: Door, client: Any, stream: bool) -> None:
    request_id = f"sdk-test-{uuid.uuid4()}"
    headers, _ = door.exchange(client, "sim", QUESTION, stream=stream, extra_headers={"x-request-id": request_id})
    assert headers.get("x-request-id") == request_id


@streamed
def test_scripted_reply_arrives_verbatim(door: Door, client: Any, model: str, stream: bool) -> None:
    assert door.create(client, model, SCRIPTED_REPLY, stream=stream) == SCRIPTED_REPLY_TEXT


@streamed
def test_stop_sequence_cuts_the_text(door: Door, client: Any, model: str, stream: bool) -> None:
    full = door.create(client, model, QUESTION)
    stop = full.split()[1]  # the simulator's replies begin "Simulated reply to: ..."
    cut = door.create(client, model, QUESTION, stream=stream, **{door.stop_param: [stop]})
    assert cut == full[: full.index(stop)]


def test_models(door: Door, client: Any) -> None:
    ids = [m.id for m in client.models.list()]
    assert set(ALIASES) <= set(ids)
    assert client.models.retrieve("via-anthropic").id == "via-anthropic"
    with pytest.raises(door.sdk.NotFoundError):
        client.models.retrieve("no-such-model")


def test_healthz(http: httpx.Client) -> None:
    resp = http.get("/healthz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


def test_readyz(http: httpx.Client) -> None:
    resp = http.get("/readyz")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["status"] == "ready"
    assert body["models"] == len(ALIASES)
    assert body["routable_models"] == len(SERVED_BY)
    providers = {p["name"]: p for p in body["providers"]}
    assert {n for n, p in providers.items() if p["available"]} == {"sim", "up-openai", "up-anthropic"}
    assert MISSING_KEY_ENV in providers["keyless"]["reason"]
