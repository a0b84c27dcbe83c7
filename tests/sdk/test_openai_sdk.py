"""The official `openai` SDK against keel's OpenAI front door.

Parametrized over `model` wherever the behaviour must hold for every
upstream kind: in process, and translated to the OpenAI or the Anthropic
protocol and back.
"""

from __future__ import annotations

import base64
import math
import struct
import uuid
from typing import Any

import openai
import pytest

from support import (
    ALIASES,
    SCRIPTED_JSON,
    SCRIPTED_JSON_VALUE,
    SCRIPTED_REPLY,
    SCRIPTED_REPLY_TEXT,
    SCRIPTED_TOOL,
    SCRIPTED_TOOL_CALL,
    SERVED_BY,
    TIME_SCHEMA,
    WEATHER_SCHEMA,
    assert_matches_schema,
    openai_finish_reason,
    openai_stream_text,
    openai_stream_tool_calls,
    openai_tools,
    parse_json,
    user,
)

QUESTION = user("Tell me something about sailing boats.")
WEATHER = user("What's the weather in Paris right now?")


def stream(client: openai.OpenAI, **kwargs: Any) -> list[Any]:
    return list(client.chat.completions.create(stream=True, **kwargs))


# --- 1. non-stream -----------------------------------------------------------


def test_completion(openai_client: openai.OpenAI, model: str) -> None:
    resp = openai_client.chat.completions.create(model=model, messages=QUESTION)
    assert resp.id
    assert resp.object == "chat.completion"
    assert isinstance(resp.model, str) and resp.model
    assert len(resp.choices) == 1
    choice = resp.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content.strip()
    assert not choice.message.tool_calls
    assert resp.usage is not None
    assert resp.usage.prompt_tokens > 0
    assert resp.usage.completion_tokens > 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_response_headers_name_the_provider(openai_client: openai.OpenAI, model: str) -> None:
    raw = openai_client.chat.completions.with_raw_response.create(model=model, messages=QUESTION)
    provider, upstream_model = SERVED_BY[model]
    assert raw.headers.get("x-request-id")
    assert raw.headers.get("x-keel-provider") == provider
    assert raw.headers.get("x-keel-model") == upstream_model
    assert raw.parse().choices[0].message.content


def test_client_request_id_is_echoed(openai_client: openai.OpenAI) -> None:
    request_id = f"sdk-test-{uuid.uuid4()}"
    raw = openai_client.chat.completions.with_raw_response.create(
        model="sim", messages=QUESTION, extra_headers={"x-request-id": request_id}
    )
    assert raw.headers.get("x-request-id") == request_id


def test_scripted_reply_arrives_verbatim(openai_client: openai.OpenAI, model: str) -> None:
    resp = openai_client.chat.completions.create(model=model, messages=user(SCRIPTED_REPLY))
    assert resp.choices[0].message.content == SCRIPTED_REPLY_TEXT


def test_max_tokens_truncates(openai_client: openai.OpenAI, model: str) -> None:
    resp = openai_client.chat.completions.create(model=model, messages=QUESTION, max_tokens=3)
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage is not None and 0 < resp.usage.completion_tokens <= 3


# --- 2. streaming --------------------------------------------------------------


def test_stream_equals_non_stream(openai_client: openai.OpenAI, model: str) -> None:
    whole = openai_client.chat.completions.create(model=model, messages=QUESTION)
    chunks = stream(openai_client, model=model, messages=QUESTION)
    assert len(chunks) > 2, "a stream of one chunk is not streaming"
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1, "every chunk of a stream carries the same id"
    # The simulator's answer depends only on the request's content, so the
    # streamed deltas must rebuild the non-stream answer exactly.
    assert openai_stream_text(chunks) == whole.choices[0].message.content
    assert openai_finish_reason(chunks) == "stop"
    assert all(c.usage is None for c in chunks), "usage chunk sent without include_usage"


def test_stream_include_usage(openai_client: openai.OpenAI, model: str) -> None:
    chunks = stream(openai_client, model=model, messages=QUESTION, stream_options={"include_usage": True})
    *body, last = chunks
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.prompt_tokens > 0
    assert last.usage.completion_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.usage is None for c in body), "usage before the final chunk"
    assert openai_stream_text(body).strip()
    assert openai_finish_reason(body) == "stop"


def test_stream_headers(openai_client: openai.OpenAI, model: str) -> None:
    with openai_client.chat.completions.with_streaming_response.create(
        model=model, messages=QUESTION, stream=True
    ) as raw:
        assert raw.headers["content-type"].startswith("text/event-stream")
        assert raw.headers.get("x-keel-provider") == SERVED_BY[model][0]
        assert raw.headers.get("x-request-id")
        assert openai_stream_text(list(raw.parse())).strip()


# --- 3. tool calling -----------------------------------------------------------


