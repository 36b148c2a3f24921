"""The quickstart config through `meshroute up`: real Envoy, control plane, ext_proc, agents."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from meshroute.demo.agents import answer_text
from tests.support.configs import quickstart_config
from tests.support.errors import assert_error
from tests.support.metrics import envoy_counter
from tests.support.processes import free_port
from tests.support.stack import UpStack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, demo_agents_port: int) -> Iterator[UpStack]:
    gateway_port = free_port()
    config = quickstart_config(
        tmp_path_factory.mktemp("quickstart"), gateway_port, demo_agents_port
    )
    up = UpStack([config], {"travel": gateway_port})
    yield up
    assert up.stop() == 0, up.process.output


def chat(stack: UpStack, text: str, **headers: str) -> httpx.Response:
    return httpx.post(
        stack.url("travel"),
        json={"messages": [{"role": "user", "content": text}]},
        headers=headers,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("question", "agent"),
    [
        ("Will it rain in Paris tomorrow?", "weather"),
        ("Is my flight from Denver to Boston delayed?", "flights"),
        ("How many yen do I get for 200 euros?", "currency"),
    ],
)
def test_each_question_reaches_the_agent_that_serves_it(
    stack: UpStack, question: str, agent: str
) -> None:
    response = chat(stack, question)
    assert response.status_code == 200, response.text
    assert response.headers["x-meshroute-agent"] == agent
    assert response.headers["x-meshroute-route-reason"] == "embedded"
    assert response.headers["x-demo-agent"] == agent  # the upstream that actually answered
    answer = response.json()["choices"][0]["message"]["content"]
    assert answer == answer_text(agent, [{"role": "user", "content": question}])


def test_a_message_that_fits_no_agent_goes_to_the_default(stack: UpStack) -> None:
    response = chat(stack, "hello")
    assert response.status_code == 200
    assert response.headers["x-meshroute-agent"] == "weather"
    assert response.headers["x-meshroute-route-reason"] == "default"


def test_clients_cannot_pick_the_agent_with_our_headers(stack: UpStack) -> None:
    response = chat(
        stack,
        "Will it rain in Paris tomorrow?",
        **{"x-meshroute-agent": "flights", "x-meshroute-route-reason": "pinned"},
    )
    assert response.headers["x-meshroute-agent"] == "weather"
    assert response.headers["x-meshroute-route-reason"] == "embedded"
    assert response.headers["x-demo-agent"] == "weather"


def test_openai_sdk_non_streaming(stack: UpStack) -> None:
    client = openai.OpenAI(base_url=stack.url("travel", "/v1"), api_key="unused", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="any", messages=[{"role": "user", "content": "Find me a flight to Lisbon in May"}]
    )
    completion = raw.parse()
    assert raw.headers["x-meshroute-agent"] == "flights"
    assert completion.choices[0].message.content == answer_text(
        "flights", [{"role": "user", "content": "Find me a flight to Lisbon in May"}]
    )


def test_openai_sdk_streaming_passes_through(stack: UpStack) -> None:
    client = openai.OpenAI(base_url=stack.url("travel", "/v1"), api_key="unused", max_retries=0)
    question = "What is the exchange rate from pounds to dollars?"
    with client.chat.completions.with_streaming_response.create(
        model="any", messages=[{"role": "user", "content": question}], stream=True
    ) as response:
        assert response.headers["x-meshroute-agent"] == "currency"
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = list(response.parse())
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert len(chunks) > 3  # really streamed, in pieces
    assert text == answer_text("currency", [{"role": "user", "content": question}])
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_bad_json_is_a_400_in_the_error_shape(stack: UpStack) -> None:
    response = httpx.post(
        stack.url("travel"),
        content=b'{"messages": [',
        headers={"content-type": "application/json"},
        timeout=30,
    )
    error = assert_error(response, 400, "invalid_request_error", "invalid_json")
    assert "not valid JSON" in error["message"]


def test_missing_messages_is_a_400(stack: UpStack) -> None:
    response = httpx.post(stack.url("travel"), json={"model": "x"}, timeout=30)
    assert_error(response, 400, "invalid_request_error", "missing_messages")


def test_empty_body_is_a_400(stack: UpStack) -> None:
    response = httpx.post(stack.url("travel"), timeout=30)
    assert_error(response, 400, "invalid_request_error", "empty_body")


def test_unknown_path_is_a_404_without_asking_the_sidecar(stack: UpStack) -> None:
    before = _ext_proc_streams(stack)
    assert chat(stack, "Is it sunny in Rome?").status_code == 200
    after_chat = _ext_proc_streams(stack)
    assert after_chat == before + 1  # the counter does count sidecar calls
    response = httpx.post(stack.url("travel", "/v1/embeddings"), json={}, timeout=30)
    assert_error(response, 404, "not_found_error", "route_not_found")
    assert _ext_proc_streams(stack) == after_chat


def test_wrong_method_is_a_405(stack: UpStack) -> None:
    response = httpx.get(stack.url("travel"), timeout=30)
    assert_error(response, 405, "invalid_request_error", "method_not_allowed")
    assert response.headers["allow"] == "POST"


def _ext_proc_streams(stack: UpStack) -> int:
    return envoy_counter(stack.admin, "http.gateway_travel.ext_proc.streams_started")


def test_up_prints_where_everything_is(stack: UpStack) -> None:
    output = stack.process.output
    assert f"http://127.0.0.1:{stack.gateway_ports['travel']}/v1/chat/completions" in output
    assert f"http://127.0.0.1:{stack.admin_port}/" in output
    assert "/stats/prometheus" in output
