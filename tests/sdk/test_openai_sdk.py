"""The official `openai` SDK against keel's OpenAI front door.

Parametrized over `model` wherever the behaviour must hold for every
upstream kind: in process, and translated to the OpenAI or the Anthropic
protocol and back.
"""

from __future__ import annotations

import base64
import math
import struct
from typing import Any

import openai
import pytest

from sdk_support import (
    SCRIPTED_JSON,
    SCRIPTED_JSON_VALUE,
    SCRIPTED_TOOL,
    SCRIPTED_TOOL_CALL,
    TIME_SCHEMA,
    TOOL_RESULT,
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
    assert resp.created > 1_600_000_000, "`created` is a Unix timestamp"
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


@pytest.mark.parametrize("limit", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_truncates(openai_client: openai.OpenAI, model: str, limit: str) -> None:
    resp = openai_client.chat.completions.create(model=model, messages=QUESTION, **{limit: 3})
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage is not None and 0 < resp.usage.completion_tokens <= 3


# --- 2. streaming --------------------------------------------------------------


def test_stream_equals_non_stream(openai_client: openai.OpenAI, model: str) -> None:
    whole = openai_client.chat.completions.create(model=model, messages=QUESTION)
    chunks = stream(openai_client, model=model, messages=QUESTION)
    assert len(chunks) > 2, "a stream of one chunk is not streaming"
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1, "every chunk of a stream carries the same id"
    assert all(c.created > 1_600_000_000 for c in chunks), "`created` is a Unix timestamp"
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


# --- 3. tool calling -----------------------------------------------------------


@pytest.mark.parametrize(
    "result_content", [TOOL_RESULT, [{"type": "text", "text": TOOL_RESULT}]], ids=["string", "parts"]
)
def test_tool_call_round_trip(openai_client: openai.OpenAI, model: str, result_content: Any) -> None:
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
        {"role": "tool", "tool_call_id": call.id, "content": result_content},
    ]
    second = openai_client.chat.completions.create(model=model, messages=messages, tools=openai_tools())
    answer = second.choices[0]
    assert answer.finish_reason == "stop"
    assert not answer.message.tool_calls
    # The simulator quotes the tool result: proof it arrived as one.
    assert "tool result" in answer.message.content
    assert TOOL_RESULT in answer.message.content


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


def test_stream_helper_final_completion(openai_client: openai.OpenAI, model: str) -> None:
    # The SDK's own accumulator, as agent frameworks use it.
    with openai_client.chat.completions.stream(model=model, messages=WEATHER, tools=openai_tools()) as s:
        final = s.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert_matches_schema(parse_json(call.function.arguments), WEATHER_SCHEMA)


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


JSON_OBJECT = {"type": "json_object"}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON_SCHEMA, "strict": True}}

# The Anthropic messages API has no JSON mode: keel turns `response_format`
# into a system-prompt instruction there, which a real model follows and the
# simulator cannot. So JSON content is asserted where the upstream has a JSON
# mode, and the instruction's arrival where it has not.
json_mode_models = pytest.mark.parametrize("model", ["sim", "via-openai"])
# json_schema reaches Anthropic upstreams as a forced tool call, turned back
# into JSON text: every upstream kind answers it.
json_schema_models = pytest.mark.parametrize("model", ["sim", "via-openai", "via-anthropic"])


@json_mode_models
def test_json_object(openai_client: openai.OpenAI, model: str) -> None:
    resp = openai_client.chat.completions.create(
        model=model, messages=user("Describe a cat as JSON."), response_format=JSON_OBJECT
    )
    assert isinstance(parse_json(resp.choices[0].message.content), dict)


@json_schema_models
@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "stream"])
def test_json_schema(openai_client: openai.OpenAI, model: str, streamed: bool) -> None:
    kwargs: dict[str, Any] = dict(model=model, messages=user("Invent a person."), response_format=JSON_SCHEMA)
    if streamed:
        text = openai_stream_text(stream(openai_client, **kwargs))
    else:
        text = openai_client.chat.completions.create(**kwargs).choices[0].message.content
    assert_matches_schema(parse_json(text), PERSON_SCHEMA)


def test_json_object_reaches_anthropic_upstream_as_instruction(openai_client: openai.OpenAI) -> None:
    messages = user("Invent a person.")
    plain = openai_client.chat.completions.create(model="via-anthropic", messages=messages)
    asked = openai_client.chat.completions.create(model="via-anthropic", messages=messages, response_format=JSON_OBJECT)
    # The simulator counts the system prompt, where the instruction goes.
    assert asked.usage is not None and plain.usage is not None
    assert asked.usage.prompt_tokens > plain.usage.prompt_tokens
    assert asked.choices[0].message.content


def test_scripted_json_reply(openai_client: openai.OpenAI, model: str) -> None:
    resp = openai_client.chat.completions.create(model=model, messages=user(SCRIPTED_JSON))
    assert parse_json(resp.choices[0].message.content) == SCRIPTED_JSON_VALUE


# --- 5. embeddings --------------------------------------------------


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
