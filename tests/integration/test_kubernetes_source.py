"""`meshroute control-plane --source kubernetes`, end to end.

The public command runs as a process against a stand-in API server (the Kubernetes
list/watch/status protocol, with the CRD schemas enforced at admission as a real
one does) and feeds a real ext-proc and Envoy; requests go through Envoy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.configs import quickstart_config
from tests.support.crd_schema import schema_errors
from tests.support.fake_kube import FakeKubeApi, Refused
from tests.support.processes import ManagedProcess, free_port, meshroute_argv
from tests.support.stack import DataPlane
from tests.support.waiting import eventually

NAMESPACE = "meshroute-demo"


def ask(port: int, text: str) -> httpx.Response:
    return httpx.post(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": text}]},
        timeout=30,
    )


@dataclass
class Cluster:
    api: FakeKubeApi
    control_plane: ManagedProcess
    health_port: int
    gateway_port: int
    data_plane: DataPlane

    def condition(self, kind: str, name: str) -> dict[str, Any] | None:
        obj = self.api.get(kind, name) or {}
        conditions = (obj.get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == "Accepted"), None)

    def accepted(self, kind: str, name: str) -> str | None:
        condition = self.condition(kind, name)
        return condition["status"] if condition else None

    def serving_version(self) -> str:
        reply = httpx.get(f"http://127.0.0.1:{self.health_port}/readyz", timeout=5)
        assert reply.status_code == 200, reply.text
        return reply.text.split()[-1]


def objects_of(directory: Path) -> list[dict[str, Any]]:
    return [
        doc
        for file in sorted(directory.glob("*.yaml"))
        for doc in yaml.safe_load_all(file.read_text())
        if doc
    ]


@pytest.fixture
def cluster(tmp_path: Path, demo_agents_port: int) -> Iterator[Cluster]:
    gateway_port = free_port()
    config = quickstart_config(tmp_path / "config", gateway_port, demo_agents_port)
    api = FakeKubeApi(namespace=NAMESPACE, admission=schema_errors)
    for obj in objects_of(config):
        api.apply(obj)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(api.kubeconfig())
    xds_port, health_port, internal_port = free_port(), free_port(), free_port()
    control_plane = ManagedProcess(
        "control-plane",
        meshroute_argv(
            "control-plane",
            "--source",
            "kubernetes",
            "--kubeconfig",
            str(kubeconfig),
            "--address",
            "127.0.0.1",
            "--port",
            str(xds_port),
            "--health-port",
            str(health_port),
            "--gateway-address",
            "127.0.0.1",
            "--internal-port",
            str(internal_port),
        ),
    )
    data_plane: DataPlane | None = None
    try:
        control_plane.wait_for_line(r"serving config version \d+ over ADS")
        data_plane = DataPlane(xds_port, tmp_path, [gateway_port, internal_port])
        yield Cluster(api, control_plane, health_port, gateway_port, data_plane)
    finally:
        if data_plane is not None:
            data_plane.close()
        control_plane.stop()
        api.close()


def test_the_namespace_objects_are_served_and_marked_accepted(cluster: Cluster) -> None:
    response = ask(cluster.gateway_port, "Is flight LH 400 on time?")
    assert response.status_code == 200
    assert response.headers["x-meshroute-agent"] == "flights"
    for kind, name in [("Agent", "weather"), ("Agent", "flights"), ("Gateway", "travel")]:
        eventually(lambda k=kind, n=name: cluster.accepted(k, n) == "True", f"{kind}/{name}")
        condition = cluster.condition(kind, name)
        assert condition is not None
        assert condition["reason"] == "Accepted"
        assert condition["observedGeneration"] == 1
    # It watched the namespace the kubeconfig context names.
    assert all(f"/namespaces/{NAMESPACE}/" in r.path for r in cluster.api.requests)


HOTELS: dict[str, Any] = {
    "apiVersion": "meshroute.io/v1alpha1",
    "kind": "Agent",
    "metadata": {"name": "hotels"},
    "spec": {
        "description": "Hotel search and booking: rooms, prices, availability, check-in.",
        "examples": ["Book a hotel room in Rome", "Any free rooms near the station tonight?"],
        "path": "/agents/hotels/v1/chat/completions",
    },
}
HOTEL_QUESTION = "Which hotel near the Louvre has a free room tonight?"


def with_hotels(cluster: Cluster, demo_agents_port: int) -> list[dict[str, Any]]:
    """The hotels Agent, and the travel Gateway listing it."""
    hotels = {
        **HOTELS,
        "spec": {**HOTELS["spec"], "endpoints": [f"http://127.0.0.1:{demo_agents_port}"]},
    }
    gateway = cluster.api.get("Gateway", "travel")
    assert gateway is not None
    gateway["spec"]["agents"].append({"name": "hotels"})
    return [hotels, gateway]


def test_an_agent_added_through_the_watch_becomes_routable(
    cluster: Cluster, demo_agents_port: int
) -> None:
    assert ask(cluster.gateway_port, HOTEL_QUESTION).headers["x-meshroute-agent"] != "hotels"
    for obj in with_hotels(cluster, demo_agents_port):
        cluster.api.apply(obj)

    eventually(
        lambda: (
            ask(cluster.gateway_port, HOTEL_QUESTION).headers.get("x-meshroute-agent") == "hotels"
        ),
        "hotels answers",
    )
    assert ask(cluster.gateway_port, HOTEL_QUESTION).headers["x-demo-agent"] == "hotels"
    eventually(lambda: cluster.accepted("Agent", "hotels") == "True", "hotels accepted")
    condition = cluster.condition("Gateway", "travel")
    assert condition is not None
    assert condition["observedGeneration"] == 2


def test_an_invalid_agent_is_refused_with_its_reason_and_changes_nothing(
    cluster: Cluster,
) -> None:
    eventually(lambda: cluster.accepted("Gateway", "travel") == "True", "travel accepted")
    before = cluster.serving_version()

    # What the CRD schema can say, the API server refuses before we see it...
    not_a_url = {
        "apiVersion": "meshroute.io/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "broken"},
        "spec": {"description": "Half configured.", "endpoints": ["ftp://nowhere"]},
    }
    with pytest.raises(Refused, match=r"spec\.endpoints\.0"):
        cluster.api.apply(not_a_url)
    # ...what it cannot, the control plane refuses: an Agent has endpoints or
    # variants, not both (a rule across fields).
    broken = {
        "apiVersion": "meshroute.io/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "broken"},
        "spec": {
            "description": "Half configured.",
            "endpoints": ["http://127.0.0.1:9"],
            "variants": [{"name": "a", "weight": 1, "endpoints": ["http://127.0.0.1:9"]}],
        },
    }
    cluster.api.apply(broken)
    eventually(lambda: cluster.accepted("Agent", "broken") == "False", "broken refused")
    condition = cluster.condition("Agent", "broken")
    assert condition is not None
    assert condition["reason"] == "Invalid"
    assert "not served" in condition["message"]
    assert condition["observedGeneration"] == 1
    cluster.control_plane.wait_for_line(r"Agent/broken generation 1 REJECTED \(Invalid\)")

    # Nothing else changed: the same snapshot serves, and requests route as before.
    assert cluster.serving_version() == before
    assert cluster.accepted("Gateway", "travel") == "True"
    response = ask(cluster.gateway_port, "Is flight LH 400 on time?")
    assert response.headers["x-meshroute-agent"] == "flights"


def test_a_bad_edit_keeps_the_accepted_generation_serving(cluster: Cluster) -> None:
    eventually(lambda: cluster.accepted("Agent", "flights") == "True", "flights accepted")
    before = cluster.serving_version()
    flights = cluster.api.get("Agent", "flights")
    assert flights is not None
    flights["spec"]["variants"] = [{"name": "a", "weight": 1, "endpoints": ["http://127.0.0.1:9"]}]
    cluster.api.apply(flights)  # endpoints and variants both: refused

    eventually(lambda: cluster.accepted("Agent", "flights") == "False", "edit refused")
    condition = cluster.condition("Agent", "flights")
    assert condition is not None
    assert condition["observedGeneration"] == 2
    assert condition["message"].endswith("still serving generation 1")
    assert cluster.serving_version() == before
    assert ask(cluster.gateway_port, "Is flight LH 400 on time?").status_code == 200


def test_changes_made_while_the_watch_was_down_are_not_lost(
    cluster: Cluster, demo_agents_port: int
) -> None:
    # The watch connections drop, the history is compacted meanwhile (410 on resume),
    # and the control plane must list again to see the new objects.
    cluster.api.while_disconnected(apply=with_hotels(cluster, demo_agents_port), compact=True)
    eventually(
        lambda: (
            ask(cluster.gateway_port, HOTEL_QUESTION).headers.get("x-meshroute-agent") == "hotels"
        ),
        "hotels answers after the relist",
    )
    cluster.control_plane.wait_for_line(r"too old resource version.*listing again")


def test_ready_only_once_the_cluster_has_been_read(tmp_path: Path) -> None:
    api = FakeKubeApi(namespace=NAMESPACE, admission=schema_errors)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(api.kubeconfig())
    api.token = "rotated"  # the control plane's token is refused, for now
    health_port = free_port()
    control_plane = ManagedProcess(
        "control-plane",
        meshroute_argv(
            "control-plane",
            "--source=kubernetes",
            f"--kubeconfig={kubeconfig}",
            "--address=127.0.0.1",
            f"--port={free_port()}",
            f"--health-port={health_port}",
        ),
    )
    try:
        control_plane.wait_for_line(r"agents in namespace meshroute-demo: 401 Unauthorized")
        health = f"http://127.0.0.1:{health_port}"
        assert httpx.get(f"{health}/healthz").status_code == 200
        not_ready = httpx.get(f"{health}/readyz")
        assert not_ready.status_code == 503
        assert not_ready.text == "no config served yet\n"

        api.token = json.loads(kubeconfig.read_text())["users"][0]["user"]["token"]
        control_plane.wait_for_line(r"serving config version 1 over ADS")
        assert httpx.get(f"{health}/readyz").text == "serving config version 1\n"
    finally:
        control_plane.stop()
        api.close()
