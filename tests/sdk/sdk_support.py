"""Shared constants and helpers for the SDK end-to-end suite.

Kept out of conftest.py so test modules can import them by name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any, NamedTuple

import anthropic
import httpx
import openai

HOST = "127.0.0.1"
CLIENT_TIMEOUT = 10.0
MISSING_KEY_ENV = "KEEL_TEST_MISSING_KEY"

# Model alias → (the provider that serves it, the model name sent upstream).
SERVED_BY = {
    "sim": ("sim", "keel-sim"),
    "via-openai": ("up-openai", "upstream-gpt"),
    "via-anthropic": ("up-anthropic", "upstream-claude"),
}
ALIASES = [*SERVED_BY, "unavailable"]

# Trigger phrases of sim-script.toml.
UPSTREAM_503 = "trigger:upstream-503"
UPSTREAM_429 = "trigger:upstream-429"
UPSTREAM_400 = "trigger:upstream-400"
STREAM_CUT = "trigger:stream-cut"
STREAM_ERROR = "trigger:stream-error"
# Both break after three stream events: the start and two words.
BROKEN_STREAM_PREFIX = "one two "
SCRIPTED_TOOL = "trigger:scripted-tool"
SCRIPTED_TOOL_CALL = ("lookup_order", {"order_id": 42, "express": True})
SCRIPTED_JSON = "trigger:scripted-json"
SCRIPTED_JSON_VALUE = {"status": "shipped", "items": [1, 2]}
SCRIPTED_REPLY = "trigger:scripted-reply"
SCRIPTED_REPLY_TEXT = "The quick brown fox jumps over the lazy dog."
SCRIPTED_RETRY_AFTER = "7"

# What the tool-calling tests answer on the tool's behalf.
TOOL_RESULT = "sunny and 21 degrees"

# Tools, as one JSON Schema each, rendered per protocol below.
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
}
TIME_SCHEMA = {
    "type": "object",
    "properties": {"timezone": {"type": "string"}},
    "required": ["timezone"],
}
ORDER_SCHEMA = {
    "type": "object",
    "properties": {"order_id": {"type": "integer"}, "express": {"type": "boolean"}},
    "required": ["order_id"],
}
# Without a script rule or a forced choice, the simulator calls the first tool.
TOOLS = {
    "get_weather": ("Current weather in a city.", WEATHER_SCHEMA),
    "get_time": ("Current time in a timezone.", TIME_SCHEMA),
    "lookup_order": ("Status of an order.", ORDER_SCHEMA),
}


def openai_tools() -> list[dict[str, Any]]:
    return [
        {"type": "function", "function": {"name": n, "description": d, "parameters": s}}
        for n, (d, s) in TOOLS.items()
    ]


def anthropic_tools() -> list[dict[str, Any]]:
    return [{"name": n, "description": d, "input_schema": s} for n, (d, s) in TOOLS.items()]


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def assert_matches_schema(value: Any, schema: dict[str, Any]) -> None:
    """The subset of JSON Schema the tests use: object, required, property types, enum."""
    kinds = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "object": dict, "array": list}
    assert isinstance(value, kinds[schema["type"]]), f"{value!r} is not {schema['type']}"
    if "enum" in schema:
        assert value in schema["enum"], f"{value!r} not in {schema['enum']}"
    if schema["type"] == "object":
        for key in schema.get("required", []):
            assert key in value, f"required key {key!r} missing from {value!r}"
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                assert_matches_schema(value[key], sub)
    if schema["type"] == "array" and "items" in schema:
        for item in value:
            assert_matches_schema(item, schema["items"])


# --- OpenAI streams -------------------------------------------------------


def openai_stream_text(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def openai_stream_tool_calls(chunks: list[Any]) -> dict[int, dict[str, str]]:
    """`delta.tool_calls` fragments accumulated by index: {index: {id, name, arguments}}."""
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for frag in choice.delta.tool_calls or []:
                call = calls.setdefault(frag.index, {"id": "", "name": "", "arguments": ""})
                if frag.id:
                    call["id"] = frag.id
                if frag.function and frag.function.name:
                    call["name"] += frag.function.name
                if frag.function and frag.function.arguments:
                    call["arguments"] += frag.function.arguments
    return calls


def openai_finish_reason(chunks: list[Any]) -> str | None:
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(reasons) <= 1, f"several finish reasons: {reasons}"
    return reasons[0] if reasons else None


# --- Front doors, for what must hold identically at both --------------------


def text_of(message: Any) -> str:
    """The text of an Anthropic message."""
    return "".join(b.text for b in message.content if b.type == "text")


class Exchange(NamedTuple):
    headers: httpx.Headers
    text: str


@dataclass(frozen=True)
class Door:
    """A front door of keel: the protocol, its path, its SDK and its error shape."""

    name: str
    sdk: ModuleType
    path: str

    def body(self, model: str, text: str, **extra: Any) -> dict[str, Any]:
        """A minimal valid request body, for raw HTTP."""
        body: dict[str, Any] = {"model": model, "messages": user(text)}
        if self.name == "anthropic":
            body["max_tokens"] = 64
        return body | extra

    @property
    def stop_param(self) -> str:
        return "stop" if self.name == "openai" else "stop_sequences"

    def _request(self, client: Any, model: str, text: str, extra: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """The SDK resource to call and its arguments, for one user turn."""
        if self.name == "openai":
            return client.chat.completions, dict(model=model, messages=user(text), **extra)
        return client.messages, dict(model=model, max_tokens=64, messages=user(text), **extra)

    def _pieces(self, parsed: Any, stream: bool) -> Iterator[str]:
        """The text of a parsed response, or of a stream delta by delta."""
        if not stream:
            if self.name == "openai":
                yield parsed.choices[0].message.content or ""
            else:
                yield text_of(parsed)
            return
        for item in parsed:
            if self.name == "openai":
                if item.choices and item.choices[0].delta.content:
                    yield item.choices[0].delta.content
            elif item.type == "content_block_delta" and item.delta.type == "text_delta":
                yield item.delta.text

    def exchange(self, client: Any, model: str, text: str, *, stream: bool = False, **extra: Any) -> Exchange:
        """One chat turn through the SDK: the response headers and the whole text."""
        resource, kwargs = self._request(client, model, text, extra)
        with resource.with_streaming_response.create(stream=stream, **kwargs) as raw:
            return Exchange(raw.headers, "".join(self._pieces(raw.parse(), stream)))

    def create(self, client: Any, model: str, text: str, *, stream: bool = False, **extra: Any) -> str:
        """One chat turn through the SDK; returns the text (a stream is read to the end)."""
        return self.exchange(client, model, text, stream=stream, **extra).text

    def stream_text(self, client: Any, model: str, text: str, **extra: Any) -> Iterator[str]:
        """One streamed chat turn through the SDK, yielding text deltas as they arrive."""
        resource, kwargs = self._request(client, model, text, extra)
        return self._pieces(resource.create(stream=True, **kwargs), stream=True)

    def error(self, response: httpx.Response) -> dict[str, Any]:
        """Asserts the body is this protocol's error shape; returns the inner error object."""
        assert response.headers["content-type"].startswith("application/json"), response.headers
        body = response.json()
        if self.name == "openai":
            assert set(body) == {"error"}, body
            err = body["error"]
            assert set(err) == {"message", "type", "param", "code"}, err
            assert err["param"] is None or isinstance(err["param"], str), err
            assert err["code"] is None or isinstance(err["code"], str), err
        else:
            assert body.get("type") == "error", body
            err = body["error"]
            assert {"type", "message"} <= set(err), err
        assert isinstance(err["type"], str) and err["type"], err
        assert isinstance(err["message"], str) and err["message"], err
        return err

    def error_types(self, status: int) -> set[str] | None:
        """The error `type`s this protocol allows for a status, where it fixes them."""
        if self.name == "openai":
            fixed = {400: "invalid_request_error", 404: "invalid_request_error", 413: "invalid_request_error",
                     429: "rate_limit_error"}
            if status >= 500:
                return {"server_error"}
        else:
            fixed = {400: "invalid_request_error", 404: "not_found_error", 413: "request_too_large",
                     429: "rate_limit_error"}
            if status >= 500:
                return {"api_error", "overloaded_error"}
        return {fixed[status]} if status in fixed else None


DOORS = [
    Door("openai", openai, "/v1/chat/completions"),
    Door("anthropic", anthropic, "/v1/messages"),
]


def parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:  # pragma: no cover - the assertion message is the point
        raise AssertionError(f"not JSON: {text!r} ({e})") from None
