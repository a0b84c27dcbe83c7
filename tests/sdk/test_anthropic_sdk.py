"""The official `anthropic` SDK against keel's Anthropic front door.

Parametrized over `model` wherever the behaviour must hold for every
upstream kind: in process, and translated to the OpenAI or the Anthropic
protocol and back.
"""

from __future__ import annotations

import re
from typing import Any

import anthropic
import pytest

from sdk_support import (
    SCRIPTED_TOOL,
    SCRIPTED_TOOL_CALL,
    TIME_SCHEMA,
    TOOL_RESULT,
    WEATHER_SCHEMA,
    anthropic_tools,
    text_of,
    assert_matches_schema,
    user,
)

SYSTEM = "You are a terse assistant who answers in one sentence."
QUESTION = user("Tell me something about sailing boats.")
WEATHER = user("What's the weather in Paris right now?")
MAX_TOKENS = 256

# The raw events of one streamed message, in the order the protocol fixes.
EVENT_ORDER = re.compile(
    r"message_start"
    r"( content_block_start( content_block_delta)+ content_block_stop)+"
    r" message_delta message_stop"
)
RAW_EVENTS = {
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
}


def tool_use_of(message: Any) -> Any:
    blocks = [b for b in message.content if b.type == "tool_use"]
    assert len(blocks) == 1, message.content
    return blocks[0]


def assert_event_order(types: list[str]) -> None:
    sequence = " ".join(t for t in types if t in RAW_EVENTS)
    assert EVENT_ORDER.fullmatch(sequence), sequence


# --- 6. non-stream -------------------------------------------------------------


def test_message(anthropic_client: anthropic.Anthropic, model: str) -> None:
    msg = anthropic_client.messages.create(model=model, max_tokens=MAX_TOKENS, system=SYSTEM, messages=QUESTION)
    assert msg.id
    assert msg.type == "message"
    assert msg.role == "assistant"
    assert isinstance(msg.model, str) and msg.model
    assert len(msg.content) == 1
    assert msg.content[0].type == "text"
    assert msg.content[0].text.strip()
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0
    assert msg.usage.output_tokens > 0


def test_system_prompt_reaches_the_upstream(anthropic_client: anthropic.Anthropic, model: str) -> None:
    # The simulator counts the system prompt in input tokens.
    without = anthropic_client.messages.create(model=model, max_tokens=MAX_TOKENS, messages=QUESTION)
    with_system = anthropic_client.messages.create(
        model=model, max_tokens=MAX_TOKENS, system=SYSTEM, messages=QUESTION
    )
    assert with_system.usage.input_tokens > without.usage.input_tokens


def test_system_blocks_equal_system_string(anthropic_client: anthropic.Anthropic, model: str) -> None:
    as_string = anthropic_client.messages.create(model=model, max_tokens=MAX_TOKENS, system=SYSTEM, messages=QUESTION)
    as_blocks = anthropic_client.messages.create(
        model=model,
        max_tokens=MAX_TOKENS,
        system=[{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}],
        messages=QUESTION,
    )
    assert as_blocks.usage.input_tokens == as_string.usage.input_tokens


def test_max_tokens_stops_early(anthropic_client: anthropic.Anthropic, model: str) -> None:
    msg = anthropic_client.messages.create(model=model, max_tokens=3, messages=QUESTION)
    assert msg.stop_reason == "max_tokens"
    assert 0 < msg.usage.output_tokens <= 3
    full = anthropic_client.messages.create(model=model, max_tokens=MAX_TOKENS, messages=QUESTION)
    assert len(text_of(msg)) < len(text_of(full))


# --- 7. streaming --------------------------------------------------------------


def test_stream_helper(anthropic_client: anthropic.Anthropic, model: str) -> None:
    kwargs: dict[str, Any] = dict(model=model, max_tokens=MAX_TOKENS, system=SYSTEM, messages=QUESTION)
    whole = anthropic_client.messages.create(**kwargs)
    types: list[str] = []
    deltas: list[str] = []
    with anthropic_client.messages.stream(**kwargs) as stream:
        for event in stream:
            types.append(event.type)
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                deltas.append(event.delta.text)
        final = stream.get_final_message()
    assert_event_order(types)
    assert len(deltas) > 1, "a stream of one delta is not streaming"
    assert text_of(final) == "".join(deltas)
    # Deterministic simulator: streaming rebuilds the non-stream answer.
    assert text_of(final) == text_of(whole)
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens > 0
    assert final.usage.output_tokens > 0