def test_tool_call_round_trip(openai_client: openai.OpenAI, model: str) -> None:
    first = openai_client.chat.completions.create(model=model, messages=WEATHER, tools=openai_tools())
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls and len(calls) == 1
    call = calls[0]
    assert call.type == "function"
    assert call.id
    assert call.function.name == "get_weather"
    assert_matches_schema(parse_json(call.function.arguments), WEATHER_SCHEMA)
    assert first.usage is not None and first.usage.completion_tokens > 0

    # Second leg: the assistant's call and the tool's result go back.
    messages = [
        *WEATHER,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny and 21 degrees"},
    ]
    second = openai_client.chat.completions.create(model=model, messages=messages, tools=openai_tools())
    answer = second.choices[0]
    assert answer.finish_reason == "stop"
    assert not answer.message.tool_calls
    # The simulator quotes the tool result: proof it arrived as one.
    assert "tool result" in answer.message.content
    assert "sunny and 21 degrees" in answer.message.content


def test_tool_call_stream(openai_client: openai.OpenAI, model: str) -> None:
    whole = openai_client.chat.completions.create(model=model, messages=WEATHER, tools=openai_tools())
    chunks = stream(openai_client, model=model, messages=WEATHER, tools=openai_tools())
    calls = openai_stream_tool_calls(chunks)
    assert list(calls) == [0]
    assert calls[0]["id"]
    assert calls[0]["name"] == "get_weather"
    arguments = parse_json(calls[0]["arguments"])
    assert_matches_schema(arguments, WEATHER_SCHEMA)
    assert arguments == parse_json(whole.choices[0].message.tool_calls[0].function.arguments)
    assert openai_finish_reason(chunks) == "tool_calls"


def test_tool_choice_forces_function(openai_client: openai.OpenAI, model: str) -> None:
    resp = openai_client.chat.completions.create(
        model=model,
        messages=WEATHER,
        tools=openai_tools(),
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    call = resp.choices[0].message.tool_calls[0]
    assert call.function.name == "get_time"
    assert_matches_schema(parse_json(call.function.arguments), TIME_SCHEMA)


def test_tool_arguments_keep_their_types(openai_client: openai.OpenAI, model: str) -> None:
    resp = openai_client.chat.completions.create(model=model, messages=user(SCRIPTED_TOOL), tools=openai_tools())
    call = resp.choices[0].message.tool_calls[0]
    name, arguments = SCRIPTED_TOOL_CALL
    assert call.function.name == name
    assert parse_json(call.function.arguments) == arguments


# --- 4. response_format --------------------------------------------------------

PERSON_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "active": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "age", "active", "tags"],
    "additionalProperties": False,
}


def test_json_object(openai_client: openai.OpenAI, model: str) -> None:
    resp = openai_client.chat.completions.create(
        model=model, messages=user("Describe a cat as JSON."), response_format={"type": "json_object"}
    )
    assert isinstance(parse_json(resp.choices[0].message.content), dict)


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "stream"])
def test_json_schema(openai_client: openai.OpenAI, model: str, streamed: bool) -> None:
    kwargs: dict[str, Any] = dict(
        model=model,
        messages=user("Invent a person."),
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": PERSON_SCHEMA, "strict": True},
        },
    )
    if streamed:
        text = openai_stream_text(stream(openai_client, **kwargs))
    else:
        text = openai_client.chat.completions.create(**kwargs).choices[0].message.content
    assert_matches_schema(parse_json(text), PERSON_SCHEMA)


def test_scripted_json_reply(openai_client: openai.OpenAI, model: str) -> None:
    resp = openai_client.chat.completions.create(model=model, messages=user(SCRIPTED_JSON))
    assert parse_json(resp.choices[0].message.content) == SCRIPTED_JSON_VALUE


# --- 5. models and embeddings --------------------------------------------------


def test_models_list(openai_client: openai.OpenAI) -> None:
    ids = [m.id for m in openai_client.models.list()]
    assert set(ALIASES) <= set(ids)
    assert openai_client.models.retrieve("sim").id == "sim"


def decode_base64_floats(data: str) -> list[float]:
    raw = base64.b64decode(data)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


@pytest.mark.parametrize("embed_model", ["sim", "via-openai"])
def test_embeddings(openai_client: openai.OpenAI, embed_model: str) -> None:
    # The SDK asks for base64 by default and decodes it to floats itself.
    default = openai_client.embeddings.create(model=embed_model, input=["a", "b"])
    floats = openai_client.embeddings.create(model=embed_model, input=["a", "b"], encoding_format="float")
    for resp in (default, floats):
        assert [d.index for d in resp.data] == [0, 1]
        lengths = {len(d.embedding) for d in resp.data}
        assert len(lengths) == 1 and lengths.pop() > 0
        assert all(isinstance(x, float) and math.isfinite(x) for d in resp.data for x in d.embedding)
        assert resp.usage.prompt_tokens > 0
        assert resp.model
    assert default.data[0].embedding != default.data[1].embedding
    for a, b in zip(default.data, floats.data):
        assert a.embedding == pytest.approx(b.embedding, rel=1e-6, abs=1e-6)


def test_embeddings_base64_on_the_wire(openai_client: openai.OpenAI) -> None:
    raw = openai_client.embeddings.with_raw_response.create(model="sim", input=["a"], encoding_format="base64")
    body = raw.http_response.json()
    data = body["data"][0]["embedding"]
    assert isinstance(data, str)
    floats = openai_client.embeddings.create(model="sim", input=["a"], encoding_format="float")
    assert decode_base64_floats(data) == pytest.approx(floats.data[0].embedding, rel=1e-6, abs=1e-6)
