"""What the control plane counts, in Prometheus terms, and who is connected to it.

Served on the health port (`/metrics`, `/status`) so operators see, per resource type
and per node, what was pushed, accepted and refused, and whether config changes
were taken. The registry is this object's own, not prometheus_client's global one,
so several control planes in one process (tests) do not mix their numbers.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from meshroute.api import contract
from meshroute.control_plane.xds import type_urls

ReloadOutcome = Literal["accepted", "rejected", "unchanged", "partial"]
"""`partial`: the Kubernetes source served some objects and refused others."""

CLIENT_KINDS = {"envoy": "envoy", contract.EXT_PROC_USER_AGENT: "ext-proc"}
"""A Node's user_agent_name -> the kind `meshroute status` shows."""


class ClientState(Protocol):
    """What an ADS stream's per-type state says (SotW and incremental alike)."""

    acked_version: str | None
    nacked_version: str | None
    nack_detail: str | None


@dataclass
class ConnectedClient:
    """Who is at the other end of a stream, learnt from its first request."""

    kind: str
    protocol: str
    connected_at: float


class ControlPlaneMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.pushes = Counter(
            "meshroute_xds_pushes",
            "xDS responses sent, by resource type and node.",
            ["type", "node"],
            registry=self.registry,
        )
        self.acks = Counter(
            "meshroute_xds_acks",
            "xDS responses a client accepted, by resource type and node.",
            ["type", "node"],
            registry=self.registry,
        )
        self.nacks = Counter(
            "meshroute_xds_nacks",
            "xDS responses a client refused (NACK), by resource type and node.",
            ["type", "node"],
            registry=self.registry,
        )
        self.clients = Gauge(
            "meshroute_xds_clients",
            "Connected ADS streams, by client kind.",
            ["kind"],
            registry=self.registry,
        )
        self.reloads = Counter(
            "meshroute_config_reloads",
            "Config changes the control plane checked, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.version = Gauge(
            "meshroute_config_version",
            "The snapshot version being served (0 before the first).",
            registry=self.registry,
        )
        self.rejected_objects = Gauge(
            "meshroute_config_rejected_objects",
            "Objects not served as written (Kubernetes source: Accepted=False).",
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def served(self, version: str) -> None:
        self.version.set(int(version))

    def reloaded(self, outcome: ReloadOutcome) -> None:
        self.reloads.labels(outcome).inc()

    def pushed(self, type_url: str, node: str | None) -> None:
        self.pushes.labels(type_urls.short_name(type_url), node or "").inc()

    def replied(
        self,
        node: str | None,
        before: dict[str, tuple[str | None, str | None]],
        after: Iterable[tuple[str, ClientState]],
    ) -> None:
        """Count the ACKs and NACKs a client's request carried: per type, the
        (acked, nacked) versions before it and the stream's state after it."""
        for type_url, state in after:
            acked, nacked = before.get(type_url, (None, None))
            name = type_urls.short_name(type_url)
            if state.nacked_version != nacked and state.nacked_version is not None:
                self.nacks.labels(name, node or "").inc()
            elif state.acked_version != acked and state.acked_version is not None:
                self.acks.labels(name, node or "").inc()


def replies_before(types: Any) -> dict[str, tuple[str | None, str | None]]:
    """The (acked, nacked) versions per type, to compare with after a request."""
    return {
        type_url: (state.acked_version, state.nacked_version) for type_url, state in types.items()
    }


def client_status(node: str | None, client: ConnectedClient, types: Any) -> dict[str, Any]:
    """One client as `GET /status` shows it."""
    return {
        "node": node,
        "kind": client.kind,
        "protocol": client.protocol,
        "connected_seconds": round(time.monotonic() - client.connected_at, 1),
        "types": [
            {
                "type": type_urls.short_name(type_url),
                "acked": state.acked_version,
                "nacked": state.nacked_version,
                "error": state.nack_detail,
            }
            for type_url, state in sorted(types.items())
        ],
    }
