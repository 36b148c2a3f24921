"""The hardening matrix (docs/hardening.md): bad input and broken neighbours, through
real Envoy, the real sidecar and a recording agent. Each case states the exact status
and error code a client sees; none may hang, leak or take the gateway down."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.agents import RecordingAgents
from tests.support.configs import agent_yaml, documents, gateway_yaml, quickstart_config
from tests.support.errors import assert_error
from tests.support.processes import free_port
from tests.support.stack import ComponentStack, UpStack
from tests.support.waiting import eventually

MAX_REQUEST_BYTES = 2**20
GATEWAY_EXTRA = f"""
maxRequestBytes: {MAX_REQUEST_BYTES}
clientTimeouts: {{headers: 1s, idle: 1s}}
"""
QUESTION = "Will it rain in Paris tomorrow?"
PARTIAL_BODY = (
    b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
    b"content-type: application/json\r\ncontent-length: 100\r\n\r\n"
    b'{"mess'
)
"""A request whose body stops 94 bytes short."""
SOCKET_TIMEOUT = 60.0
"""Bounds a broken test, never what it measures: Envoy's own timers answer first."""


@pytest.fixture(scope="module")
def agents() -> Iterator[RecordingAgents]:
    recording = RecordingAgents().start()
    yield recording
    recording.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, agents: RecordingAgents) -> Iterator[UpStack]:
    port = free_port()
    agents_port = urlsplit(agents.endpoint).port
    assert agents_port is not None
    config = quickstart_config(tmp_path_factory.mktemp("hardening"), port, agents_port)
    gateway = config / "gateway.yaml"
    gateway.write_text(gateway.read_text().rstrip("\n") + "\n" + _indented(GATEWAY_EXTRA))
    up = UpStack([config], {"travel": port})
    yield up
    assert up.stop() == 0, up.process.output


def _indented(extra: str) -> str:
    return "".join(f"  {line}\n" for line in extra.strip().splitlines())


def chat_body(**fields: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": QUESTION}], **fields}


# ------------------------------------------------------------------------ bad input


@dataclass(frozen=True)
class BadInput:
    """One row of the matrix: what a client sends and the error it gets back."""

    name: str
    content: bytes
    status: int
    error_type: str
    code: str
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})


NESTED = b"[" * 5000 + b"]" * 5000
BAD_INPUT = [
    BadInput("malformed JSON", b'{"messages": [', 400, "invalid_request_error", "invalid_json"),
    BadInput("empty body", b"", 400, "invalid_request_error", "empty_body"),
    BadInput(
        "not UTF-8",
        b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}',
        400,
        "invalid_request_error",
        "invalid_json",
    ),
    BadInput(
        "nested 5,000 deep",
        b'{"messages": [{"role": "user", "content": "x"}], "x": ' + NESTED + b"}",
        400,
        "invalid_request_error",
        "invalid_json",
    ),
    BadInput(
        "a form instead of JSON",
        b"messages=hello",
        400,
        "invalid_request_error",
        "invalid_json",
        {"content-type": "application/x-www-form-urlencoded"},
    ),
    BadInput("a JSON array", b"[1, 2]", 400, "invalid_request_error", "invalid_request"),
    BadInput("no messages", b'{"model": "x"}', 400, "invalid_request_error", "missing_messages"),
    BadInput(
        "messages not an array",
        b'{"messages": "hello"}',
        400,
        "invalid_request_error",
        "invalid_messages",
    ),
    BadInput(
        "a message without a role",
        b'{"messages": [{"content": "hi"}]}',
        400,
        "invalid_request_error",
        "invalid_messages",
    ),
    BadInput(
        "over maxRequestBytes",
        json.dumps(chat_body(padding="x" * MAX_REQUEST_BYTES)).encode(),
        413,
        "request_too_large",
        "request_too_large",
    ),
]


@pytest.mark.parametrize("case", BAD_INPUT, ids=[case.name for case in BAD_INPUT])
def test_bad_bodies_get_their_status_and_error_and_reach_no_agent(
    stack: UpStack, agents: RecordingAgents, case: BadInput
) -> None:
    before = len(agents.received)
    response = httpx.post(stack.url("travel"), content=case.content, headers=case.headers)
    assert_error(response, case.status, case.error_type, case.code)
    assert len(agents.received) == before


