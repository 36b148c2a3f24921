"""The upstream hosts integration tests put behind Envoy, checked directly over HTTP.

If these misbehave on their own, an Envoy resilience test would blame Envoy; so every
switch is proven here first, without Envoy.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from meshroute.demo.agents import answer_text
from tests.support.upstreams import (
    UPSTREAM_HEADER,
    ReceivedRequest,
    Upstream,
    tls_upstream,
    upstreams,
    write_ca_pem,
)

MESSAGES = [{"role": "user", "content": "is it raining?"}]
CHAT = "/v1/chat/completions"


@pytest.fixture
def host() -> Iterator[Upstream]:
    with upstreams("a") as [upstream]:
        yield upstream


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as http:
        yield http


def chat(client: httpx.Client, host: Upstream, path: str = CHAT, **extra: Any) -> httpx.Response:
    return client.post(host.url + path, json={"model": "m", "messages": MESSAGES, **extra})


def sse_events(client: httpx.Client, host: Upstream) -> list[str]:
    """The `data:` payloads of a streaming chat answer, in order."""
    with client.stream(
        "POST", host.url + CHAT, json={"model": "m", "messages": MESSAGES, "stream": True}
    ) as response:
        assert response.status_code == 200
        assert response.headers[UPSTREAM_HEADER] == host.name
        assert response.headers["content-type"].startswith("text/event-stream")
        return [line[len("data: ") :] for line in response.iter_lines() if line]


def content_of(events: list[str]) -> str:
    chunks = [json.loads(event) for event in events if event != "[DONE]"]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    return "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks)


def test_answers_like_the_demo_agent_and_names_itself(host: Upstream, client: httpx.Client) -> None:
    response = chat(client, host)
    assert response.status_code == 200
    assert response.headers[UPSTREAM_HEADER] == "a"
    completion = response.json()
    assert completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"]["content"] == answer_text("a", MESSAGES)


def test_the_agent_path_answers_the_same_way(host: Upstream, client: httpx.Client) -> None:
    response = chat(client, host, "/agents/weather/v1/chat/completions")
    assert response.status_code == 200
    assert response.headers[UPSTREAM_HEADER] == "a"
    content = response.json()["choices"][0]["message"]["content"]
    assert content == answer_text("weather", MESSAGES)


def test_normal_stream_is_the_demo_agents_stream(host: Upstream, client: httpx.Client) -> None:
    events = sse_events(client, host)
    assert events[-1] == "[DONE]"
    assert content_of(events) == answer_text("a", MESSAGES)


def test_fail_next_fails_exactly_n_then_answers(host: Upstream, client: httpx.Client) -> None:
    host.fail_next(2, status=502)
    failures = [chat(client, host) for _ in range(2)]
    for failure in failures:
        assert failure.status_code == 502
        assert failure.headers[UPSTREAM_HEADER] == "a"
        assert failure.json()["error"]["message"]
    assert chat(client, host).status_code == 200
    assert host.chat_requests == 3


def test_always_fail_until_recover(host: Upstream, client: httpx.Client) -> None:
    host.always_fail()
    assert [chat(client, host).status_code for _ in range(3)] == [503, 503, 503]
    host.recover()
    assert chat(client, host).status_code == 200


def test_healthy_flag_drives_healthz_only(host: Upstream, client: httpx.Client) -> None:
    assert client.get(host.url + "/healthz").status_code == 200
    host.healthy = False
    assert client.get(host.url + "/healthz").status_code == 503
    assert chat(client, host).status_code == 200
    host.healthy = True
    assert client.get(host.url + "/healthz").status_code == 200
    assert host.health_checks == 3
    assert host.chat_requests == 1


def test_delay_holds_the_answer_back(host: Upstream, client: httpx.Client) -> None:
    host.delay_seconds = 0.5
    started = time.monotonic()
    response = chat(client, host)
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.5


def test_stream_for_sends_timed_chunks_then_done(host: Upstream, client: httpx.Client) -> None:
    host.stream_for(1.0, 0.2)
    started = time.monotonic()
    events = sse_events(client, host)
    assert time.monotonic() - started >= 1.0
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert len(chunks) >= 4  # several content chunks, then the final one
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    # Non-streaming requests are not stretched.
    assert chat(client, host).json()["object"] == "chat.completion"


def test_close_ends_a_long_stream_instead_of_waiting_for_it() -> None:
    host = Upstream("long")
    host.stream_for(600, 0.1)
    first_chunk = threading.Event()
    events: list[str] = []

    def read() -> None:
        with (
            httpx.Client(timeout=30) as http,
            http.stream("POST", host.url + CHAT, json={"messages": MESSAGES, "stream": True}) as r,
        ):
            for line in r.iter_lines():
                if line:
                    events.append(line)
                    first_chunk.set()

    reader = threading.Thread(target=read)
    reader.start()
    try:
        assert first_chunk.wait(30)
    finally:
        host.close()
        reader.join(30)
    assert not reader.is_alive()
    assert events[-1] == "data: [DONE]"


def test_records_path_headers_and_body(host: Upstream, client: httpx.Client) -> None:
    client.post(
        host.url + "/agents/flights/v1/chat/completions",
        json={"model": "m", "messages": MESSAGES},
        headers={"X-Session-Id": "s-1"},
    )
    client.post(host.url + CHAT, content=b"not json")
    first, second = host.requests
    assert isinstance(first, ReceivedRequest)
    path, headers, body = first
    assert path == "/agents/flights/v1/chat/completions"
    assert headers["x-session-id"] == "s-1"
    assert body == {"model": "m", "messages": MESSAGES}
    assert second.body is None


def test_reset_restores_behaviour_and_forgets(host: Upstream, client: httpx.Client) -> None:
    host.always_fail()
    host.healthy = False
    chat(client, host)
    host.reset()
    assert chat(client, host).status_code == 200
    assert host.healthy
    assert host.chat_requests == 1


def test_upstreams_start_several_and_close_them(client: httpx.Client) -> None:
    with upstreams("a", "b") as hosts:
        assert [chat(client, host).headers[UPSTREAM_HEADER] for host in hosts] == ["a", "b"]
        urls = [host.url for host in hosts]
        hosts[1].close()  # killing a host mid-test is allowed; exit closes it only once
    for url in urls:
        with pytest.raises(httpx.ConnectError):
            client.get(url + "/healthz")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_host(ca: trustme.CA) -> Iterator[Upstream]:
    with tls_upstream("secure", ca) as upstream:
        yield upstream


def test_tls_upstream_answers_clients_that_trust_the_ca(ca: trustme.CA, tls_host: Upstream) -> None:
    assert tls_host.url.startswith("https://localhost:")
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    with httpx.Client(verify=trusting, timeout=30) as http:
        response = chat(http, tls_host)
    assert response.status_code == 200
    assert response.headers[UPSTREAM_HEADER] == "secure"


def test_tls_upstream_fails_verification_without_the_ca(tls_host: Upstream) -> None:
    with (
        httpx.Client(verify=ssl.create_default_context(), timeout=30) as http,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        http.get(tls_host.url + "/healthz")


def test_ca_pem_file_is_enough_to_verify(
    ca: trustme.CA, tls_host: Upstream, tmp_path: Path
) -> None:
    pem = write_ca_pem(ca, tmp_path / "certs" / "ca.pem")
    assert pem.read_text().startswith("-----BEGIN CERTIFICATE-----")
    with httpx.Client(verify=ssl.create_default_context(cafile=pem), timeout=30) as http:
        assert http.get(tls_host.url + "/healthz").status_code == 200
