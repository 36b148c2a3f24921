"""Envoy's validation as the last gate: only what Envoy has not accepted is asked about,
and what Envoy would refuse is still refused. These run the real Envoy binary."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme
from envoy.config.listener.v3 import listener_pb2

from meshroute.control_plane import envoy_gate
from meshroute.control_plane.config import load_config
from meshroute.control_plane.envoy_gate import EnvoyGate, envoy_refusal
from meshroute.control_plane.translate.snapshot import Resources, translate
from meshroute.envoy_binary import EnvoyRejected
from tests.support.configs import QUICKSTART, agent_yaml, documents, gateway_yaml


def quickstart() -> Resources:
    return translate(load_config([QUICKSTART / "agents.yaml", QUICKSTART / "gateway.yaml"]))


def accepted_gate(resources: Resources) -> EnvoyGate:
    gate = EnvoyGate()
    first = gate.check(resources)
    assert first.ran_envoy
    assert first.unchanged == 0
    return gate


def test_only_what_changed_is_asked_and_nothing_when_nothing_changed() -> None:
    gate = accepted_gate(quickstart())

    again = gate.check(quickstart())
    assert not again.ran_envoy
    assert again.checked_clusters == again.checked_listeners == 0

    changed = quickstart()
    changed.clusters[0].connect_timeout.seconds = 9
    report = gate.check(changed)
    assert report.ran_envoy
    assert (report.checked_clusters, report.checked_listeners) == (1, 0)
    assert report.unchanged == len(changed.clusters) + len(changed.listeners) - 1


def test_a_resource_envoy_refuses_is_refused_among_accepted_ones() -> None:
    gate = accepted_gate(quickstart())
    bad = quickstart()
    bad.clusters[1].connect_timeout.seconds = -5
    with pytest.raises(EnvoyRejected, match="Invalid duration"):
        gate.check(bad)
    assert envoy_refusal(bad, gate) is not None
    # What was accepted before is still known to be good.
    assert not gate.check(quickstart()).ran_envoy


def test_a_new_listener_on_a_port_an_unchanged_one_holds_is_refused() -> None:
    resources = quickstart()
    gate = accepted_gate(resources)
    [gateway] = [listener for listener in resources.listeners if listener.name == "gateway_travel"]
    twin = listener_pb2.Listener()
    twin.CopyFrom(gateway)
    twin.name = "gateway_twin"
    resources.listeners.append(twin)
    with pytest.raises(EnvoyRejected, match="'gateway_twin' has duplicate address"):
        gate.check(resources)


def test_a_route_to_a_cluster_that_is_gone_is_refused() -> None:
    resources = quickstart()
    gate = accepted_gate(resources)
    kept = [cluster for cluster in resources.clusters if cluster.name != "agent_currency"]
    del resources.clusters[:]
    resources.clusters.extend(kept)
    with pytest.raises(EnvoyRejected, match="unknown cluster 'agent_currency'"):
        gate.check(resources)


def test_a_ca_file_rewritten_in_place_is_checked_again(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    config_file = tmp_path / "config.yaml"
    agent = agent_yaml("secure", "Behind TLS", "https://secure.example.com")
    agent = agent.replace("  path:", f"  tls: {{caFile: {ca_file}}}\n  path:")
    config_file.write_text(documents(agent, gateway_yaml("g", 8001, ["secure"], "secure")))
    resources = translate(load_config([config_file]))
    gate = accepted_gate(resources)
    assert not gate.check(resources).ran_envoy

    ca_file.write_text("not a certificate\n")  # same name, same resources, new content
    with pytest.raises(EnvoyRejected, match="CA"):
        gate.check(resources)


def test_a_partial_check_never_refuses_what_envoy_accepts_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = accepted_gate(quickstart())

    def wrong(plan: object) -> None:
        raise EnvoyRejected("a dependency the partial config missed")

    monkeypatch.setattr(envoy_gate, "_check_partially", wrong)
    changed = quickstart()
    changed.clusters[0].connect_timeout.seconds = 9
    assert gate.check(changed).ran_envoy  # Envoy, given everything, accepts it
    assert not gate.check(changed).ran_envoy
