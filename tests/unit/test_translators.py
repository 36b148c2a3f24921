"""OpenAI chat <-> Anthropic Messages translation, checked against the official SDKs.

Whatever we hand a client is validated with that API's own SDK types (and, end to end,
parsed by the SDK client itself over a mock transport), because that is what a real
client does with it. Requests are checked field by field.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.shared import ErrorObject
from pydantic import TypeAdapter

from meshroute.ext_proc.translators import parse_arguments, split_data_url
from meshroute.ext_proc.translators.anthropic_client import (
    StreamToAnthropic,
    error_from_openai,
    request_to_openai,
    response_from_openai,
)
from meshroute.ext_proc.translators.openai_client import (
    StreamToOpenAI,
    error_from_anthropic,
    request_to_anthropic,
    response_from_anthropic,
)
from meshroute.ext_proc.translators.sse import SSESplitter, StreamTranslator

JSON = dict[str, Any]
STREAM_EVENT: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
CREATED = 1_700_000_000
PNG = "iVBORw0KGgo="
PNG_URL = f"data:image/png;base64,{PNG}"
PHOTO_URL = "https://x.test/a.jpg"

# --- building blocks of both APIs (written out here, independently of the code) -------


def text(value: str) -> JSON:
    return {"type": "text", "text": value}


def image_block(source: JSON) -> JSON:
    return {"type": "image", "source": source}


PNG_BLOCK = image_block({"type": "base64", "media_type": "image/png", "data": PNG})
PHOTO_BLOCK = image_block({"type": "url", "url": PHOTO_URL})


def image_part(url: str) -> JSON:
    return {"type": "image_url", "image_url": {"url": url}}


def tool_use(call_id: str, name: str, tool_input: JSON) -> JSON:
    return {"type": "tool_use", "id": call_id, "name": name, "input": tool_input}


def tool_result(call_id: str, content: Any = None) -> JSON:
    result = {"type": "tool_result", "tool_use_id": call_id}
    return result if content is None else result | {"content": content}


def call(call_id: str, name: str, arguments: str) -> JSON:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def call_delta(index: int, arguments: str, head: tuple[str, str] | None = None) -> JSON:
    """A streamed tool-call fragment; the first names the call: head=(id, name)."""
    if head is None:
        return {"tool_calls": [{"index": index, "function": {"arguments": arguments}}]}
    return {"tool_calls": [{"index": index, **call(head[0], head[1], arguments)}]}


def user(content: Any) -> Any:
    """A user message (typed Any: the SDKs' own message types are TypedDicts)."""
    return {"role": "user", "content": content}


def assistant(content: Any, calls: list[JSON] | None = None) -> Any:
    message = {"role": "assistant", "content": content}
    return message if calls is None else message | {"tool_calls": calls}


WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
WEATHER_ANTHROPIC = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": WEATHER_SCHEMA,
}
WEATHER_OPENAI = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": WEATHER_SCHEMA,
    },
}
USAGE_OPENAI = {
    "prompt_tokens": 120,
    "completion_tokens": 30,
    "total_tokens": 150,
    "prompt_tokens_details": {"cached_tokens": 100},
}
STREAM_USAGE_OPENAI = {
    "prompt_tokens": 50,
    "completion_tokens": 20,
    "total_tokens": 70,
    "prompt_tokens_details": {"cached_tokens": 10},
}
USAGE_ANTHROPIC = {"input_tokens": 20, "cache_read_input_tokens": 100, "output_tokens": 30}


def openai_completion(message: JSON, finish: str, **choice: Any) -> JSON:
    return {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "created": CREATED,
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": message, "finish_reason": finish} | choice],
        "usage": USAGE_OPENAI,
    }


def anthropic_message(content: list[JSON], stop_reason: str | None = "end_turn") -> JSON:
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": USAGE_ANTHROPIC,
    }


# --- upstream streams ------------------------------------------------------------------


def openai_chunk(delta: JSON, finish: str | None = None, **extra: Any) -> JSON:
    choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
    chunk = {
        "id": "chatcmpl-abc",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "gpt-4o-2024-08-06",
        "choices": [choice],
        "usage": None,
    }
    return chunk | extra


def openai_sse(chunks: list[JSON], *, done: bool = True) -> bytes:
    """An OpenAI provider's stream: `data:` events of pretty JSON, `[DONE]` last."""
    body = b"".join(f"data: {json.dumps(chunk)}\n\n".encode() for chunk in chunks)
    return body + (b"data: [DONE]\n\n" if done else b"")


def anthropic_sse(events: list[JSON]) -> bytes:
    """An Anthropic provider's stream: named events."""
    return b"".join(
        f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode() for event in events
    )


def block_start(index: int, block: JSON) -> JSON:
    return {"type": "content_block_start", "index": index, "content_block": block}


def block_delta(index: int, kind: str, **fields: str) -> JSON:
    return {"type": "content_block_delta", "index": index, "delta": {"type": kind, **fields}}


def block_stop(index: int) -> JSON:
    return {"type": "content_block_stop", "index": index}


# Text, then two tool calls (the first's arguments in fragments, the second's whole),
# the finish reason, the usage-only chunk, [DONE]: what OpenAI sends.
OPENAI_STREAM = openai_sse(
    [
        openai_chunk({"role": "assistant", "content": "", "refusal": None}),
        openai_chunk({"content": "Let me check "}),
        openai_chunk({"content": "the weather ☀️ in Zürich."}),
        openai_chunk(call_delta(0, "", head=("call_a", "get_weather"))),
        openai_chunk(call_delta(0, '{"city": ')),
        openai_chunk(call_delta(0, '"Zürich"}')),
        openai_chunk(call_delta(1, '{"tz": "CET"}', head=("call_b", "get_time"))),
        openai_chunk({}, "tool_calls"),
        openai_chunk({}, choices=[], usage=STREAM_USAGE_OPENAI),
    ]
)