def test_stream_raw_events(anthropic_client: anthropic.Anthropic, model: str) -> None:
    events = list(
        anthropic_client.messages.create(model=model, max_tokens=MAX_TOKENS, messages=QUESTION, stream=True)
    )
    assert_event_order([e.type for e in events])
    start = events[0].message
    assert start.id and start.role == "assistant" and start.content == []
    assert start.usage.input_tokens > 0
    delta = next(e for e in events if e.type == "message_delta")
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens > 0
    assert "".join(e.delta.text for e in events if e.type == "content_block_delta").strip()


def test_stream_max_tokens(anthropic_client: anthropic.Anthropic, model: str) -> None:
    with anthropic_client.messages.stream(model=model, max_tokens=3, messages=QUESTION) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "max_tokens"


# --- 8. tool use ---------------------------------------------------------------


@pytest.mark.parametrize(
    "result_content", [TOOL_RESULT, [{"type": "text", "text": TOOL_RESULT}]], ids=["string", "blocks"]
)
def test_tool_use_round_trip(anthropic_client: anthropic.Anthropic, model: str, result_content: Any) -> None:
    first = anthropic_client.messages.create(
        model=model, max_tokens=MAX_TOKENS, messages=WEATHER, tools=anthropic_tools()
    )
    assert first.stop_reason == "tool_use"
    block = tool_use_of(first)
    assert block.id
    assert block.name == "get_weather"
    assert isinstance(block.input, dict)
    assert_matches_schema(block.input, WEATHER_SCHEMA)

    # Second leg: the assistant's tool_use and the user's tool_result go back.
    messages = [
        *WEATHER,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": block.id, "content": result_content}],
        },
    ]
    second = anthropic_client.messages.create(
        model=model, max_tokens=MAX_TOKENS, messages=messages, tools=anthropic_tools()
    )
    assert second.stop_reason == "end_turn"
    assert all(b.type == "text" for b in second.content)
    # The simulator quotes the tool result: proof it arrived as one.
    assert "tool result" in text_of(second)
    assert TOOL_RESULT in text_of(second)


def test_tool_use_stream(anthropic_client: anthropic.Anthropic, model: str) -> None:
    kwargs: dict[str, Any] = dict(model=model, max_tokens=MAX_TOKENS, messages=WEATHER, tools=anthropic_tools())
    whole = anthropic_client.messages.create(**kwargs)
    types: list[str] = []
    partial_json: list[str] = []
    with anthropic_client.messages.stream(**kwargs) as stream:
        for event in stream:
            types.append(event.type)
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                partial_json.append(event.delta.partial_json)
        final = stream.get_final_message()
    assert_event_order(types)
    assert partial_json, "no input_json_delta events"
    block = tool_use_of(final)
    assert block.name == "get_weather"
    assert isinstance(block.input, dict)
    assert_matches_schema(block.input, WEATHER_SCHEMA)
    assert block.input == tool_use_of(whole).input
    assert final.stop_reason == "tool_use"


def test_tool_choice_forces_tool(anthropic_client: anthropic.Anthropic, model: str) -> None:
    msg = anthropic_client.messages.create(
        model=model,
        max_tokens=MAX_TOKENS,
        messages=WEATHER,
        tools=anthropic_tools(),
        tool_choice={"type": "tool", "name": "get_time"},
    )
    block = tool_use_of(msg)
    assert block.name == "get_time"
    assert_matches_schema(block.input, TIME_SCHEMA)


def test_tool_input_keeps_its_types(anthropic_client: anthropic.Anthropic, model: str) -> None:
    msg = anthropic_client.messages.create(
        model=model, max_tokens=MAX_TOKENS, messages=user(SCRIPTED_TOOL), tools=anthropic_tools()
    )
    name, arguments = SCRIPTED_TOOL_CALL
    block = tool_use_of(msg)
    assert block.name == name
    assert block.input == arguments
