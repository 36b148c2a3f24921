"""The model gateway through `meshroute up`, with the real OpenAI and Anthropic SDKs, in
front of demo backends that speak each API and demand their API keys (which only
Envoy has)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.support.configs import quickstart_config
from tests.support.metrics import envoy_counter, metric_samples, total
from tests.support.processes import ManagedProcess, free_port, meshroute_argv, port_open
from tests.support.stack import UpStack
from tests.support.waiting import eventually

KEYS = {
    "DEMO_OPENAI_API_KEY": "sk-test-openai-7f3a9c",
    "DEMO_ANTHROPIC_API_KEY": "sk-ant-test-51e2d8",
}
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpStack]:
    agents_port, models_port = free_port(), free_port()
    agent_gateway, model_gateway = free_port(), free_port()
    backends = ManagedProcess(
        "demo-models",
        meshroute_argv("demo-models", "--require-keys", "--port", str(models_port)),
        env=KEYS,
    )
    backends.wait_until(lambda: port_open(models_port), "demo models listening")
    config = quickstart_config(
        tmp_path_factory.mktemp("models"),
        agent_gateway,
        agents_port,
        models=(model_gateway, models_port),
    )
    up = UpStack([config], {"travel": agent_gateway, "llm": model_gateway}, env=KEYS)
    yield up
    up.stop()
    backends.stop()


@pytest.fixture
def openai_client(stack: UpStack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.url("llm", "/v1"), api_key="client-key", max_retries=0)


@pytest.fixture
def anthropic_client(stack: UpStack) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack.url("llm", ""), api_key="client-key", max_retries=0)


def sidecar_calls(stack: UpStack) -> int:
    return envoy_counter(stack.admin, "http.gateway_llm.ext_proc.streams_started", missing=0)


def routed(headers: Any) -> tuple[str, str, str]:
    return (
        headers["x-meshroute-model"],
        headers["x-meshroute-provider"],
        headers["x-meshroute-route-reason"],
    )


def test_a_model_named_as_its_provider_names_it_never_reaches_python(
    stack: UpStack, openai_client: openai.OpenAI
) -> None:
    before = sidecar_calls(stack)
    raw = openai_client.chat.completions.with_raw_response.create(
        model="gpt-demo", messages=[{"role": "user", "content": "hello"}]
    )
    assert routed(raw.headers) == ("gpt-demo", "demo-openai", "model")
    assert raw.parse().choices[0].message.content == "[openai gpt-demo] You said: 'hello'"
    assert sidecar_calls(stack) == before  # Envoy alone: json_to_metadata and a route


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("fast", ("gpt-demo-mini", "demo-openai", "alias")),
        ("smart", ("claude-demo", "demo-anthropic", "alias")),
        ("claude-demo", ("claude-demo", "demo-anthropic", "model")),
    ],
)
def test_aliases_and_renamed_models_go_through_the_sidecar(
    stack: UpStack, openai_client: openai.OpenAI, model: str, expected: tuple[str, str, str]
) -> None:
    before = sidecar_calls(stack)
    raw = openai_client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hi"}]
    )
    assert routed(raw.headers) == expected
    completion = raw.parse()
    assert completion.model == expected[0]  # the name the client knows, not the provider id
    assert sidecar_calls(stack) == before + 1


def test_no_model_means_the_default_and_unknown_is_a_404(stack: UpStack) -> None:
    url = stack.url("llm", "/v1/chat/completions")
    response = httpx.post(url, json={"messages": [{"role": "user", "content": "hi"}]}, timeout=30)
    assert routed(response.headers) == ("gpt-demo-mini", "demo-openai", "default")

    unknown = httpx.post(
        url, json={"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}, timeout=30
    )
    assert unknown.status_code == 404
    error = unknown.json()["error"]
    assert error["code"] == "model_not_found"
    assert "'gpt-9'" in error["message"]


def test_auto_routes_by_preference(stack: UpStack, openai_client: openai.OpenAI) -> None:
    code = openai_client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": "Write a Python script that fixes this SQL query"}],
    )
    assert routed(code.headers) == ("claude-demo", "demo-anthropic", "preference")
    vague = openai_client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "zzz qqq"}]
    )
    assert routed(vague.headers) == ("gpt-demo-mini", "demo-openai", "default")


def test_the_model_list(openai_client: openai.OpenAI) -> None:
    names = [model.id for model in openai_client.models.list()]
    assert names == ["claude-demo", "gpt-demo-mini", "gpt-demo", "fast", "smart", "auto"]


@pytest.mark.parametrize("model", ["gpt-demo", "smart"])
def test_openai_clients_stream_from_either_api(openai_client: openai.OpenAI, model: str) -> None:
    chunks = list(
        openai_client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "stream please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.endswith("You said: 'stream please'")
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


@pytest.mark.parametrize("model", ["gpt-demo", "smart"])
def test_an_openai_client_does_a_tool_round_trip_on_either_api(
    openai_client: openai.OpenAI, model: str
) -> None:
    tools: Any = [{"type": "function", "function": WEATHER_TOOL}]
    messages: list[Any] = [{"role": "user", "content": "Lisbon"}]
    first = openai_client.chat.completions.create(model=model, messages=messages, tools=tools)
    assert first.choices[0].finish_reason == "tool_calls"
    [call] = first.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Lisbon"}  # type: ignore[union-attr]
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "21°C and sunny"},
    ]
    second = openai_client.chat.completions.create(model=model, messages=messages, tools=tools)
    assert "Tool said: '21°C and sunny'" in (second.choices[0].message.content or "")


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("claude-demo", ("claude-demo", "demo-anthropic", "model")),
        ("gpt-demo", ("gpt-demo", "demo-openai", "model")),
        ("fast", ("gpt-demo-mini", "demo-openai", "alias")),
    ],
)
def test_anthropic_clients_reach_either_api(
    anthropic_client: anthropic.Anthropic, model: str, expected: tuple[str, str, str]
) -> None:
    raw = anthropic_client.messages.with_raw_response.create(
        model=model, max_tokens=100, messages=[{"role": "user", "content": "hello claude"}]
    )
    assert routed(raw.headers) == expected
    message = raw.parse()
    assert message.content[0].type == "text"
    assert message.content[0].text.endswith("You said: 'hello claude'")
    assert message.stop_reason == "end_turn"


@pytest.mark.parametrize("model", ["claude-demo", "gpt-demo"])
def test_anthropic_clients_stream_and_call_tools_on_either_api(
    anthropic_client: anthropic.Anthropic, model: str
) -> None:
    with anthropic_client.messages.stream(
        model=model, max_tokens=100, messages=[{"role": "user", "content": "stream it"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.endswith("You said: 'stream it'")
    assert final.stop_reason == "end_turn"

    tool = {
        "name": WEATHER_TOOL["name"],
        "description": WEATHER_TOOL["description"],
        "input_schema": WEATHER_TOOL["parameters"],
    }
    messages: list[Any] = [{"role": "user", "content": "Oslo"}]
    first = anthropic_client.messages.create(
        model=model,
        max_tokens=100,
        messages=messages,
        tools=[tool],  # type: ignore[list-item]
    )
    assert first.stop_reason == "tool_use"
    [use] = [block for block in first.content if block.type == "tool_use"]
    assert use.input == {"city": "Oslo"}
    messages += [
        {"role": "assistant", "content": [block.model_dump() for block in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "-3°C, snow"}],
        },
    ]
    second = anthropic_client.messages.create(
        model=model,
        max_tokens=100,
        messages=messages,
        tools=[tool],  # type: ignore[list-item]
    )
    assert "Tool said: '-3°C, snow'" in second.content[0].text  # type: ignore[union-attr]


def test_the_sidecar_ends_every_stream_itself(
    stack: UpStack, openai_client: openai.OpenAI, anthropic_client: anthropic.Anthropic
) -> None:
    """Each request's ext_proc stream is ended by the sidecar once it has given its
    last answer, and Envoy resets none it has not seen ended: on both gateways, with
    and without translating the response, streamed or whole, and for a refused request.

    A reset that lands while the sidecar sends its final status fails that send, and
    grpc's aio server never frees a failed send (about 14 bytes a stream, found with
    heaptrack in the soak). Envoy resets a stream whose request is over unless its
    `ext_proc_graceful_grpc_close` runtime flag is on (our bootstrap sets it); then it
    half-closes and waits for the sidecar's status instead. Without the flag, every
    stream here that Envoy finishes first (3 of 5) is reset."""
    metrics = f"http://127.0.0.1:{stack.metrics_port}/metrics"

    def streams(outcome: str) -> float:
        return total(metric_samples(metrics), "meshroute_ext_proc_streams_total", outcome=outcome)

    def envoy_stream_ends() -> tuple[int, int]:
        """Envoy's resets of ext_proc streams, and the streams the sidecar closed while
        Envoy's side was open (only those may Envoy reset: the sidecar is done)."""
        resets = envoy_counter(stack.admin, "cluster.meshroute_ext_proc.upstream_rq_tx_reset")
        closed_first = sum(
            envoy_counter(
                stack.admin, f"http.gateway_{gateway}.ext_proc.server_half_closed", missing=0
            )
            for gateway in ("travel", "llm")
        )
        return resets, closed_first

    before = {outcome: streams(outcome) for outcome in ("ended", "closed", "cancelled")}
    resets_before, closed_first_before = envoy_stream_ends()
    agent = httpx.post(
        stack.url("travel"),
        json={"messages": [{"role": "user", "content": "Will it rain in Oslo?"}]},
        timeout=30,
    )
    # This stack runs no agents: the agent is chosen, then cannot be reached.
    assert agent.headers["x-meshroute-agent"] == "weather", agent.text
    openai_client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "a"}])
    anthropic_client.messages.create(
        model="gpt-demo", max_tokens=9, messages=[{"role": "user", "content": "b"}]
    )
    streamed = openai_client.chat.completions.create(
        model="smart", messages=[{"role": "user", "content": "c"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    with pytest.raises(openai.NotFoundError):
        openai_client.chat.completions.create(
            model="gpt-9", messages=[{"role": "user", "content": "d"}]
        )

    # The sidecar counts a stream when it ends; Envoy may log the response first.
    eventually(lambda: streams("ended") == before["ended"] + 5, "five streams ended")
    assert streams("closed") == before["closed"]
    assert streams("cancelled") == before["cancelled"]
    resets, closed_first = envoy_stream_ends()
    assert resets - resets_before <= closed_first - closed_first_before, (
        f"Envoy reset {resets - resets_before} ext_proc streams, "
        f"of which the sidecar had closed only {closed_first - closed_first_before}"
    )


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop has no Windows build")
def test_the_sidecar_runs_on_uvloop(stack: UpStack) -> None:
    """uvloop is the sidecar's event loop wherever it installs (it measured faster in
    bench/gateways.py), so every test through this stack exercises grpc's aio server on it."""
    line = stack.process.wait_for_line(r"ext_proc listening on ")
    assert line.rstrip().endswith("event loop uvloop"), line


def test_the_api_keys_appear_nowhere(stack: UpStack, tmp_path: Path) -> None:
    dump = httpx.get(f"{stack.admin}/config_dump?include_eds", timeout=10).text
    secrets = [s for s in json.loads(dump)["configs"] if "Secrets" in s["@type"]]
    assert secrets  # the keys are there, as SDS secrets...
    assert "[redacted]" in json.dumps(secrets)  # ...shown redacted
    rendered = ManagedProcess("render", meshroute_argv("render", *map(str, stack.paths)), env=KEYS)
    rendered.process.wait(timeout=60)
    rendered.stop()
    assert "REDACTED" in rendered.output
    for key in KEYS.values():
        assert key not in dump
        assert key not in stack.process.output  # every child's log, as `up` relays it
        assert key not in rendered.output
