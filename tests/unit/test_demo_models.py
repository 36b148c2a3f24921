"""The demo model backends, checked with the real `openai` and `anthropic` SDKs.

The SDKs parse every response and every streamed event themselves, so a wire-format
mistake here fails the way it would fail for a user of the quickstart; the gateway's
tests can then blame the gateway, not the demo backends, when something breaks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from meshroute.demo.models import make_app
from tests.support.threaded_server import ThreadedServer

OPENAI_KEY = "sk-demo-openai-key"
ANTHROPIC_KEY = "sk-ant-demo-key"
QUESTION = "what is the weather in Paris"
WEATHER_TOOL_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string"},  # optional: left out of the call
        "days": {"type": "integer"},  # required but not a string: left out too
    },
    "required": ["city", "days"],
}
STRICT_SCHEMA = {  # the OpenAI streaming helper only accepts strict tools
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def open_url() -> Iterator[str]:
    """A server that demands no keys."""
    server = ThreadedServer(make_app())
    yield server.url
    server.close()


@pytest.fixture(scope="module")
def keyed_url() -> Iterator[str]:
    """A server that demands a key per provider and lists its own models."""
    app = make_app(
        {"openai": OPENAI_KEY, "anthropic": ANTHROPIC_KEY}, openai_models=["gpt-x", "gpt-y"]
    )
    server = ThreadedServer(app)
    yield server.url
    server.close()


def openai_client(url: str, key: str = "anything") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/openai/v1", api_key=key, max_retries=0)


def anthropic_client(url: str, key: str = "anything") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"{url}/anthropic", api_key=key, max_retries=0)


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def words(text: str) -> int:
    return len(text.split())


# --- OpenAI -------------------------------------------------------------------------


def test_openai_chat_answers_with_api_model_and_question(open_url: str) -> None:
    completion = openai_client(open_url).chat.completions.create(
        model="gpt-demo-mini",
        messages=[{"role": "system", "content": "be brief"}, user(QUESTION)],
    )

    choice = completion.choices[0]
    assert choice.message.content == f"[openai gpt-demo-mini] You said: {QUESTION!r}"
    assert choice.finish_reason == "stop"
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-demo-mini"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == words("be brief " + QUESTION)
    assert completion.usage.completion_tokens == words(choice.message.content)
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


def test_openai_stream_joins_to_the_same_text_and_ends_with_usage(open_url: str) -> None:
    chunks = list(
        openai_client(open_url).chat.completions.create(
            model="gpt-demo",
            messages=[user(QUESTION)],
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"[openai gpt-demo] You said: {QUESTION!r}"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == words(text)
    assert all(c.usage is None for c in chunks[:-1])


def test_openai_stream_without_include_usage_has_no_usage_chunk(open_url: str) -> None:
    chunks = list(
        openai_client(open_url).chat.completions.create(
            model="gpt-demo", messages=[user("hi")], stream=True
        )
    )

    assert all(c.choices and c.usage is None for c in chunks)


def test_openai_tool_round_trip(open_url: str) -> None:
    client = openai_client(open_url)
    tools: Any = [
        {
            "type": "function",
            "function": {"name": "get_weather", "parameters": WEATHER_TOOL_SCHEMA},
        },
        {"type": "function", "function": {"name": "never_called", "parameters": {}}},
    ]
    messages: list[Any] = [user(QUESTION)]

    first = client.chat.completions.create(model="gpt-demo", messages=messages, tools=tools)

    assert first.choices[0].finish_reason == "tool_calls"
    message = first.choices[0].message
    assert message.content is None
    assert message.tool_calls is not None
    [call] = message.tool_calls
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": QUESTION}

    messages += [
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "14°C and sunny"},
    ]
    second = client.chat.completions.create(model="gpt-demo", messages=messages, tools=tools)

    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == (
        f"[openai gpt-demo] Tool said: '14°C and sunny'. You said: {QUESTION!r}"
    )


def test_openai_streamed_tool_call_accumulates_in_the_sdk_helper(open_url: str) -> None:
    tool: Any = {
        "type": "function",
        "function": {"name": "get_weather", "parameters": STRICT_SCHEMA, "strict": True},
    }
    with openai_client(open_url).chat.completions.stream(
        model="gpt-demo", messages=[user(QUESTION)], tools=[tool]
    ) as stream:
        final = stream.get_final_completion()

    assert final.choices[0].finish_reason == "tool_calls"
    assert final.choices[0].message.tool_calls is not None
    [call] = final.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": QUESTION}


def test_openai_tool_choice_none_answers_in_text(open_url: str) -> None:
    tool: Any = {
        "type": "function",
        "function": {"name": "get_weather", "parameters": STRICT_SCHEMA},
    }

    completion = openai_client(open_url).chat.completions.create(
        model="gpt-demo", messages=[user(QUESTION)], tools=[tool], tool_choice="none"
    )

    assert completion.choices[0].message.content == f"[openai gpt-demo] You said: {QUESTION!r}"


def test_openai_models_lists_the_models_given_at_construction(
    open_url: str, keyed_url: str
) -> None:
    assert [m.id for m in openai_client(open_url).models.list()] == ["gpt-demo-mini", "gpt-demo"]
    assert [m.id for m in openai_client(keyed_url, OPENAI_KEY).models.list()] == ["gpt-x", "gpt-y"]


# --- Anthropic ----------------------------------------------------------------------


def test_anthropic_message_answers_with_api_model_and_question(open_url: str) -> None:
    message = anthropic_client(open_url).messages.create(
        model="claude-demo", max_tokens=100, system="be brief", messages=[user(QUESTION)]
    )

    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == "claude-demo"
    assert message.stop_reason == "end_turn"
    [block] = message.content
    assert block.type == "text"
    assert block.text == f"[anthropic claude-demo] You said: {QUESTION!r}"
    assert message.usage.input_tokens == words("be brief " + QUESTION)
    assert message.usage.output_tokens == words(block.text)


def test_anthropic_stream_through_the_sdk_helper(open_url: str) -> None:
    with anthropic_client(open_url).messages.stream(
        model="claude-demo", max_tokens=100, messages=[user(QUESTION)]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    expected = f"[anthropic claude-demo] You said: {QUESTION!r}"
    assert text == expected
    assert final.stop_reason == "end_turn"
    assert [b.text for b in final.content if b.type == "text"] == [expected]
    assert final.usage.input_tokens == words(QUESTION)
    assert final.usage.output_tokens == words(expected)


def test_anthropic_stream_sends_events_in_anthropic_order(open_url: str) -> None:
    """The SDK skips lines without `event:`; the exact sequence is checked here."""
    with httpx.stream(
        "POST",
        f"{open_url}/anthropic/v1/messages",
        headers={"anthropic-version": "2023-06-01"},
        json={"model": "m", "max_tokens": 10, "stream": True, "messages": [user("a b c")]},
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]

    events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    data = [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")]
    assert events == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * (len(events) - 6),
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert [d["type"] for d in data] == events


def test_anthropic_tool_round_trip(open_url: str) -> None:
    client = anthropic_client(open_url)
    tools: Any = [
        {"name": "get_weather", "input_schema": WEATHER_TOOL_SCHEMA},
        {"name": "never_called", "input_schema": {"type": "object"}},
    ]
    messages: list[Any] = [user(QUESTION)]

    first = client.messages.create(
        model="claude-demo", max_tokens=100, messages=messages, tools=tools
    )

    assert first.stop_reason == "tool_use"
    [block] = first.content
    assert block.type == "tool_use"
    assert block.name == "get_weather"
    assert block.input == {"city": QUESTION}

    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": block.id, "content": "14°C and sunny"}
            ],
        },
    ]
    second = client.messages.create(
        model="claude-demo", max_tokens=100, messages=messages, tools=tools
    )

    assert second.stop_reason == "end_turn"
    [answer] = second.content
    assert answer.type == "text"
    assert answer.text == (
        f"[anthropic claude-demo] Tool said: '14°C and sunny'. You said: {QUESTION!r}"
    )


def test_anthropic_streamed_tool_use_accumulates_in_the_sdk_helper(open_url: str) -> None:
    tool: Any = {"name": "get_weather", "input_schema": WEATHER_TOOL_SCHEMA}
    with anthropic_client(open_url).messages.stream(
        model="claude-demo", max_tokens=100, messages=[user(QUESTION)], tools=[tool]
    ) as stream:
        final = stream.get_final_message()

    assert final.stop_reason == "tool_use"
    [block] = final.content
    assert block.type == "tool_use"
    assert block.name == "get_weather"
    assert block.input == {"city": QUESTION}


def test_anthropic_requires_the_version_header(open_url: str) -> None:
    response = httpx.post(
        f"{open_url}/anthropic/v1/messages",
        json={"model": "m", "max_tokens": 10, "messages": [user("hi")]},
    )

    assert response.status_code == 400
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "anthropic-version" in response.json()["error"]["message"]


# --- Required keys ------------------------------------------------------------------


def test_right_keys_are_accepted(keyed_url: str) -> None:
    completion = openai_client(keyed_url, OPENAI_KEY).chat.completions.create(
        model="gpt-x", messages=[user("hi")]
    )
    message = anthropic_client(keyed_url, ANTHROPIC_KEY).messages.create(
        model="claude-demo", max_tokens=10, messages=[user("hi")]
    )

    assert completion.choices[0].message.content == "[openai gpt-x] You said: 'hi'"
    assert message.content[0].type == "text"
    assert message.content[0].text == "[anthropic claude-demo] You said: 'hi'"


def test_wrong_openai_key_is_an_authentication_error(keyed_url: str) -> None:
    client = openai_client(keyed_url, ANTHROPIC_KEY)  # the other provider's key
    with pytest.raises(openai.AuthenticationError) as raised:
        client.chat.completions.create(model="gpt-x", messages=[user("hi")])

    assert raised.value.status_code == 401
    assert raised.value.code == "invalid_api_key"
    assert raised.value.type == "invalid_request_error"
    assert ANTHROPIC_KEY not in raised.value.message


def test_wrong_anthropic_key_is_an_authentication_error(keyed_url: str) -> None:
    client = anthropic_client(keyed_url, OPENAI_KEY)
    with pytest.raises(anthropic.AuthenticationError) as raised:
        client.messages.create(model="claude-demo", max_tokens=10, messages=[user("hi")])

    assert raised.value.status_code == 401
    assert raised.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
    }


def test_models_list_needs_the_openai_key_too(keyed_url: str) -> None:
    with pytest.raises(openai.AuthenticationError):
        openai_client(keyed_url, "sk-wrong").models.list()


@pytest.mark.parametrize(
    ("path", "headers", "expected"),
    [
        (
            "/openai/v1/chat/completions",
            {},
            {"type": "invalid_request_error", "code": "invalid_api_key"},
        ),
        (
            "/anthropic/v1/messages",
            {"anthropic-version": "2023-06-01"},
            {"type": "authentication_error"},
        ),
    ],
)
def test_missing_key_is_refused_in_the_providers_shape(
    keyed_url: str, path: str, headers: dict[str, str], expected: dict[str, str]
) -> None:
    response = httpx.post(
        keyed_url + path,
        headers=headers,
        json={"model": "m", "max_tokens": 10, "messages": [user("hi")]},
    )

    assert response.status_code == 401
    error = response.json()["error"]
    assert {name: error[name] for name in expected} == expected


def test_a_key_for_one_provider_does_not_guard_the_other(open_url: str) -> None:
    server = ThreadedServer(make_app({"anthropic": ANTHROPIC_KEY}))
    try:
        completion = openai_client(server.url, "whatever").chat.completions.create(
            model="gpt-demo", messages=[user("hi")]
        )
        with pytest.raises(anthropic.AuthenticationError):
            anthropic_client(server.url, "whatever").messages.create(
                model="claude-demo", max_tokens=10, messages=[user("hi")]
            )
    finally:
        server.close()

    assert completion.choices[0].message.content == "[openai gpt-demo] You said: 'hi'"


def test_unknown_provider_in_required_keys_is_refused() -> None:
    with pytest.raises(ValueError, match="open_ai"):
        make_app({"open_ai": OPENAI_KEY})


# --- Bad requests -------------------------------------------------------------------

ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}


@pytest.mark.parametrize(
    "body", [b"{not json", b"[1, 2]", b'{"model": "m", "max_tokens": 5}', b'{"messages": []}']
)
def test_bad_openai_requests_are_400_in_openai_shape(open_url: str, body: bytes) -> None:
    response = httpx.post(
        f"{open_url}/openai/v1/chat/completions",
        content=body,
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"]


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'{"model": "m", "max_tokens": 5}',
        b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}',  # no max_tokens
    ],
)
def test_bad_anthropic_requests_are_400_in_anthropic_shape(open_url: str, body: bytes) -> None:
    response = httpx.post(
        f"{open_url}/anthropic/v1/messages",
        content=body,
        headers={"content-type": "application/json", **ANTHROPIC_HEADERS},
    )

    assert response.status_code == 400
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_sdk_sees_bad_requests_as_bad_request_errors(open_url: str) -> None:
    with pytest.raises(openai.BadRequestError):
        openai_client(open_url).chat.completions.create(model="gpt-demo", messages=[])
    with pytest.raises(anthropic.BadRequestError):
        anthropic_client(open_url).messages.create(model="claude-demo", max_tokens=5, messages=[])


def test_healthz(open_url: str) -> None:
    assert httpx.get(f"{open_url}/healthz").text == "ok\n"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"x-api-key": ANTHROPIC_KEY}, 200),  # what the API docs and older SDKs send
        ({"Authorization": f"Bearer {ANTHROPIC_KEY}"}, 200),  # what anthropic 2.x sends
        ({"x-api-key": ANTHROPIC_KEY, "Authorization": "Bearer caller-token"}, 401),
        ({"x-api-key": "wrong"}, 401),
    ],
)
def test_anthropic_key_headers(keyed_url: str, headers: dict[str, str], status: int) -> None:
    """Every credential presented must be the key, so a forwarded caller token shows."""
    response = httpx.post(
        f"{keyed_url}/anthropic/v1/messages",
        headers={**ANTHROPIC_HEADERS, **headers},
        json={"model": "m", "max_tokens": 10, "messages": [user("hi")]},
    )

    assert response.status_code == status
