"""Policies written in YAML, enforced by real Envoy, against upstreams that misbehave on
purpose: retries, outlier ejection, canary weights, session affinity, health checks,
TLS, and streams longer than Envoy's default route timeout.

One gateway lets clients pin the agent (x-meshroute-agent), so each test talks to the
agent whose policy it is about.
"""

from __future__ import annotations

import json
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import trustme

from tests.support.metrics import envoy_counter
from tests.support.processes import free_port
from tests.support.stack import ComponentStack
from tests.support.upstreams import (
    UPSTREAM_HEADER,
    Upstream,
    tls_upstream,
    write_ca_pem,
)
from tests.support.waiting import eventually

HOSTS = ("r1", "r2", "e1", "e2", "v1", "v2", "s1", "s2", "s3", "h1", "h2", "long")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def hosts(ca: trustme.CA) -> Iterator[dict[str, Upstream]]:
    started = {name: Upstream(name) for name in HOSTS}
    started["tls"] = tls_upstream("tls", ca, hostname="localhost")
    yield started
    for upstream in started.values():
        upstream.close()


@pytest.fixture(autouse=True)
def reset_hosts(hosts: dict[str, Upstream]) -> None:
    for upstream in hosts.values():
        upstream.reset()


def agent(name: str, endpoints: list[Upstream] | None = None, policy: str = "") -> str:
    text = textwrap.dedent(
        f"""\
        apiVersion: meshroute.io/v1alpha1
        kind: Agent
        metadata: {{name: {name}}}
        spec:
          description: the {name} agent
        """
    )
    if endpoints is not None:
        text += f"  endpoints: {json.dumps([upstream.url for upstream in endpoints])}\n"
    return text + textwrap.indent(textwrap.dedent(policy).strip("\n"), "  ") + "\n"


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, hosts: dict[str, Upstream], ca: trustme.CA
) -> Iterator[ComponentStack]:
    workdir = tmp_path_factory.mktemp("policies")
    config = workdir / "config"
    config.mkdir()
    ca_file = write_ca_pem(ca, workdir / "ca.pem")
    h = hosts
    documents = [
        agent("retry-once", [h["r1"]], "retries: {attempts: 2, retryOn: [503]}"),
        agent("always-503", [h["r2"]], "retries: {attempts: 2, retryOn: [503]}"),
        agent(
            "ejecting",
            [h["e1"], h["e2"]],
            """
            retries: {attempts: 0}
            loadBalancing: {policy: ROUND_ROBIN}
            outlierDetection:
              consecutive5xx: 3
              interval: 1s
              baseEjectionTime: 300s
              maxEjectionPercent: 50
            """,
        ),
        agent(
            "canary",
            None,
            f"""
            variants:
              - {{name: stable, weight: 90, endpoints: ["{h["v1"].url}"]}}
              - {{name: canary, weight: 10, endpoints: ["{h["v2"].url}"]}}
            """,
        ),
        agent(
            "sticky",
            [h["s1"], h["s2"], h["s3"]],
            "loadBalancing: {policy: RING_HASH, hashOn: {header: x-session-id}}",
        ),
        agent(
            "checked",
            [h["h1"], h["h2"]],
            """
            loadBalancing: {policy: ROUND_ROBIN}
            healthCheck:
              path: /healthz
              interval: 200ms
              timeout: 1s
              unhealthyThreshold: 2
              healthyThreshold: 1
            """,
        ),
        agent(
            "secure",
            None,
            f'endpoints: ["https://localhost:{h["tls"].port}"]\ntls: {{caFile: "{ca_file}"}}',
        ),
        agent("untrusted", None, f'endpoints: ["https://localhost:{h["tls"].port}"]'),
        agent("streamer", [h["long"]]),
        textwrap.dedent(
            f"""\
            apiVersion: meshroute.io/v1alpha1
            kind: Gateway
            metadata: {{name: policies}}
            spec:
              port: {free_port()}
              allowClientPinning: true
              agents:
                - {{name: retry-once, default: true}}
                - {{name: always-503}}
                - {{name: ejecting}}
                - {{name: canary}}
                - {{name: sticky}}
                - {{name: checked}}
                - {{name: secure}}
                - {{name: untrusted}}
                - {{name: streamer}}
            """
        ),
    ]
    (config / "policies.yaml").write_text("---\n".join(documents))
    components = ComponentStack(config, workdir)
    yield components
    components.close()


def call(stack: ComponentStack, agent_name: str, **headers: str) -> httpx.Response:
    return httpx.post(
        stack.url("policies"),
        json={"messages": [{"role": "user", "content": "hello"}]},
        headers={"x-meshroute-agent": agent_name, **headers},
        timeout=30,
    )


def stat(stack: ComponentStack, name: str) -> int:
    return envoy_counter(f"http://127.0.0.1:{stack.admin_port}", name, missing=0)