# Thinking (which OpenAI chat cannot carry), text, two tool_use blocks, message_delta,
# message_stop, and a ping: what Anthropic sends.
ANTHROPIC_STREAM_EVENTS: list[JSON] = [
    {
        "type": "message_start",
        "message": anthropic_message([], None)
        | {"usage": {"input_tokens": 30, "cache_read_input_tokens": 5, "output_tokens": 1}},
    },
    {"type": "ping"},
    block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
    block_delta(0, "thinking_delta", thinking="The user wants weather."),
    block_delta(0, "signature_delta", signature="c2ln"),
    block_stop(0),
    block_start(1, text("")),
    block_delta(1, "text_delta", text="I'll look that up — "),
    block_delta(1, "text_delta", text="one moment."),
    block_stop(1),
    block_start(2, tool_use("toolu_a", "get_weather", {})),
    block_delta(2, "input_json_delta", partial_json=""),
    block_delta(2, "input_json_delta", partial_json='{"city": "Zür'),
    block_delta(2, "input_json_delta", partial_json='ich"}'),
    block_stop(2),
    block_start(3, tool_use("toolu_b", "get_time", {})),
    block_delta(3, "input_json_delta", partial_json='{"tz": "CET"}'),
    block_stop(3),
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 42},
    },
    {"type": "message_stop"},
]
ANTHROPIC_STREAM = anthropic_sse(ANTHROPIC_STREAM_EVENTS)
OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


# --- reading what we produce -----------------------------------------------------------


def feed_whole(translator: StreamTranslator, data: bytes) -> bytes:
    return translator.feed(data) + translator.finish()


def feed_bytewise(translator: StreamTranslator, data: bytes) -> bytes:
    out = b"".join(translator.feed(data[i : i + 1]) for i in range(len(data)))
    return out + translator.finish()


def events_of(stream: bytes) -> list[tuple[str | None, str]]:
    """(event name, data) of each event: a parser independent of the one under test."""
    assert stream.endswith(b"\n\n")
    events: list[tuple[str | None, str]] = []
    for block in stream.decode().split("\n\n")[:-1]:
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        assert set(fields) <= {"event", "data"}
        events.append((fields.get("event"), fields["data"]))
    return events


def anthropic_events(stream: bytes) -> list[JSON]:
    """The events of an Anthropic stream, each validated with the SDK's own types."""
    events = []
    for name, data in events_of(stream):
        event = json.loads(data)
        assert name == event["type"]
        if name == "error":
            ErrorResponse.model_validate(event)
        else:
            STREAM_EVENT.validate_python(event)
        events.append(event)
    return events


def kinds(events: list[JSON]) -> list[str]:
    return [event["type"] for event in events]


def openai_chunks(stream: bytes) -> list[JSON]:
    """The chunks of an OpenAI stream, each validated as a `ChatCompletionChunk` (or an
    error object); the stream ends with `[DONE]` unless it ends with an error."""
    events = events_of(stream)
    assert all(name is None for name, _ in events)
    *body, (_, last) = events
    chunks = [json.loads(data) for _, data in body]
    if last != "[DONE]":
        chunks.append(json.loads(last))
        ErrorObject.model_validate(chunks[-1]["error"])
    for chunk in chunks[:-1] if last != "[DONE]" else chunks:
        ChatCompletionChunk.model_validate(chunk)
    return chunks


def accumulate_anthropic(events: list[JSON]) -> Message:
    """The final message built from the events, as a client builds it, validated."""
    message: JSON = {}
    partial: dict[int, str] = {}
    for event in events:
        kind, index = event["type"], event.get("index", -1)
        if kind == "message_start":
            message = event["message"]
        elif kind == "content_block_start":
            assert index == len(message["content"])
            message["content"].append(event["content_block"])
        elif kind == "content_block_delta" and event["delta"]["type"] == "text_delta":
            message["content"][index]["text"] += event["delta"]["text"]
        elif kind == "content_block_delta":
            partial[index] = partial.get(index, "") + event["delta"]["partial_json"]
        elif kind == "content_block_stop" and index in partial:
            message["content"][index]["input"] = json.loads(partial[index])
        elif kind == "message_delta":
            message |= event["delta"]
            message["usage"] |= event["usage"]
    return Message.model_validate(message)


def test_the_upstream_fixtures_are_what_the_sdks_describe() -> None:
    for _, data in events_of(OPENAI_STREAM)[:-1]:
        ChatCompletionChunk.model_validate_json(data)
    for event in ANTHROPIC_STREAM_EVENTS:
        if event["type"] != "ping":
            STREAM_EVENT.validate_python(event)
    ChatCompletion.model_validate(openai_completion(assistant("x"), "stop"))
    Message.model_validate(anthropic_message([text("x")]))


# --- SSE splitting ---------------------------------------------------------------------


def test_splitter_reads_fields_comments_and_multiline_data() -> None:
    stream = (
        b": keep-alive comment\n\n"
        b"event: greeting\ndata: first line\ndata:second line\nid: 7\nretry: 10\n\n"
        b"data\n\n"  # a field without a colon: empty data, still an event
        b"event: no-data\n\n"  # no data: not dispatched
        b'data: {"a": 1}\n\n'
    )
    assert SSESplitter().feed(stream) == [
        ("greeting", "first line\nsecond line"),
        ("message", ""),
        ("message", '{"a": 1}'),
    ]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_splitter_accepts_every_line_ending_at_every_byte_boundary(newline: bytes) -> None:
    stream = b"event: e\ndata: \xc3\xbcber\n\ndata: a\ndata: b\n\n".replace(b"\n", newline)
    expected = [("e", "über"), ("message", "a\nb")]
    splitter = SSESplitter()
    # A final lone CR may be the first half of a CRLF: only the next byte (or the end
    # of the body) tells, so an event ending in a lone CR completes one step later.
    assert splitter.feed(stream) + splitter.flush() == expected
    splitter = SSESplitter()
    events = [event for i in range(len(stream)) for event in splitter.feed(stream[i : i + 1])]
    assert events + splitter.flush() == expected