@dataclass(frozen=True)
class OddButValid:
    """A body that is unusual but routable: it reaches the agent unchanged."""

    name: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


ODD_BUT_VALID = [
    OddButValid("content-type text/plain", chat_body(), {"content-type": "text/plain"}),
    OddButValid("no content-type", chat_body(), {"content-type": ""}),
    OddButValid(
        "content as parts with an image",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": QUESTION},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    ],
                }
            ]
        },
    ),
    OddButValid("null content", {"messages": [{"role": "user", "content": None}]}),
    OddButValid("an unknown role", {"messages": [{"role": "wizard", "content": QUESTION}]}),
    OddButValid(
        "10,000 messages",
        {"messages": [{"role": "user", "content": f"m{index}"} for index in range(10_000)]},
    ),
]


@pytest.mark.parametrize("case", ODD_BUT_VALID, ids=[case.name for case in ODD_BUT_VALID])
def test_odd_but_valid_bodies_are_routed_unchanged(
    stack: UpStack, agents: RecordingAgents, case: OddButValid
) -> None:
    before = len(agents.received)
    content = json.dumps(case.body).encode()
    response = httpx.post(stack.url("travel"), content=content, headers=case.headers)
    assert response.status_code == 200, response.text
    assert response.headers["x-meshroute-agent"]
    [(agent, received)] = agents.received[before:]
    assert agent == response.headers["x-meshroute-agent"]
    assert received["messages"] == case.body["messages"]


@pytest.mark.parametrize(
    ("name", "headers", "code"),
    [
        ("one header over 60 KiB", {"x-big": "a" * 70_000}, "http1.headers_too_large"),
        ("200 headers", {f"x-h{index}": "v" for index in range(200)}, "http1.too_many_headers"),
    ],
)
def test_absurd_headers_are_a_json_431(
    stack: UpStack, name: str, headers: dict[str, str], code: str
) -> None:
    response = httpx.post(stack.url("travel"), json=chat_body(), headers=headers)
    assert_error(response, 431, "request_too_large", code)