def test_a_503_once_is_retried_and_the_client_gets_200(
    stack: ComponentStack, hosts: dict[str, Upstream]
) -> None:
    hosts["r1"].fail_next(1, status=503)
    response = call(stack, "retry-once")
    assert response.status_code == 200, response.text
    assert hosts["r1"].chat_requests == 2  # the failure, then the retry


def test_retries_exhausted_pass_the_503_on_as_json(
    stack: ComponentStack, hosts: dict[str, Upstream]
) -> None:
    hosts["r2"].always_fail(503)
    response = call(stack, "always-503")
    assert response.status_code == 503
    assert response.json()["error"]["message"]
    assert hosts["r2"].chat_requests == 3  # the first try and two retries


def test_a_failing_host_is_ejected_and_traffic_succeeds(
    stack: ComponentStack, hosts: dict[str, Upstream]
) -> None:
    hosts["e2"].always_fail(503)
    warm_up = [call(stack, "ejecting").status_code for _ in range(20)]
    assert 503 in warm_up  # the bad host was really in rotation
    results = [call(stack, "ejecting").status_code for _ in range(200)]
    assert results.count(200) >= 0.95 * len(results)
    ejected = "cluster.agent_ejecting.outlier_detection.ejections_enforced_consecutive_5xx"
    assert stat(stack, ejected) >= 1


def test_variants_split_traffic_by_weight_and_say_which_served(
    stack: ComponentStack, hosts: dict[str, Upstream]
) -> None:
    def one(_: int) -> tuple[str, str]:
        response = call(stack, "canary")
        assert response.status_code == 200
        return response.headers["x-meshroute-variant"], response.headers[UPSTREAM_HEADER]

    with ThreadPoolExecutor(max_workers=4) as pool:
        served = list(pool.map(one, range(2000)))
    variants = Counter(variant for variant, _ in served)
    assert set(served) == {("stable", "v1"), ("canary", "v2")}  # the header tells the truth
    assert abs(variants["canary"] / len(served) - 0.10) <= 0.03


def test_ring_hash_keeps_each_session_on_one_host(stack: ComponentStack) -> None:
    hosts_by_session: dict[str, set[str]] = {}
    for session in range(30):
        for _ in range(4):
            response = call(stack, "sticky", **{"x-session-id": f"session-{session}"})
            hosts_by_session.setdefault(f"session-{session}", set()).add(
                response.headers[UPSTREAM_HEADER]
            )
    assert all(len(seen) == 1 for seen in hosts_by_session.values()), hosts_by_session
    used = {next(iter(seen)) for seen in hosts_by_session.values()}
    assert len(used) >= 2  # sessions spread over the hosts


def test_a_host_failing_its_health_check_leaves_the_rotation(
    stack: ComponentStack, hosts: dict[str, Upstream]
) -> None:
    healthy = "cluster.agent_checked.membership_healthy"
    eventually(lambda: stat(stack, healthy) == 2, "both hosts pass their checks")
    hosts["h2"].healthy = False
    eventually(lambda: stat(stack, healthy) == 1, "h2 is out")
    assert hosts["h2"].health_checks > 0
    served = {call(stack, "checked").headers[UPSTREAM_HEADER] for _ in range(20)}
    assert served == {"h1"}
    hosts["h2"].healthy = True
    eventually(lambda: stat(stack, healthy) == 2, "h2 is back")


def test_https_upstreams_are_verified_against_the_given_ca(
    stack: ComponentStack, hosts: dict[str, Upstream]
) -> None:
    trusted = call(stack, "secure")
    assert trusted.status_code == 200, trusted.text
    assert trusted.headers[UPSTREAM_HEADER] == "tls"

    untrusted = call(stack, "untrusted")  # the test CA is not in the system bundle
    assert untrusted.status_code == 503
    error = untrusted.json()["error"]
    assert error["code"] == "upstream_connect_failure"
    assert stat(stack, "cluster.agent_untrusted.ssl.fail_verify_error") >= 1
    assert hosts["tls"].chat_requests == 1  # only the trusted call got through


def test_a_stream_longer_than_envoys_default_route_timeout_is_not_cut(
    stack: ComponentStack, hosts: dict[str, Upstream]
) -> None:
    envoy_default_route_timeout = 15
    hosts["long"].stream_for(envoy_default_route_timeout + 2, interval=1.0)
    started = time.monotonic()
    lines = []
    with httpx.stream(
        "POST",
        stack.url("policies"),
        json={"messages": [{"role": "user", "content": "talk"}], "stream": True},
        headers={"x-meshroute-agent": "streamer"},
        timeout=60,
    ) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert time.monotonic() - started > envoy_default_route_timeout
    assert lines[-1] == "data: [DONE]"
    assert len(lines) >= envoy_default_route_timeout
