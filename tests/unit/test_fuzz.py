"""Property-based fuzzing of everything that reads untrusted input on the request path.

Clients send request bodies, routing models send replies, providers send responses
and event streams, platform teams write config: none of it may make the code that
reads it raise anything but its own, documented error. Each property below feeds
arbitrary input (random bytes and text, and arbitrary JSON shaped like the real
thing, so the interesting branches are reached) and checks that only the expected
outcome or the expected error comes out.

Bounded and deterministic where it matters: a few hundred examples per property, no
example database, and derandomized when `CI` is set, so a CI failure reproduces.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshroute.control_plane.config import Config, ConfigErrors, load_config
from meshroute.control_plane.config.model import API_VERSION, KINDS
from meshroute.ext_proc.chat_request import BadRequest, ChatRequest, parse_chat_request
from meshroute.ext_proc.orchestrator import BadReply, parse_route_reply
from meshroute.ext_proc.translators import parse_arguments, read_error
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

FUZZ = settings(
    max_examples=300,
    deadline=None,  # the machines are noisy; time limits live in bench/
    derandomize=bool(os.environ.get("CI")),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEWER = settings(FUZZ, max_examples=150)  # for properties that touch the filesystem

# --- arbitrary JSON, biased towards the names the parsers look for ------------------

FIELD_NAMES = [
    "messages",
    "role",
    "content",
    "text",
    "type",
    "tool_calls",
    "tools",
    "function",
    "arguments",
    "name",
    "id",
    "image_url",
    "url",
    "source",
    "media_type",
    "data",
    "input",
    "index",
    "delta",
    "choices",
    "message",
    "usage",
    "content_block",
    "finish_reason",
    "stop_reason",
    "stop",
    "model",
    "stream",
    "stream_options",
    "system",
    "max_tokens",
    "prompt_tokens",
    "completion_tokens",
    "input_tokens",
    "output_tokens",
    "error",
    "code",
    "refusal",
    "tool_use_id",
    "tool_call_id",
    "parameters",
    "input_schema",
    "tool_choice",
    "route",
]
ROLES = ("user", "assistant", "system", "developer", "tool", "function", "wizard", "")

keys = st.sampled_from(FIELD_NAMES) | st.text(max_size=8)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from([*FIELD_NAMES, *ROLES, "[DONE]", "data:image/png;base64,AAAA"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=25,
)
json_objects = st.dictionaries(keys, json_values, max_size=6)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(ROLES) | json_values},
        optional={"content": json_values, "tool_calls": json_values, "name": json_values},
    ),
    min_size=1,
    max_size=4,
)
chat_bodies = st.builds(lambda body, extra: {**extra, "messages": body}, messages, json_objects)


# --- the request body parser ---------------------------------------------------------


def assert_parses_or_refuses(body: bytes) -> ChatRequest | None:
    try:
        request = parse_chat_request(body)
    except BadRequest as bad:
        refusal = bad
    else:
        refusal = None
    if refusal is not None:
        assert refusal.code in {
            "empty_body",
            "invalid_json",
            "invalid_request",
            "missing_messages",
            "invalid_messages",
        }
        assert refusal.message
        return None
    assert isinstance(request.payload, dict)
    assert all(isinstance(turn.role, str) and isinstance(turn.text, str) for turn in request.turns)
    return request


@FUZZ
@given(st.binary(max_size=2000))
def test_any_bytes_parse_or_are_a_bad_request(body: bytes) -> None:
    assert_parses_or_refuses(body)


@FUZZ
@given(json_values)
def test_any_json_value_parses_or_is_a_bad_request(value: Any) -> None:
    assert_parses_or_refuses(json.dumps(value).encode())


@FUZZ
@given(chat_bodies, st.sampled_from(["utf-8", "utf-16", "latin-1"]))
def test_chat_shaped_bodies_parse_or_are_a_bad_request(body: dict[str, Any], codec: str) -> None:
    text = json.dumps(body, ensure_ascii=False)
    assert_parses_or_refuses(text.encode(codec, errors="replace"))


@FUZZ
@given(st.integers(min_value=1, max_value=3000), st.sampled_from("[{"))
def test_nesting_is_refused_past_a_fixed_depth_never_by_a_crash(depth: int, bracket: str) -> None:
    opening, closing = (bracket, "]") if bracket == "[" else ('{"a":', "}")
    nested = opening * depth + "1" + closing * depth
    body = f'{{"messages": [{{"role": "user", "content": "x"}}], "extra": {nested}}}'.encode()
    request = assert_parses_or_refuses(body)
    assert (request is None) == (depth + 1 > 128)


# --- request translation, on bodies the parser accepted -----------------------------


@FUZZ
@given(chat_bodies)
def test_accepted_requests_translate_either_way(body: dict[str, Any]) -> None:
    request = assert_parses_or_refuses(json.dumps(body).encode())
    if request is None:
        return
    for translated in (
        request_to_anthropic(request.payload, "model-id"),
        request_to_openai(request.payload, "model-id"),
    ):
        json.dumps(translated)  # what the sidecar sends upstream must encode


@FUZZ
@given(json_objects)
def test_any_request_object_translates_without_raising(body: dict[str, Any]) -> None:
    json.dumps(request_to_anthropic(body, "m"))
    json.dumps(request_to_openai(body, "m"))


# --- the orchestrator's reply parser ----------------------------------------------------


def assert_routes_or_bad_reply(text: str) -> None:
    try:
        routes = parse_route_reply(text)
    except BadReply as bad:
        refusal = bad
    else:
        refusal = None
    if refusal is not None:
        assert str(refusal)
        return
    assert isinstance(routes, list)
    assert all(isinstance(name, str) for name in routes)


@FUZZ
@given(st.text(max_size=300))
def test_any_reply_text_is_routes_or_a_bad_reply(text: str) -> None:
    assert_routes_or_bad_reply(text)


@FUZZ
@given(
    st.text(max_size=20),
    json_values | st.dictionaries(st.just("route"), json_values, min_size=1),
    st.text(max_size=20),
    st.sampled_from(["", "```json\n", "```"]),
    st.booleans(),
)
def test_replies_around_json_are_routes_or_a_bad_reply(
    before: str, value: Any, after: str, fence: str, single_quotes: bool
) -> None:
    encoded = json.dumps(value)
    if single_quotes:
        encoded = encoded.replace('"', "'")
    assert_routes_or_bad_reply(f"{before}{fence}{encoded}{fence and '```'}{after}")


def test_a_deeply_nested_reply_is_a_bad_reply() -> None:
    assert_routes_or_bad_reply('{"route": ' + "[" * 5000 + "]" * 5000 + "}")


# --- provider responses, whole and streamed ------------------------------------------


@FUZZ
@given(json_objects)
def test_any_response_object_translates_without_raising(body: dict[str, Any]) -> None:
    json.dumps(response_from_openai(body, "m"))
    json.dumps(response_from_anthropic(body, "m", created=0))


@FUZZ
@given(st.integers(min_value=100, max_value=599), st.binary(max_size=300) | json_values)
def test_any_error_body_translates_without_raising(status: int, body: Any) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    for translated in (error_from_openai(status, raw), error_from_anthropic(status, raw)):
        assert translated["error"]["message"]
    assert read_error(raw, status)[1]


@FUZZ
@given(json_values | st.text(max_size=50))
def test_tool_arguments_of_any_shape_become_an_object(arguments: Any) -> None:
    assert isinstance(parse_arguments(arguments), dict)


def sse_events(payloads: list[Any], names: list[str]) -> bytes:
    out = b""
    for index, payload in enumerate(payloads):
        name = names[index % len(names)] if names else ""
        data = payload if isinstance(payload, str) else json.dumps(payload)
        event = f"event: {name}\n" if name else ""
        out += f"{event}data: {data}\n\n".encode()
    return out


def feed_in_chunks(translator: StreamToOpenAI | StreamToAnthropic, stream: bytes, cuts: list[int]):
    """Feed `stream` cut at arbitrary places, then end it; returns everything written."""
    out = b""
    start = 0
    for cut in sorted({cut % (len(stream) + 1) for cut in cuts}):
        out += translator.feed(stream[start:cut])
        start = cut
    out += translator.feed(stream[start:])
    out += translator.finish()
    return out


stream_payloads = st.lists(
    json_objects
    | st.fixed_dictionaries(
        {"type": st.sampled_from(["message_start", "content_block_start", "content_block_delta"])},
        optional={"index": json_values, "delta": json_values, "content_block": json_values},
    )
    | st.fixed_dictionaries({"choices": st.lists(json_objects, max_size=2)}, optional={})
    | st.just("[DONE]")
    | st.text(max_size=10),
    max_size=8,
)


@FUZZ
@given(
    stream_payloads,
    st.lists(st.sampled_from(["", "message_start", "error", "ping", "content_block_delta"])),
    st.lists(st.integers(min_value=0, max_value=10_000), max_size=6),
    st.booleans(),
)
def test_any_event_stream_translates_without_raising(
    payloads: list[Any], names: list[str], cuts: list[int], usage: bool
) -> None:
    stream = sse_events(payloads, names)
    assert isinstance(feed_in_chunks(StreamToOpenAI("m", usage, created=0), stream, cuts), bytes)
    assert isinstance(feed_in_chunks(StreamToAnthropic("m"), stream, cuts), bytes)


@FUZZ
@given(st.lists(st.binary(max_size=200), max_size=6))
def test_any_bytes_as_a_stream_translate_without_raising(chunks: list[bytes]) -> None:
    for translator in (StreamToOpenAI("m", True, created=0), StreamToAnthropic("m")):
        out = b"".join(translator.feed(chunk) for chunk in chunks) + translator.finish()
        assert isinstance(out, bytes)


# --- the config loader ---------------------------------------------------------------


def assert_loads_or_errors(text: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "config.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            config: Config | None = load_config([path])
        except ConfigErrors as errors:
            config, refusal = None, errors
    if config is None:
        assert refusal.errors
        assert all(error.message for error in refusal.errors)
        assert str(refusal)
        return
    assert isinstance(config, Config)


@FEWER
@given(st.text(max_size=400))
def test_any_text_loads_or_is_config_errors(text: str) -> None:
    assert_loads_or_errors(text)


def as_yaml(documents: list[Any]) -> str:
    return yaml.safe_dump_all(documents, allow_unicode=True, sort_keys=False)


SPEC_FIELDS = [
    "description",
    "examples",
    "endpoints",
    "variants",
    "path",
    "timeout",
    "retries",
    "outlierDetection",
    "circuitBreaker",
    "healthCheck",
    "loadBalancing",
    "tls",
    "connectTimeout",
    "api",
    "endpoint",
    "models",
    "auth",
    "apiVersion",
    "type",
    "port",
    "agents",
    "router",
    "allowClientPinning",
    "maxRequestBytes",
    "failureMode",
    "defaultModel",
    "modelAliases",
    "routingPreferences",
    "tracing",
    "defaults",
]
spec_values = (
    json_values
    | st.sampled_from(["2s", "500ms", "8Mi", "http://127.0.0.1:9100", "https://x.test", "openai"])
    | st.text(alphabet="0123456789", min_size=15, max_size=40).map(lambda n: n + "s")
    | st.lists(st.sampled_from(["http://127.0.0.1:9100", "5xx", "reset"]), max_size=3)
)
objects = st.fixed_dictionaries(
    {
        "apiVersion": st.just(API_VERSION),
        "kind": st.sampled_from(sorted(KINDS)),
        "metadata": st.fixed_dictionaries({"name": st.sampled_from(["a", "b", "x-1"])})
        | json_values,
        "spec": st.dictionaries(st.sampled_from(SPEC_FIELDS) | keys, spec_values, max_size=6),
    }
)


@FEWER
@given(st.lists(objects | json_values, min_size=1, max_size=3))
def test_any_objects_load_or_are_config_errors(documents: list[Any]) -> None:
    assert_loads_or_errors(as_yaml(documents))


@settings(FUZZ, max_examples=25)  # megabytes of YAML each
@given(st.integers(min_value=1, max_value=2500))
def test_deep_yaml_is_a_config_error(depth: int) -> None:
    assert_loads_or_errors("a: " + "[" * depth + "]" * depth + "\n")
    assert_loads_or_errors("a:\n" + "".join("  " * level + "- \n" for level in range(depth)))