def raw_exchange(port: int, sent: bytes) -> bytes:
    """Send `sent` and then nothing; everything the gateway answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as connection:
        connection.sendall(sent)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    return received


def http_error(raw: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)["error"]


def test_a_client_too_slow_with_its_headers_gets_a_json_408(stack: UpStack) -> None:
    port = stack.gateway_ports["travel"]
    raw = raw_exchange(port, b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
    status, error = http_error(raw)
    assert status == 408
    assert error["code"] == "request_header_timeout"


def test_a_client_that_stalls_mid_body_gets_a_json_408(
    stack: UpStack, agents: RecordingAgents
) -> None:
    before = len(agents.received)
    status, error = http_error(raw_exchange(stack.gateway_ports["travel"], PARTIAL_BODY))
    assert status == 408
    assert error["code"] == "stream_idle_timeout"
    assert len(agents.received) == before


def test_a_client_that_hangs_up_mid_body_costs_nothing(
    stack: UpStack, agents: RecordingAgents
) -> None:
    before = len(agents.received)
    with socket.create_connection(("127.0.0.1", stack.gateway_ports["travel"])) as connection:
        connection.sendall(PARTIAL_BODY)
    response = httpx.post(stack.url("travel"), json=chat_body())
    assert response.status_code == 200
    assert len(agents.received) == before + 1


# ------------------------------------------------------------------------- security


def test_client_envoy_headers_cannot_steer_timeouts_or_retries(
    stack: UpStack, agents: RecordingAgents
) -> None:
    steering = {
        "x-envoy-upstream-rq-timeout-ms": "1",
        "x-envoy-upstream-rq-per-try-timeout-ms": "1",
        "x-envoy-retry-on": "5xx",
        "x-envoy-max-retries": "9",
        "x-envoy-force-trace": "true",
    }
    before = len(agents.headers)
    response = httpx.post(stack.url("travel"), json=chat_body(), headers=steering)
    assert response.status_code == 200, response.text
    [upstream_headers] = agents.headers[before:]
    leaked = {name: value for name, value in steering.items() if upstream_headers.get(name)}
    assert leaked == {}
    # Envoy tells the agent the timeout it really applies: the route's, not the client's.
    assert upstream_headers.get("x-envoy-expected-rq-timeout-ms") != "1"


def test_prompts_do_not_appear_in_any_log(stack: UpStack) -> None:
    secret_question = "Is the launch code 7f3a9c still valid for Mars?"
    response = httpx.post(
        stack.url("travel"), json={"messages": [{"role": "user", "content": secret_question}]}
    )
    assert response.status_code == 200
    marker = httpx.post(stack.url("travel"), content=b"{", headers={"x-request-id": "mark-1"})
    assert marker.status_code == 400
    # Envoy's access log line for the marker comes after the question's own line.
    eventually(lambda: "mark-1" in stack.process.output, "the marker request in the log")
    assert "7f3a9c" not in stack.process.output


# ------------------------------------------------------------------------- failures


def test_an_agent_that_is_down_is_a_json_503_naming_no_internals(tmp_path: Path) -> None:
    port, closed = free_port(), free_port()
    config = tmp_path / "config"
    config.mkdir()
    (config / "all.yaml").write_text(
        documents(
            agent_yaml("gone", "An agent that is not running", f"http://127.0.0.1:{closed}"),
            gateway_yaml("lonely", port, ["gone"], "gone"),
        )
    )
    stack = ComponentStack(config, tmp_path)
    try:
        response = httpx.post(stack.url("lonely"), json=chat_body())
        error = assert_error(response, 503, "service_unavailable", "upstream_connect_failure")
        assert str(closed) not in error["message"]
    finally:
        stack.close()


@pytest.fixture
def component_stack(
    tmp_path: Path, agents: RecordingAgents
) -> Iterator[tuple[ComponentStack, Path]]:
    agents_port = urlsplit(agents.endpoint).port
    assert agents_port is not None
    config = quickstart_config(tmp_path / "config", free_port(), agents_port)
    stack = ComponentStack(config, tmp_path)
    yield stack, config
    stack.close()


def test_the_control_plane_coming_back_is_picked_up_by_envoy_and_the_sidecar(
    component_stack: tuple[ComponentStack, Path],
) -> None:
    stack, config = component_stack
    url = stack.url("travel")
    stack.control_plane.stop()
    assert httpx.post(url, json=chat_body()).headers["x-meshroute-agent"] == "weather"
    # While it is away, weather is taken off the gateway; back, the change must arrive.
    gateway = config / "gateway.yaml"
    text = gateway.read_text().replace("    - {name: weather, default: true}\n", "")
    gateway.write_text(text.replace("{name: flights}", "{name: flights, default: true}"))
    stack.control_plane.restart(stack.translate())
    eventually(
        lambda: httpx.post(url, json=chat_body()).headers.get("x-meshroute-agent") == "flights",
        "Envoy and the sidecar on the returned control plane's config",
    )


def test_the_sidecar_killed_under_load_answers_json_503s_and_recovers(
    component_stack: tuple[ComponentStack, Path],
) -> None:
    stack, _ = component_stack
    url = stack.url("travel")
    statuses: list[int] = []
    bodies_ok: list[bool] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=SOCKET_TIMEOUT) as client:
            while not stop.is_set():
                response = client.post(url, json=chat_body())
                statuses.append(response.status_code)
                bodies_ok.append(_is_answer_or_our_error(response))

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        eventually(lambda: len(statuses) >= 20, "load running")
        assert stack.ext_proc is not None
        stack.ext_proc.stop()
        stopped_at = len(statuses)
        eventually(lambda: 503 in statuses[stopped_at:], "503s while the sidecar is down")
        stack.start_ext_proc()
        restarted_at = len(statuses)
        eventually(lambda: 200 in statuses[restarted_at + 8 :], "200s again")
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=SOCKET_TIMEOUT)
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    assert all(bodies_ok)


def _is_answer_or_our_error(response: httpx.Response) -> bool:
    payload = response.json()
    if response.status_code == 200:
        return bool(payload["choices"])
    return set(payload["error"]) == {"type", "message", "code"}