def test_splitter_keeps_a_partial_event_until_its_blank_line() -> None:
    splitter = SSESplitter()
    assert splitter.feed(b"data: one\n\ndata: tw") == [("message", "one")]
    assert splitter.feed(b"o\n") == []
    assert splitter.feed(b"\ndata: three") == [("message", "two")]
    assert splitter.flush() == [("message", "three")]
    assert splitter.flush() == []


# --- shared helpers --------------------------------------------------------------------


def test_tool_arguments_that_are_not_a_json_object_are_kept_raw() -> None:
    assert parse_arguments('{"city": "Oslo"}') == {"city": "Oslo"}
    assert parse_arguments("") == {}
    assert parse_arguments('{"city": "Os') == {"_raw": '{"city": "Os'}
    assert parse_arguments("[1, 2]") == {"_raw": "[1, 2]"}


def test_data_urls() -> None:
    assert split_data_url(PNG_URL) == ("image/png", PNG)
    assert split_data_url("data:image/png;name=a.png;base64,AAAA") == ("image/png", "AAAA")
    assert split_data_url("data:text/plain,hello") is None
    assert split_data_url(PHOTO_URL) is None


# --- Anthropic client, OpenAI provider: requests ---------------------------------------


def test_anthropic_request_system_content_and_parameters() -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 512,
        "system": [
            text("You are terse."),
            text("Answer in French.") | {"cache_control": {"type": "ephemeral"}},
        ],
        "messages": [
            user("Bonjour"),
            assistant([text("Salut.")]),
            user(
                [
                    text("What is in these images?"),
                    PNG_BLOCK,
                    PHOTO_BLOCK,
                    image_block({"type": "file", "file_id": "file_1"}),
                ]
            ),
            user([text("Just one text block.")]),
        ],
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "stop_sequences": ["\n\nHuman:"],
        "metadata": {"user_id": "user-42"},
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "service_tier": "auto",
    }
    assert request_to_openai(body, "gpt-4o-2024-08-06") == {
        "model": "gpt-4o-2024-08-06",
        "messages": [
            {"role": "system", "content": "You are terse.\nAnswer in French."},
            user("Bonjour"),
            assistant("Salut."),
            user([text("What is in these images?"), image_part(PNG_URL), image_part(PHOTO_URL)]),
            user("Just one text block."),
        ],
        "max_completion_tokens": 512,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["\n\nHuman:"],
        "user": "user-42",
    }


