"""Incremental (Delta) ADS with a real Envoy: the bootstrap's DELTA_GRPC, end to end.

The control plane runs inside the test (see `ComponentStack`), so a test can push
snapshots, including one Envoy must reject, and read what each stream recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import duration_pb2

from meshroute.control_plane.xds import type_urls
from meshroute.control_plane.xds.delta import DeltaStream
from meshroute.control_plane.xds.snapshot import Snapshot
from tests.integration.test_live_config import ask, eventually
from tests.support.configs import agent_yaml, quickstart_config
from tests.support.metrics import envoy_counter
from tests.support.processes import free_port
from tests.support.stack import ComponentStack

ENVOY = "test-envoy"


@pytest.fixture
def config_dir(tmp_path: Path, demo_agents_port: int) -> Path:
    return quickstart_config(tmp_path / "config", free_port(), demo_agents_port)


@pytest.fixture
def stack(config_dir: Path, tmp_path: Path) -> Iterator[ComponentStack]:
    components = ComponentStack(config_dir, tmp_path, xds_protocol="delta")
    yield components
    components.close()


def admin_json(stack: ComponentStack, path: str) -> Any:
    return httpx.get(f"http://127.0.0.1:{stack.admin_port}{path}", timeout=10).json()


def envoy_clusters(stack: ComponentStack) -> set[str]:
    reply = admin_json(stack, "/clusters?format=json")
    return {status["name"] for status in reply.get("cluster_statuses", [])}


def envoy_route_clusters(stack: ComponentStack) -> set[str]:
    """Every cluster some route in Envoy's dynamic route configs sends to."""
    dump = admin_json(stack, "/config_dump?resource=dynamic_route_configs")
    named: set[str] = set()
    for config in dump.get("configs", []):
        for host in config["route_config"].get("virtual_hosts", []):
            for route in host.get("routes", []):
                if "cluster" in route.get("route", {}):
                    named.add(route["route"]["cluster"])
    return named


def current(stack: ComponentStack) -> Snapshot:
    return stack.control_plane.call(lambda: stack.control_plane.cache.current)


def acked(stack: ComponentStack, type_url: str) -> str | None:
    state = stack.control_plane.type_states(ENVOY).get(type_url)
    return state.acked_version if state else None


def holds_current_config(stack: ComponentStack) -> bool:
    """Envoy ACKed the current version of every type it takes."""
    snapshot = current(stack)
    return all(
        acked(stack, type_url) == snapshot.types[type_url].version
        for type_url in (type_urls.CLUSTER, type_urls.LISTENER, type_urls.ROUTE)
    )


def test_envoy_on_incremental_ads_routes_the_quickstart(stack: ComponentStack) -> None:
    bootstrap = admin_json(stack, "/config_dump?mask=bootstrap")["configs"][0]["bootstrap"]
    assert bootstrap["dynamic_resources"]["ads_config"]["api_type"] == "DELTA_GRPC"
    assert isinstance(stack.control_plane.stream(ENVOY), DeltaStream)
    eventually(lambda: holds_current_config(stack), "Envoy ACKs every type")

    for question, agent in [
        ("Will it snow in Oslo on Sunday?", "weather"),
        ("Cheapest flight from Boston to Lisbon", "flights"),
        ("How many euros is 100 US dollars?", "currency"),
    ]:
        response = ask(stack.url("travel"), question)
        assert response.status_code == 200
        assert response.headers["x-meshroute-agent"] == agent
        assert response.headers["x-demo-agent"] == agent


