"""Routing by a routing model, through real Envoy, with a stand-in model that keeps the
orchestrator contract and agents that record what they receive."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from meshroute.demo.agents import answer_text
from tests.support.agents import RecordingAgents
from tests.support.configs import agent_yaml, documents, provider_yaml
from tests.support.orchestrator import StandInOrchestrator
from tests.support.processes import free_port
from tests.support.stack import ComponentStack

ROUTER_TIMEOUT = 1.0
MODEL_ID = "katanemo/Plano-Orchestrator-4B"


@pytest.fixture(scope="module")
def agents() -> Iterator[RecordingAgents]:
    recording = RecordingAgents().start()
    yield recording
    recording.close()


@pytest.fixture(scope="module")
def orchestrator() -> Iterator[StandInOrchestrator]:
    model = StandInOrchestrator().start()
    yield model
    model.close()


@pytest.fixture(autouse=True)
def fresh_state(orchestrator: StandInOrchestrator, agents: RecordingAgents) -> None:
    orchestrator.mode, orchestrator.delay, orchestrator.fixed = "rule", 0.0, []
    orchestrator.prompts.clear()
    agents.received.clear()


def write_config(
    directory: Path, agents: RecordingAgents, orchestrator_port: int, gateway_port: int
) -> Path:
    broken_endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(
        documents(
            agent_yaml("weather", "Weather forecasts and conditions", agents.endpoint),
            agent_yaml("flights", "Flight search and live flight status", agents.endpoint),
            agent_yaml("currency", "Currency exchange rates", agents.endpoint),
            agent_yaml("broken", "An agent that is down", broken_endpoint),
            provider_yaml("router", f"http://127.0.0.1:{orchestrator_port}", {"plano": MODEL_ID}),
            textwrap.dedent(
                f"""\
                apiVersion: meshroute.io/v1alpha1
                kind: Gateway
                metadata: {{name: travel}}
                spec:
                  port: {gateway_port}
                  agents:
                    - {{name: weather, default: true}}
                    - {{name: flights}}
                    - {{name: currency}}
                    - {{name: broken}}
                  router: {{type: orchestrator, provider: router, model: plano, timeout: 1s}}
                  allowClientPinning: true
                """
            ),
        )
    )
    return directory


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    agents: RecordingAgents,
    orchestrator: StandInOrchestrator,
) -> Iterator[ComponentStack]:
    workdir = tmp_path_factory.mktemp("orchestrated")
    gateway_port = free_port()
    config = write_config(workdir / "config", agents, orchestrator.port, gateway_port)
    components = ComponentStack(config, workdir)
    yield components
    components.close()


def ask(stack: ComponentStack, *messages: dict[str, str], **headers: str) -> httpx.Response:
    return httpx.post(
        stack.url("travel"), json={"messages": list(messages)}, headers=headers, timeout=30
    )


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def test_the_model_picks_the_agent(
    stack: ComponentStack, orchestrator: StandInOrchestrator
) -> None:
    response = ask(
        stack, {"role": "system", "content": "be brief"}, user("flights: is UA 901 on time?")
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-meshroute-agent"] == "flights"
    assert response.headers["x-meshroute-route-reason"] == "orchestrator"
    assert response.headers["x-demo-agent"] == "flights"

    [prompt] = orchestrator.prompts
    assert prompt.model == MODEL_ID
    assert prompt.temperature == 0
    assert [route["name"] for route in prompt.routes] == [
        "weather",
        "flights",
        "currency",
        "broken",
    ]
    assert prompt.routes[1]["description"] == "Flight search and live flight status"
    assert prompt.conversation == [user("flights: is UA 901 on time?")]  # no system message


def test_the_model_sees_a_trimmed_conversation(
    stack: ComponentStack, orchestrator: StandInOrchestrator
) -> None:
    history = []
    for index in range(20):
        history += [user(f"question {index}"), {"role": "assistant", "content": f"answer {index}"}]
    history += [
        {"role": "tool", "content": "tool output"},
        {"role": "assistant", "content": ""},
        user("currency: and in yen?"),
    ]
    response = ask(stack, {"role": "system", "content": "sys"}, *history)
    assert response.headers["x-meshroute-agent"] == "currency"
    conversation = orchestrator.prompts[-1].conversation
    assert len(conversation) == 16  # maxTurns
    assert conversation[-1] == user("currency: and in yen?")
    assert {turn["role"] for turn in conversation} == {"user", "assistant"}
    assert all(turn["content"] for turn in conversation)


@pytest.mark.parametrize("mode", ["fenced", "single-quotes"])
def test_replies_in_loose_formats_are_understood(
    stack: ComponentStack, orchestrator: StandInOrchestrator, mode: str
) -> None:
    orchestrator.mode = mode
    response = ask(stack, user(f"currency please ({mode})"))
    assert response.headers["x-meshroute-agent"] == "currency"
    assert response.headers["x-meshroute-route-reason"] == "orchestrator"


@pytest.mark.parametrize("mode", ["error", "garbage", "empty", "unknown"])
def test_model_failures_fall_back_to_the_default_agent(
    stack: ComponentStack, orchestrator: StandInOrchestrator, mode: str
) -> None:
    orchestrator.mode = mode
    response = ask(stack, user(f"flights: anything ({mode})"))
    assert response.status_code == 200, response.text
    assert response.headers["x-meshroute-agent"] == "weather"
    assert response.headers["x-meshroute-route-reason"] == "fallback"
    assert response.headers["x-demo-agent"] == "weather"
    assert len(orchestrator.prompts) == 1  # it was asked


def test_a_slow_model_falls_back_within_its_timeout(
    stack: ComponentStack, orchestrator: StandInOrchestrator
) -> None:
    orchestrator.delay = 10 * ROUTER_TIMEOUT
    started = time.monotonic()
    response = ask(stack, user("flights: slow model"))
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.headers["x-meshroute-route-reason"] == "fallback"
    assert response.headers["x-meshroute-agent"] == "weather"
    assert ROUTER_TIMEOUT <= elapsed < ROUTER_TIMEOUT + 0.2


def test_the_same_conversation_is_decided_once(
    stack: ComponentStack, orchestrator: StandInOrchestrator
) -> None:
    first = ask(stack, user("flights: cache me"))
    second = ask(stack, user("flights: cache me"))
    assert first.headers["x-meshroute-agent"] == second.headers["x-meshroute-agent"] == "flights"
    assert second.headers["x-meshroute-route-reason"] == "orchestrator"
    assert len(orchestrator.prompts) == 1


def test_a_sequence_runs_in_order_and_streams_the_last_answer(
    stack: ComponentStack, orchestrator: StandInOrchestrator, agents: RecordingAgents
) -> None:
    orchestrator.mode, orchestrator.fixed = "fixed", ["weather", "flights"]
    question = "Will it storm in Denver, and should I fly tomorrow?"
    client = openai.OpenAI(base_url=stack.url("travel", "/v1"), api_key="unused", max_retries=0)
    with client.chat.completions.with_streaming_response.create(
        model="any", messages=[user(question)], stream=True
    ) as response:
        assert response.headers["x-meshroute-agent"] == "weather,flights"
        assert response.headers["x-meshroute-route-reason"] == "orchestrator"
        chunks = list(response.parse())
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)

    assert [agent for agent, _ in agents.received] == ["weather", "flights"]
    weather_request, flights_request = (body for _, body in agents.received)
    assert weather_request["stream"] is False  # earlier steps answer whole
    weather_answer = answer_text("weather", [user(question)])
    assert flights_request["stream"] is True
    assert flights_request["messages"] == [
        {"role": "assistant", "name": "weather", "content": weather_answer},
        user(question),
    ]
    assert streamed == answer_text("flights", flights_request["messages"])
    assert "Building on: weather" in streamed


def test_a_failing_step_is_a_json_error_naming_the_agent(
    stack: ComponentStack, orchestrator: StandInOrchestrator, agents: RecordingAgents
) -> None:
    orchestrator.mode, orchestrator.fixed = "fixed", ["broken", "flights"]
    response = ask(stack, user("anything"))
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "agent_error"
    assert error["type"] == "upstream_error"
    assert error["message"].startswith("agent 'broken' answered HTTP 503")
    assert agents.received == []  # flights never ran


def test_a_client_may_pin_an_agent_when_the_gateway_allows_it(
    stack: ComponentStack, orchestrator: StandInOrchestrator
) -> None:
    response = ask(stack, user("flights: pinned elsewhere"), **{"x-meshroute-agent": "currency"})
    assert response.headers["x-meshroute-agent"] == "currency"
    assert response.headers["x-meshroute-route-reason"] == "pinned"
    assert response.headers["x-demo-agent"] == "currency"
    assert orchestrator.prompts == []  # no model call for a pinned request

    unknown = ask(stack, user("hi"), **{"x-meshroute-agent": "hotels"})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "agent_not_found"
    assert "hotels" in unknown.json()["error"]["message"]


def test_clients_still_cannot_set_the_reason(stack: ComponentStack) -> None:
    response = ask(stack, user("flights: hi"), **{"x-meshroute-route-reason": "made-up"})
    assert response.headers["x-meshroute-route-reason"] == "orchestrator"


def test_the_model_being_down_falls_back(tmp_path: Path, agents: RecordingAgents) -> None:
    down = StandInOrchestrator().start()
    port = down.port
    down.close()  # nothing listens on its port any more
    gateway_port = free_port()
    config = write_config(tmp_path / "config", agents, port, gateway_port)
    stack = ComponentStack(config, tmp_path)
    try:
        response = ask(stack, user("flights: is anyone there?"))
        assert response.status_code == 200
        assert response.headers["x-meshroute-agent"] == "weather"
        assert response.headers["x-meshroute-route-reason"] == "fallback"
        assert json.loads(response.text)["choices"][0]["message"]["content"].startswith(
            "[weather agent]"
        )
    finally:
        stack.close()