def test_anthropic_request_system_string_and_stream() -> None:
    body = {"max_tokens": 10, "system": "Be brief.", "messages": [user("hi")], "stream": True}
    assert request_to_openai(body, "gpt") == {
        "model": "gpt",
        "messages": [{"role": "system", "content": "Be brief."}, user("hi")],
        "max_completion_tokens": 10,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_anthropic_request_tool_round_trip() -> None:
    error_result = tool_result("toolu_2", [text("service down"), PNG_BLOCK]) | {"is_error": True}
    body = {
        "max_tokens": 256,
        "tools": [
            WEATHER_ANTHROPIC,
            {"name": "noop", "input_schema": {"type": "object"}},
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "messages": [
            user("Weather in Oslo and Rome?"),
            assistant(
                [
                    {"type": "thinking", "thinking": "two cities", "signature": "c2ln"},
                    text("Checking both."),
                    tool_use("toolu_1", "get_weather", {"city": "Oslo"}),
                    tool_use("toolu_2", "get_weather", {"city": "Rome"}),
                ]
            ),
            user(
                [
                    tool_result("toolu_1", "4°C, snow"),
                    error_result,
                    text("Also, which is warmer?"),
                ]
            ),
            assistant([tool_use("toolu_3", "noop", {})]),
            user([tool_result("toolu_3")]),
        ],
    }
    assert request_to_openai(body, "gpt") == {
        "model": "gpt",
        "messages": [
            user("Weather in Oslo and Rome?"),
            assistant(
                "Checking both.",
                [
                    call("toolu_1", "get_weather", '{"city":"Oslo"}'),
                    call("toolu_2", "get_weather", '{"city":"Rome"}'),
                ],
            ),
            {"role": "tool", "tool_call_id": "toolu_1", "content": "4°C, snow"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "service down"},
            # A tool message holds only text: the result's image follows in a user turn.
            user([image_part(PNG_URL), text("Also, which is warmer?")]),
            assistant(None, [call("toolu_3", "noop", "{}")]),
            {"role": "tool", "tool_call_id": "toolu_3", "content": ""},
        ],
        "max_completion_tokens": 256,
        "tools": [
            WEATHER_OPENAI,
            {"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}}},
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
    }


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        (
            {"type": "tool", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
        ),
    ],
)
def test_anthropic_tool_choice(choice: JSON, expected: Any) -> None:
    body = {"messages": [], "tools": [WEATHER_ANTHROPIC], "tool_choice": choice}
    translated = request_to_openai(body, "gpt")
    assert translated["tool_choice"] == expected
    assert "parallel_tool_calls" not in translated


def test_a_tool_choice_without_tools_is_dropped_both_ways() -> None:
    server_tool = {"type": "web_search_20250305", "name": "web_search"}
    body: JSON = {"messages": [], "tools": [server_tool], "tool_choice": {"type": "any"}}
    assert request_to_openai(body, "gpt") == {"model": "gpt", "messages": []}
    body = {"messages": [], "tool_choice": "required", "parallel_tool_calls": False}
    assert request_to_anthropic(body, "claude") == {
        "model": "claude",
        "max_tokens": 4096,
        "messages": [],
    }


# --- Anthropic client, OpenAI provider: responses --------------------------------------


def test_openai_text_response_as_anthropic_message() -> None:
    message = response_from_openai(openai_completion(assistant("Hello!"), "stop"), "claude-x")
    Message.model_validate(message)
    assert message == {
        "id": "chatcmpl-abc",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [text("Hello!")],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        # Anthropic counts cache reads apart from input_tokens; OpenAI includes them.
        "usage": {"input_tokens": 20, "output_tokens": 30, "cache_read_input_tokens": 100},
    }


def test_openai_tool_calls_response_as_anthropic_tool_use() -> None:
    calls = [
        call("call_1", "get_weather", '{"city": "Oslo"}'),
        call("call_2", "get_weather", '{"city": "Ro'),
    ]
    completion = openai_completion(assistant("Checking.", calls), "tool_calls")
    ChatCompletion.model_validate(completion)
    message = response_from_openai(completion, "claude")
    assert Message.model_validate(message).stop_reason == "tool_use"
    assert message["content"] == [
        text("Checking."),
        tool_use("call_1", "get_weather", {"city": "Oslo"}),
        tool_use("call_2", "get_weather", {"_raw": '{"city": "Ro'}),
    ]


@pytest.mark.parametrize(
    ("finish", "extra", "expected"),
    [
        ("stop", {}, ("end_turn", None)),
        ("length", {}, ("max_tokens", None)),
        ("tool_calls", {}, ("tool_use", None)),
        ("function_call", {}, ("tool_use", None)),
        ("content_filter", {}, ("refusal", None)),
        ("stop", {"stop_reason": "END"}, ("stop_sequence", "END")),  # vLLM names the match
        ("stop", {"stop_reason": 128001}, ("end_turn", None)),  # vLLM: a stop token id
        ("something_new", {}, ("end_turn", None)),
    ],
)
def test_openai_finish_reasons(finish: str, extra: JSON, expected: tuple[str, str | None]) -> None:
    completion = openai_completion(assistant("x"), finish, **extra)
    message = Message.model_validate(response_from_openai(completion, "claude"))
    assert (message.stop_reason, message.stop_sequence) == expected


def test_openai_stop_after_tool_calls_still_asks_the_client_to_run_them() -> None:
    completion = openai_completion(assistant(None, [call("c", "f", "{}")]), "stop")
    assert response_from_openai(completion, "claude")["stop_reason"] == "tool_use"


def test_openai_refusal_is_an_anthropic_refusal() -> None:
    refusal = assistant(None) | {"refusal": "I can't help with that."}
    message = response_from_openai(openai_completion(refusal, "stop"), "claude")
    assert Message.model_validate(message).stop_reason == "refusal"
    assert message["content"] == [text("I can't help with that.")]


# --- Anthropic client, OpenAI provider: errors -----------------------------------------

OPENAI_ERROR = json.dumps(
    {"error": {"message": "Rate limit reached", "type": "requests", "param": None, "code": "x"}}
).encode()


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (402, "billing_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (409, "invalid_request_error"),
        (422, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
    ],
)
def test_openai_errors_as_anthropic_errors(status: int, expected: str) -> None:
    error = error_from_openai(status, OPENAI_ERROR)
    ErrorResponse.model_validate(error)
    assert error == {"type": "error", "error": {"type": expected, "message": "Rate limit reached"}}


def test_openai_413_is_request_too_large() -> None:
    # Anthropic documents it (Cloudflare sends it) though the SDK's ErrorObject union
    # leaves it out; SDKs pick their exception by status, so clients still cope.
    page = b"<html>413 Request Entity Too Large</html>"
    assert error_from_openai(413, page) == {
        "type": "error",
        "error": {"type": "request_too_large", "message": page.decode()},
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "the upstream provider answered HTTP 502"),
        (b"   ", "the upstream provider answered HTTP 502"),
        (b"upstream connect error", "upstream connect error"),
        (b'{"detail": "Model not loaded"}', "Model not loaded"),
        (b'{"message": "bad gateway"}', "bad gateway"),
        (b'{"error": "plain string error"}', "plain string error"),
        (b'{"error": {"type": "x"}}', "the upstream provider answered HTTP 502"),
        (b"\xff\xfe not utf-8", "\ufffd\ufffd not utf-8"),
        (b"[1, 2]", "[1, 2]"),
    ],
)
def test_error_bodies_of_any_shape(body: bytes, message: str) -> None:
    error = error_from_openai(502, body)
    ErrorResponse.model_validate(error)
    assert error["error"]["message"] == message
    assert error_from_anthropic(502, body)["error"]["message"] == message


# --- Anthropic client, OpenAI provider: streaming --------------------------------------


def test_openai_stream_as_anthropic_events() -> None:
    events = anthropic_events(feed_whole(StreamToAnthropic("claude-x"), OPENAI_STREAM))
    assert [(event["type"], event.get("index")) for event in events] == [
        ("message_start", None),
        *[("content_block_start", 0), ("content_block_delta", 0), ("content_block_delta", 0)],
        *[("content_block_stop", 0), ("content_block_start", 1), ("content_block_delta", 1)],
        *[("content_block_delta", 1), ("content_block_stop", 1), ("content_block_start", 2)],
        *[("content_block_delta", 2), ("content_block_stop", 2)],
        *[("message_delta", None), ("message_stop", None)],
    ]
    assert events[0]["message"]["model"] == "claude-x"
    assert events[0]["message"]["id"] == "chatcmpl-abc"
    assert events[5]["content_block"] == tool_use("call_a", "get_weather", {})
    assert events[6]["delta"] == {"type": "input_json_delta", "partial_json": '{"city": '}
    assert events[9]["content_block"] == tool_use("call_b", "get_time", {})
    assert events[12] == {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"input_tokens": 40, "output_tokens": 20, "cache_read_input_tokens": 10},
    }
    message = accumulate_anthropic(events)
    assert message.content[0].type == "text"
    assert message.content[0].text == "Let me check the weather ☀️ in Zürich."
    assert [getattr(block, "input", None) for block in message.content[1:]] == [
        {"city": "Zürich"},
        {"tz": "CET"},
    ]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_openai_stream_fed_byte_by_byte_translates_the_same(newline: bytes) -> None:
    stream = OPENAI_STREAM.replace(b"\n", newline)
    whole = feed_whole(StreamToAnthropic("claude"), OPENAI_STREAM)
    assert feed_whole(StreamToAnthropic("claude"), stream) == whole
    assert feed_bytewise(StreamToAnthropic("claude"), stream) == whole