def test_an_agent_added_at_run_time_becomes_routable(
    stack: ComponentStack, config_dir: Path, demo_agents_port: int
) -> None:
    url = stack.url("travel")
    question = "Which hotel near the Louvre has a free room tonight?"
    assert ask(url, question).headers["x-meshroute-agent"] != "hotels"  # not there yet
    eventually(lambda: holds_current_config(stack), "Envoy ACKs every type")
    listeners_before = acked(stack, type_urls.LISTENER)

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
    assert ask(url, question).headers["x-demo-agent"] == "hotels"
    eventually(lambda: acked(stack, type_urls.ROUTE) == version, "Envoy ACKs the new routes")
    assert acked(stack, type_urls.CLUSTER) == version
    assert "agent_hotels" in envoy_clusters(stack)
    assert acked(stack, type_urls.LISTENER) == listeners_before  # listeners did not change


def test_a_removed_agent_leaves_envoy_only_after_its_routes(
    stack: ComponentStack, config_dir: Path
) -> None:
    eventually(lambda: holds_current_config(stack), "Envoy ACKs every type")
    assert "agent_currency" in envoy_clusters(stack)
    agents = (config_dir / "agents.yaml").read_text().split("\n---\n")
    (config_dir / "agents.yaml").write_text(
        "\n---\n".join(doc for doc in agents if "name: currency}" not in doc)
    )
    gateway = (config_dir / "gateway.yaml").read_text()
    (config_dir / "gateway.yaml").write_text(gateway.replace("    - {name: currency}\n", ""))
    version = stack.control_plane.push(stack.translate())

    eventually(lambda: "agent_currency" not in envoy_clusters(stack), "the cluster leaves Envoy")
    assert "agent_currency" not in envoy_route_clusters(stack)
    # Make before break: the routes that stopped naming the cluster went out (and were
    # ACKed) at the pushed version; the cluster's removal only in the snapshot after.
    snapshot = current(stack)
    assert snapshot.types[type_urls.ROUTE].version == version
    assert snapshot.types[type_urls.CLUSTER].version == str(int(version) + 1)
    eventually(lambda: holds_current_config(stack), "Envoy ACKs the removal")
    assert stack.control_plane.call(lambda: stack.control_plane.cache.retiring) == frozenset()

    response = ask(stack.url("travel"), "How many euros is 100 US dollars?")
    assert response.status_code == 200
    assert response.headers["x-meshroute-agent"] != "currency"


def test_a_snapshot_envoy_rejects_is_nacked_and_the_old_config_keeps_serving(
    stack: ComponentStack,
) -> None:
    url = stack.url("travel")
    eventually(lambda: holds_current_config(stack), "Envoy ACKs every type")
    accepted_before = acked(stack, type_urls.CLUSTER)
    good = stack.translate()
    broken = stack.translate()
    # A negative connect timeout passes our types but not Envoy's validation.
    broken.clusters[0].connect_timeout.CopyFrom(duration_pb2.Duration(seconds=-1))
    rejected = stack.control_plane.push(broken)

    def nacked() -> bool:
        state = stack.control_plane.type_states(ENVOY).get(type_urls.CLUSTER)
        return state is not None and state.nacked_version == rejected

    eventually(nacked, "Envoy NACKs the broken cluster")
    state = stack.control_plane.type_states(ENVOY)[type_urls.CLUSTER]
    assert state.acked_version == accepted_before
    assert "Invalid duration" in (state.nack_detail or "")  # Envoy's own reason, passed on
    assert "\n" not in (state.nack_detail or "")

    response = ask(url, "Is flight LH 400 on time?")  # still served by the old config
    assert response.status_code == 200
    assert response.headers["x-meshroute-agent"] == "flights"

    # The rejected cluster was not sent again (Envoy counted one rejection), and the
    # next good snapshot is taken as usual.
    good.clusters[0].connect_timeout.CopyFrom(duration_pb2.Duration(seconds=3))
    accepted = stack.control_plane.push(good)
    eventually(lambda: acked(stack, type_urls.CLUSTER) == accepted, "Envoy ACKs the fix")
    admin = f"http://127.0.0.1:{stack.admin_port}"
    assert envoy_counter(admin, "cluster_manager.cds.update_rejected") == 1
