"""Config changes at run time, rejected config, and parts going away.

The control plane runs inside the test (the real xDS server and cache) so a test can
push a snapshot Envoy must reject, or stop the control plane; ext_proc and Envoy run
as the processes they are in production.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from google.protobuf import duration_pb2

from meshroute.control_plane.xds import type_urls
from tests.support.configs import agent_yaml, documents, gateway_yaml, quickstart_config
from tests.support.metrics import envoy_counter
from tests.support.processes import free_port
from tests.support.stack import ComponentStack
from tests.support.waiting import eventually


def ask(url: str, text: str) -> httpx.Response:
    return httpx.post(url, json={"messages": [{"role": "user", "content": text}]}, timeout=30)


@pytest.fixture
def config_dir(tmp_path: Path, demo_agents_port: int) -> Path:
    return quickstart_config(tmp_path / "config", free_port(), demo_agents_port)


@pytest.fixture
def stack(config_dir: Path, tmp_path: Path) -> Iterator[ComponentStack]:
    components = ComponentStack(config_dir, tmp_path)
    yield components
    components.close()


def test_a_snapshot_pushed_at_run_time_is_applied(
    stack: ComponentStack, config_dir: Path, demo_agents_port: int
) -> None:
    url = stack.url("travel")
    question = "Which hotel near the Louvre has a free room tonight?"
    assert ask(url, question).headers["x-meshroute-agent"] != "hotels"  # not there yet

    (config_dir / "hotels.yaml").write_text(
        agent_yaml(
            "hotels",
            "Hotel search and booking: rooms, prices, availability, check-in and check-out.",
            f"http://127.0.0.1:{demo_agents_port}",
            examples=["Book a hotel room in Rome", "Any free rooms near the station tonight?"],
        )
    )
    gateway = (config_dir / "gateway.yaml").read_text()
    (config_dir / "gateway.yaml").write_text(
        gateway.replace("- {name: currency}", "- {name: currency}\n    - {name: hotels}")
    )
    version = stack.control_plane.push(stack.translate())

    eventually(lambda: ask(url, question).headers.get("x-meshroute-agent") == "hotels", "hotels")
    response = ask(url, question)
    assert response.headers["x-demo-agent"] == "hotels"
    states = stack.control_plane.type_states("test-envoy")
    assert states[type_urls.CLUSTER].acked_version == version
    assert states[type_urls.ROUTE].acked_version == version


def test_a_snapshot_envoy_rejects_leaves_the_old_config_serving(stack: ComponentStack) -> None:
    url = stack.url("travel")
    good = stack.translate()
    broken = stack.translate()
    # A negative connect timeout passes our types but not Envoy's validation.
    broken.clusters[0].connect_timeout.CopyFrom(duration_pb2.Duration(seconds=-1))
    rejected = stack.control_plane.push(broken)

    def nacked() -> bool:
        state = stack.control_plane.type_states("test-envoy").get(type_urls.CLUSTER)
        return state is not None and state.nacked_version == rejected

    eventually(nacked, "Envoy NACKs the broken clusters")
    state = stack.control_plane.type_states("test-envoy")[type_urls.CLUSTER]
    assert state.acked_version != rejected
    assert "Invalid duration" in (state.nack_detail or "")  # Envoy's own reason, passed on

    response = ask(url, "Is flight LH 400 on time?")  # still served by the old config
    assert response.status_code == 200
    assert response.headers["x-meshroute-agent"] == "flights"

    # The rejected version was not sent again: Envoy counted one rejection, and the
    # next good snapshot is taken as normal.
    good.clusters[0].connect_timeout.CopyFrom(duration_pb2.Duration(seconds=3))
    accepted = stack.control_plane.push(good)
    eventually(
        lambda: (
            stack.control_plane.type_states("test-envoy")[type_urls.CLUSTER].acked_version
            == accepted
        ),
        "Envoy ACKs the next good snapshot",
    )
    admin = f"http://127.0.0.1:{stack.admin_port}"
    assert envoy_counter(admin, "cluster_manager.cds.update_rejected") == 1


def test_routing_survives_the_control_plane_going_away(stack: ComponentStack) -> None:
    url = stack.url("travel")
    stack.control_plane.stop()
    for question, agent in [
        ("Will it snow in Oslo on Sunday?", "weather"),
        ("Cheapest flight from Boston to Lisbon", "flights"),
    ]:
        response = ask(url, question)
        assert response.status_code == 200
        assert response.headers["x-meshroute-agent"] == agent


def test_sidecar_down_with_failure_mode_closed_is_a_json_503_then_recovers(
    stack: ComponentStack,
) -> None:
    url = stack.url("travel")
    assert stack.ext_proc is not None
    stack.ext_proc.stop()
    response = ask(url, "Is flight LH 400 on time?")
    assert response.status_code == 503
    assert response.json() == {
        "error": {
            "type": "service_unavailable",
            "code": "routing_unavailable",
            "message": "the routing sidecar could not be reached or did not answer in time; "
            "retry shortly",
        }
    }
    stack.start_ext_proc()
    eventually(lambda: ask(url, "Is flight LH 400 on time?").status_code == 200, "recovery")
    assert ask(url, "Is flight LH 400 on time?").headers["x-meshroute-agent"] == "flights"


def test_sidecar_down_with_failure_mode_open_goes_to_the_default_agent(
    tmp_path: Path, demo_agents_port: int
) -> None:
    port = free_port()
    endpoint = f"http://127.0.0.1:{demo_agents_port}"
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "all.yaml").write_text(
        documents(
            agent_yaml("weather", "Weather forecasts", endpoint),
            agent_yaml("flights", "Flight status and search", endpoint),
            gateway_yaml("open", port, ["weather", "flights"], "weather", "failureMode: open"),
        )
    )
    stack = ComponentStack(config_dir, tmp_path)
    try:
        assert stack.ext_proc is not None
        stack.ext_proc.stop()
        response = ask(stack.url("open"), "Is flight LH 400 on time?")
        assert response.status_code == 200
        assert response.headers["x-meshroute-agent"] == "weather"
        assert response.headers["x-meshroute-route-reason"] == "fallback"
        assert response.headers["x-demo-agent"] == "weather"
    finally:
        stack.close()


def test_a_body_over_max_request_bytes_is_a_json_413(tmp_path: Path, demo_agents_port: int) -> None:
    port = free_port()
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "all.yaml").write_text(
        documents(
            agent_yaml("weather", "Weather forecasts", f"http://127.0.0.1:{demo_agents_port}"),
            gateway_yaml("small", port, ["weather"], "weather", "maxRequestBytes: 4Ki"),
        )
    )
    stack = ComponentStack(config_dir, tmp_path)
    try:
        fits = ask(stack.url("small"), "x" * 3000)
        assert fits.status_code == 200
        response = ask(stack.url("small"), "x" * 5000)
        assert response.status_code == 413
        assert response.json() == {
            "error": {
                "type": "request_too_large",
                "code": "request_too_large",
                "message": "the request body is larger than this gateway accepts "
                "(maxRequestBytes: 4096 bytes)",
            }
        }
    finally:
        stack.close()


def test_a_removed_agent_is_pruned_only_after_its_routes_are_gone(
    stack: ComponentStack, config_dir: Path
) -> None:
    gateway = config_dir / "gateway.yaml"
    gateway.write_text(gateway.read_text().replace("    - {name: currency}\n", ""))
    agents = config_dir / "agents.yaml"
    kept = [doc for doc in agents.read_text().split("---\n") if "{name: currency}" not in doc]
    agents.write_text("---\n".join(kept))
    cache = stack.control_plane.cache
    removed = stack.control_plane.call(cache.set_resources, stack.translate())

    # The snapshot that drops the agent still serves its cluster...
    assert "agent_currency" in removed.types[type_urls.CLUSTER].by_name
    assert "agent_currency" not in removed.types[type_urls.ROUTE].by_name[
        "gateway_travel"
    ].value.decode(errors="ignore")

    def envoy_clusters() -> set[str]:
        dump = httpx.get(f"http://127.0.0.1:{stack.admin_port}/clusters?format=json").json()
        return {status["name"] for status in dump["cluster_statuses"]}

    # ...until Envoy has taken the routes without it; then a further snapshot prunes it.
    eventually(lambda: "agent_currency" not in envoy_clusters(), "Envoy drops the cluster")
    assert stack.control_plane.call(lambda: cache.retiring) == frozenset()
    response = ask(stack.url("travel"), "How many euros is 100 dollars?")
    assert response.status_code == 200
    assert response.headers["x-meshroute-agent"] != "currency"