def test_openai_stream_starts_with_the_first_chunk_that_has_a_choice() -> None:
    # Azure opens with a chunk of prompt_filter_results: no choices, an empty id.
    azure = openai_chunk({}, id="", model="", choices=[], prompt_filter_results=[])
    stream = openai_sse([azure, openai_chunk({"content": "Hi"}), openai_chunk({}, "stop")])
    events = anthropic_events(feed_whole(StreamToAnthropic("claude"), stream))
    assert events[0]["message"]["id"] == "chatcmpl-abc"
    assert accumulate_anthropic(events).content[0].to_dict() == text("Hi")


def test_openai_stream_with_a_stop_sequence_and_no_usage() -> None:
    finish = {"index": 0, "delta": {}, "finish_reason": "stop", "stop_reason": "###"}  # vLLM
    stream = openai_sse([openai_chunk({"content": "Hi"}), openai_chunk({}, choices=[finish])])
    events = anthropic_events(feed_whole(StreamToAnthropic("claude"), stream))
    assert kinds(events) == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[-2]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "###"}
    assert events[-2]["usage"] == {"input_tokens": 0, "output_tokens": 0}


def test_openai_stream_without_done_is_closed_by_finish() -> None:
    chunks = [openai_chunk({"content": "Hi"}), openai_chunk({}, "length")]
    stream = openai_sse(chunks, done=False).rstrip(b"\n")  # not even the last blank line
    translator = StreamToAnthropic("claude")
    head = translator.feed(stream)
    tail = translator.finish()
    assert kinds(anthropic_events(tail)) == ["content_block_stop", "message_delta", "message_stop"]
    assert anthropic_events(head + tail)[-2]["delta"]["stop_reason"] == "max_tokens"
    assert translator.feed(b"data: [DONE]\n\n") == b""
    assert translator.finish() == b""


def test_openai_stream_cut_short_ends_in_an_anthropic_error_event() -> None:
    stream = openai_sse([openai_chunk({"content": "Hel"})], done=False)
    events = anthropic_events(feed_whole(StreamToAnthropic("claude"), stream))
    assert kinds(events)[-2:] == ["content_block_stop", "error"]
    assert events[-1]["error"]["type"] == "api_error"


def test_openai_stream_error_chunk_becomes_an_anthropic_error_event() -> None:
    error = {"error": {"message": "model overloaded", "type": "server_error", "code": 503}}
    chunks = [openai_chunk({"content": "Hel"}), error, openai_chunk({"content": "never seen"})]
    events = anthropic_events(feed_whole(StreamToAnthropic("claude"), openai_sse(chunks)))
    assert events[-1] == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "model overloaded"},
    }
    assert kinds(events).count("content_block_delta") == 1


@pytest.mark.parametrize("stream", [b"", b"data: [DONE]\n\n"])
def test_empty_openai_stream_is_an_error_not_an_empty_message(stream: bytes) -> None:
    assert kinds(anthropic_events(feed_whole(StreamToAnthropic("c"), stream))) == ["error"]


def test_openai_stream_refusal_is_a_refusal() -> None:
    stream = openai_sse([openai_chunk({"refusal": "I can't"}), openai_chunk({}, "stop")])
    events = anthropic_events(feed_whole(StreamToAnthropic("claude"), stream))
    assert events[2]["delta"] == {"type": "text_delta", "text": "I can't"}
    assert events[-2]["delta"]["stop_reason"] == "refusal"


# --- OpenAI client, Anthropic provider: requests ---------------------------------------


def test_openai_request_system_content_and_parameters() -> None:
    body = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [text("Answer in French.")]},
            user("Bonjour"),
            assistant("Salut."),
            user(
                [
                    text("What is in these images?"),
                    image_part(PNG_URL),
                    {"type": "image_url", "image_url": {"url": PHOTO_URL, "detail": "high"}},
                    {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                    text(""),
                ]
            ),
        ],
        "max_tokens": 100,
        "max_completion_tokens": 200,
        "temperature": 0.5,
        "top_p": 0.8,
        "stop": "END",
        "user": "user-42",
        "n": 1,
        "seed": 7,
        "presence_penalty": 0.1,
        "response_format": {"type": "json_object"},
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert request_to_anthropic(body, "claude-sonnet-4-5") == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 200,
        "messages": [
            user("Bonjour"),
            assistant("Salut."),
            user([text("What is in these images?"), PNG_BLOCK, PHOTO_BLOCK]),
        ],
        "system": [text("You are terse."), text("Answer in French.")],
        "temperature": 0.5,
        "top_p": 0.8,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "user-42"},
        "stream": True,
    }


@pytest.mark.parametrize(
    ("limits", "expected"),
    [({}, 4096), ({"max_tokens": 100}, 100), ({"max_completion_tokens": 300}, 300)],
)
def test_openai_request_max_tokens(limits: JSON, expected: int) -> None:
    body = {"messages": [{"role": "system", "content": "s"}], "stop": ["a", "b"]} | limits
    translated = request_to_anthropic(body, "claude")
    assert translated["max_tokens"] == expected
    assert translated["system"] == "s"
    assert translated["stop_sequences"] == ["a", "b"]


def test_openai_request_tool_round_trip() -> None:
    body = {
        "tools": [
            WEATHER_OPENAI,
            {"type": "function", "function": {"name": "noop"}},
            {"type": "custom", "custom": {"name": "grammar_tool"}},
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "messages": [
            user("Weather in Oslo and Rome?"),
            assistant(
                "Checking both.",
                [
                    call("call_1", "get_weather", '{"city":"Oslo"}'),
                    call("call_2", "get_weather", '{"city":"Ro'),
                ],
            ),
            {"role": "tool", "tool_call_id": "call_1", "content": "4°C, snow"},
            {"role": "tool", "tool_call_id": "call_2", "content": [text("18°C, sun")]},
            user("Which is warmer?"),
            assistant(None, [call("call_3", "noop", "")]),
            {"role": "tool", "tool_call_id": "call_3", "content": ""},
        ],
    }
    assert request_to_anthropic(body, "claude") == {
        "model": "claude",
        "max_tokens": 4096,
        "messages": [
            user("Weather in Oslo and Rome?"),
            assistant(
                [
                    text("Checking both."),
                    tool_use("call_1", "get_weather", {"city": "Oslo"}),
                    tool_use("call_2", "get_weather", {"_raw": '{"city":"Ro'}),
                ]
            ),
            # Consecutive tool messages, and the user turn after them: one user message.
            user(
                [
                    tool_result("call_1", "4°C, snow"),
                    tool_result("call_2", [text("18°C, sun")]),
                    text("Which is warmer?"),
                ]
            ),
            assistant([tool_use("call_3", "noop", {})]),
            user([tool_result("call_3")]),
        ],
        "tools": [
            WEATHER_ANTHROPIC,
            {"name": "noop", "input_schema": {"type": "object", "properties": {}}},
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    }


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ("none", None, {"type": "none"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            None,
            {"type": "tool", "name": "get_weather"},
        ),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
        (None, True, None),
    ],
)
def test_openai_tool_choice(choice: Any, parallel: bool | None, expected: JSON | None) -> None:
    body: JSON = {"messages": [], "tools": [WEATHER_OPENAI]}
    if choice is not None:
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    assert request_to_anthropic(body, "claude").get("tool_choice") == expected


def test_requests_round_trip_through_both_translators() -> None:
    anthropic_body = {
        "model": "claude",
        "max_tokens": 64,
        "system": "Be brief.",
        "tools": [WEATHER_ANTHROPIC],
        "tool_choice": {"type": "tool", "name": "get_weather"},
        "messages": [
            user("Oslo?"),
            assistant([tool_use("t1", "get_weather", {"city": "Oslo"})]),
            user([tool_result("t1", "4°C"), text("Thanks. And tomorrow?"), PNG_BLOCK]),
        ],
        "stop_sequences": ["END"],
        "temperature": 0.3,
        "metadata": {"user_id": "u"},
        "stream": True,
    }
    openai_body = request_to_openai(anthropic_body, "gpt")
    assert request_to_anthropic(openai_body, "claude") == anthropic_body


# --- OpenAI client, Anthropic provider: responses --------------------------------------


def test_anthropic_message_as_openai_completion() -> None:
    content = [
        {"type": "thinking", "thinking": "hmm", "signature": "c2ln"},
        text("Checking "),
        text("both."),
        tool_use("toolu_1", "get_weather", {"city": "Oslo"}),
    ]
    message = anthropic_message(content, "tool_use")
    completion = response_from_anthropic(message, "gpt-x", created=CREATED)
    ChatCompletion.model_validate(completion)
    assert completion == {
        "id": "msg_01",
        "object": "chat.completion",
        "created": CREATED,
        "model": "gpt-x",
        "choices": [
            {
                "index": 0,
                "message": assistant(
                    "Checking both.", [call("toolu_1", "get_weather", '{"city":"Oslo"}')]
                ),
                "finish_reason": "tool_calls",
                "logprobs": None,
            }
        ],
        "usage": USAGE_OPENAI,  # OpenAI's prompt tokens include the cache reads
    }


def test_anthropic_tool_only_message_has_null_content() -> None:
    message = anthropic_message([tool_use("t", "noop", {})], "tool_use")
    completion = ChatCompletion.model_validate(response_from_anthropic(message, "gpt"))
    assert completion.choices[0].message.content is None
    assert completion.choices[0].message.tool_calls is not None
    assert completion.created > CREATED


@pytest.mark.parametrize(
    ("stop_reason", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        (None, "stop"),
        ("something_new", "stop"),
    ],
)
def test_anthropic_stop_reasons(stop_reason: str | None, expected: str) -> None:
    message = anthropic_message([text("x")], stop_reason)
    completion = ChatCompletion.model_validate(response_from_anthropic(message, "gpt"))
    assert completion.choices[0].finish_reason == expected


# --- OpenAI client, Anthropic provider: errors -----------------------------------------


@pytest.mark.parametrize(
    ("status", "anthropic_type", "expected_type"),
    [
        (400, "invalid_request_error", "invalid_request_error"),
        (401, "authentication_error", "authentication_error"),
        (403, "permission_error", "permission_error"),
        (404, "not_found_error", "invalid_request_error"),
        (413, "request_too_large", "invalid_request_error"),
        (429, "rate_limit_error", "rate_limit_error"),
        (500, "api_error", "server_error"),
        (529, "overloaded_error", "server_error"),
    ],
)
def test_anthropic_errors_as_openai_errors(
    status: int, anthropic_type: str, expected_type: str
) -> None:
    error = {"type": anthropic_type, "message": "nope"}
    body = json.dumps({"type": "error", "error": error, "request_id": "req_1"}).encode()
    translated = error_from_anthropic(status, body)
    ErrorObject.model_validate(translated["error"])
    assert translated == {
        "error": {"message": "nope", "type": expected_type, "param": None, "code": anthropic_type}
    }


def test_non_json_anthropic_error_has_no_code() -> None:
    assert error_from_anthropic(502, b"<html>Bad Gateway</html>") == {
        "error": {
            "message": "<html>Bad Gateway</html>",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }


# --- OpenAI client, Anthropic provider: streaming --------------------------------------


def test_anthropic_stream_as_openai_chunks() -> None:
    translator = StreamToOpenAI("gpt-x", include_usage=True, created=CREATED)
    chunks = openai_chunks(feed_whole(translator, ANTHROPIC_STREAM))
    assert {(chunk["id"], chunk["model"], chunk["created"]) for chunk in chunks} == {
        ("msg_01", "gpt-x", CREATED)
    }
    assert [chunk["choices"][0]["delta"] for chunk in chunks[:-1]] == [
        {"role": "assistant", "content": ""},
        {"content": "I'll look that up — "},
        {"content": "one moment."},
        call_delta(0, "", head=("toolu_a", "get_weather")),
        call_delta(0, '{"city": "Zür'),
        call_delta(0, 'ich"}'),
        call_delta(1, "", head=("toolu_b", "get_time")),
        call_delta(1, '{"tz": "CET"}'),
        {},
    ]
    finishes = [chunk["choices"][0]["finish_reason"] for chunk in chunks[:-1]]
    assert finishes == [None] * 8 + ["tool_calls"]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 35,
        "completion_tokens": 42,
        "total_tokens": 77,
        "prompt_tokens_details": {"cached_tokens": 5},
    }


def test_anthropic_stream_accumulates_with_the_openai_sdk() -> None:
    state: ChatCompletionStreamState[None] = ChatCompletionStreamState()
    translator = StreamToOpenAI("gpt", include_usage=True, created=CREATED)
    for chunk in openai_chunks(feed_whole(translator, ANTHROPIC_STREAM)):
        list(state.handle_chunk(ChatCompletionChunk.model_validate(chunk)))
    completion = state.get_final_completion()
    message = completion.choices[0].message
    assert message.content == "I'll look that up — one moment."
    asked = [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or ()]
    assert asked == [
        ("toolu_a", "get_weather", '{"city": "Zürich"}'),
        ("toolu_b", "get_time", '{"tz": "CET"}'),
    ]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.usage is not None
    assert completion.usage.total_tokens == 77


def test_anthropic_stream_without_include_usage_has_no_usage_chunk() -> None:
    chunks = openai_chunks(feed_whole(StreamToOpenAI("gpt"), ANTHROPIC_STREAM))
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert all("usage" not in chunk for chunk in chunks)


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_anthropic_stream_fed_byte_by_byte_translates_the_same(newline: bytes) -> None:
    stream = ANTHROPIC_STREAM.replace(b"\n", newline)

    def translator() -> StreamToOpenAI:
        return StreamToOpenAI("gpt", include_usage=True, created=CREATED)

    whole = feed_whole(translator(), ANTHROPIC_STREAM)
    assert feed_whole(translator(), stream) == whole
    assert feed_bytewise(translator(), stream) == whole


def test_anthropic_stream_without_message_stop_is_closed_by_finish() -> None:
    translator = StreamToOpenAI("gpt", created=CREATED)
    whole = feed_whole(translator, anthropic_sse(ANTHROPIC_STREAM_EVENTS[:-1]))
    assert whole.endswith(b"data: [DONE]\n\n")
    assert openai_chunks(whole)[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert translator.feed(b"event: message_stop\ndata: {}\n\n") == b""


def test_anthropic_stream_cut_short_ends_in_an_openai_error() -> None:
    stream = anthropic_sse(ANTHROPIC_STREAM_EVENTS[:9])
    chunks = openai_chunks(feed_whole(StreamToOpenAI("gpt", created=CREATED), stream))
    assert chunks[-1]["error"]["type"] == "server_error"
    assert chunks[-2]["choices"][0]["delta"] == {"content": "one moment."}


def test_anthropic_error_event_becomes_an_openai_error_chunk() -> None:
    stream = anthropic_sse([*ANTHROPIC_STREAM_EVENTS[:2], OVERLOADED])
    chunks = openai_chunks(feed_whole(StreamToOpenAI("gpt"), stream))
    assert chunks[-1] == {
        "error": {
            "message": "Overloaded",
            "type": "server_error",
            "param": None,
            "code": "overloaded_error",
        }
    }


# --- end to end, through the official SDK clients --------------------------------------

Gateway = Callable[[JSON], tuple[int, bytes]]
"""Answers a client's request body with (status, body), as the gateway would."""


def mock_http(path: str, gateway: Gateway) -> httpx2.Client:
    def transport(request: httpx2.Request) -> httpx2.Response:
        assert request.url.path == path
        status, body = gateway(json.loads(request.content))
        kind = "text/event-stream" if body.startswith((b"event:", b"data:")) else "application/json"
        return httpx2.Response(status, content=body, headers={"content-type": kind})

    return httpx2.Client(transport=httpx2.MockTransport(transport))


def anthropic_sdk(gateway: Gateway) -> anthropic.Anthropic:
    http = mock_http("/v1/messages", gateway)
    return anthropic.Anthropic(api_key="k", base_url="http://gw.test", http_client=http)


def openai_sdk(gateway: Gateway) -> openai.OpenAI:
    http = mock_http("/v1/chat/completions", gateway)
    return openai.OpenAI(api_key="k", base_url="http://gw.test/v1", http_client=http)


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


def translate_stream(translator: StreamTranslator, upstream: bytes, size: int) -> bytes:
    """What the gateway sends on: the upstream body as it arrives in `size` pieces."""
    return (
        b"".join(translator.feed(piece) for piece in pieces(upstream, size)) + translator.finish()
    )


def test_anthropic_sdk_tool_round_trip_against_an_openai_provider() -> None:
    sent: list[JSON] = []
    answers = [
        openai_completion(
            assistant(None, [call("call_1", "get_weather", '{"city":"Oslo"}')]), "tool_calls"
        ),
        openai_completion(assistant("It is 4°C in Oslo."), "stop"),
    ]

    def gateway(body: JSON) -> tuple[int, bytes]:
        sent.append(request_to_openai(body, "gpt-4o"))
        answer = response_from_openai(answers[len(sent) - 1], body["model"])
        return 200, json.dumps(answer).encode()

    client = anthropic_sdk(gateway)
    request: JSON = {"model": "claude-x", "max_tokens": 100, "tools": [WEATHER_ANTHROPIC]}
    question = user("Weather in Oslo?")
    first = client.messages.create(**request, system="Use tools.", messages=[question])
    assert (first.stop_reason, first.model) == ("tool_use", "claude-x")
    [asked] = first.content
    assert asked.type == "tool_use"
    assert asked.input == {"city": "Oslo"}
    answer = user([tool_result(asked.id, "4°C")])
    second = client.messages.create(**request, messages=[question, first.to_param(), answer])
    assert second.content[0].type == "text"
    assert second.content[0].text == "It is 4°C in Oslo."
    assert (second.usage.input_tokens, second.usage.cache_read_input_tokens) == (20, 100)
    assert sent[0]["tools"] == [WEATHER_OPENAI]
    assert sent[0]["messages"][0] == {"role": "system", "content": "Use tools."}
    assert sent[1]["messages"][1:] == [
        assistant(None, [call("call_1", "get_weather", '{"city":"Oslo"}')]),
        {"role": "tool", "tool_call_id": "call_1", "content": "4°C"},
    ]


def test_anthropic_sdk_streams_from_an_openai_provider() -> None:
    def gateway(body: JSON) -> tuple[int, bytes]:
        assert request_to_openai(body, "gpt")["stream_options"] == {"include_usage": True}
        return 200, translate_stream(StreamToAnthropic(body["model"]), OPENAI_STREAM, 7)

    client = anthropic_sdk(gateway)
    request: JSON = {"model": "claude-x", "max_tokens": 100, "messages": [user("Weather?")]}
    with client.messages.stream(**request) as stream:
        streamed_text = "".join(stream.text_stream)
        message = stream.get_final_message()
    assert streamed_text == "Let me check the weather ☀️ in Zürich."
    assert message.stop_reason == "tool_use"
    assert [getattr(block, "input", None) for block in message.content] == [
        None,
        {"city": "Zürich"},
        {"tz": "CET"},
    ]
    assert (message.usage.input_tokens, message.usage.output_tokens) == (40, 20)


def test_anthropic_sdk_raises_the_translated_error() -> None:
    def gateway(body: JSON) -> tuple[int, bytes]:
        return 429, json.dumps(error_from_openai(429, OPENAI_ERROR)).encode()

    client = anthropic_sdk(gateway).with_options(max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as raised:
        client.messages.create(model="c", max_tokens=1, messages=[user("hi")])
    assert raised.value.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Rate limit reached"},
    }


def test_openai_sdk_tool_round_trip_against_an_anthropic_provider() -> None:
    sent: list[JSON] = []
    called = tool_use("toolu_1", "get_weather", {"city": "Oslo"})
    answers = [
        anthropic_message([text("Let me check."), called], "tool_use"),
        anthropic_message([text("It is 4°C in Oslo.")]),
    ]

    def gateway(body: JSON) -> tuple[int, bytes]:
        sent.append(request_to_anthropic(body, "claude-sonnet-4-5"))
        answer = response_from_anthropic(answers[len(sent) - 1], body["model"])
        return 200, json.dumps(answer).encode()

    client = openai_sdk(gateway)
    request: JSON = {"model": "gpt-x", "tools": [WEATHER_OPENAI]}
    question = user("Weather in Oslo?")
    system: Any = {"role": "system", "content": "Use tools."}
    first = client.chat.completions.create(**request, messages=[system, question])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    [asked] = choice.message.tool_calls or []
    assert asked.model_dump() == call("toolu_1", "get_weather", '{"city":"Oslo"}')
    result = {"role": "tool", "tool_call_id": asked.id, "content": "4°C"}
    messages: Any = [question, choice.message.model_dump(exclude_none=True), result]
    second = client.chat.completions.create(**request, messages=messages)
    assert second.choices[0].message.content == "It is 4°C in Oslo."
    assert second.usage is not None
    assert second.usage.prompt_tokens == 120
    assert sent[0]["system"] == "Use tools."
    assert sent[0]["tools"] == [WEATHER_ANTHROPIC]
    assert sent[1]["messages"][1:] == [
        assistant([text("Let me check."), called]),
        user([tool_result("toolu_1", "4°C")]),
    ]


def test_openai_sdk_streams_from_an_anthropic_provider() -> None:
    def gateway(body: JSON) -> tuple[int, bytes]:
        assert request_to_anthropic(body, "claude")["stream"] is True
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        translator = StreamToOpenAI(body["model"], include_usage=include_usage)
        return 200, translate_stream(translator, ANTHROPIC_STREAM, 5)

    client = openai_sdk(gateway)
    request: JSON = {"model": "gpt-x", "messages": [user("Weather?")]}
    with client.chat.completions.stream(
        **request, stream_options={"include_usage": True}
    ) as stream:
        completion = stream.get_final_completion()
    message = completion.choices[0].message
    assert message.content == "I'll look that up — one moment."
    assert [asked.function.arguments for asked in message.tool_calls or ()] == [
        '{"city": "Zürich"}',
        '{"tz": "CET"}',
    ]
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 42


def test_openai_sdk_raises_on_a_translated_stream_error() -> None:
    def gateway(body: JSON) -> tuple[int, bytes]:
        upstream = anthropic_sse([*ANTHROPIC_STREAM_EVENTS[:2], OVERLOADED])
        return 200, translate_stream(StreamToOpenAI(body["model"]), upstream, 3)

    client = openai_sdk(gateway)
    stream = client.chat.completions.create(model="gpt", messages=[user("hi")], stream=True)
    with pytest.raises(openai.APIError, match="Overloaded"):
        list(stream)
