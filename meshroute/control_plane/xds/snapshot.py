"""What the control plane serves: versioned snapshots of every resource.

A snapshot has one version number for the whole system. Each resource type also
remembers the version at which its own content last changed, so a stream pushes a
type only when that type changed: adding an agent pushes clusters and routes, not
listeners.

Removals are make-before-break. A cluster the new config drops stays served
("retiring") until every Envoy has accepted routes that no longer name it; only
then does a further snapshot prune it. Otherwise Envoy, which applies clusters
before routes, would briefly route requests to a cluster it no longer has (503).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2, message

from meshroute.control_plane.translate.snapshot import Resources
from meshroute.control_plane.xds import type_urls


@dataclass(frozen=True)
class ResponseBody:
    """A State-of-the-World response without its nonce, built and serialized once for
    every stream that is sent it (streams add only their own nonce)."""

    message: discovery_pb2.DiscoveryResponse
    serialized: bytes


MAX_BODIES = 16
"""Bodies kept per type: one per distinct subscription (Envoys of one deployment ask
for the same names; an ext_proc server for its own), oldest dropped first."""


@dataclass(frozen=True)
class TypedResources:
    """All resources of one type in a snapshot, packed once for every stream."""

    version: str
    """The snapshot version at which this type's content last changed."""
    digest: str
    by_name: Mapping[str, any_pb2.Any]
    changed_at: Mapping[str, int] = field(default_factory=dict)
    """The snapshot version at which each resource's content last changed (a name
    missing counts as changed), so a stream can send only what changed since the
    version its client accepted, where the protocol allows it (sotw.py)."""
    _bodies: dict[tuple[str, frozenset[str] | None, str], ResponseBody] = field(
        default_factory=dict, compare=False, repr=False
    )
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    def response_body(
        self, type_url: str, names: frozenset[str] | None, control_plane_id: str
    ) -> ResponseBody:
        """The response holding `names` (None: all of them), shared by every stream
        that asks the same: with 100 streams and thousands of clusters, building and
        serializing a response per stream was most of a push (~9 ms a stream)."""
        key = (type_url, names, control_plane_id)
        with self._lock:
            body = self._bodies.get(key)
        if body is not None:
            return body
        response = discovery_pb2.DiscoveryResponse(
            version_info=self.version,
            type_url=type_url,
            control_plane=base_pb2.ControlPlane(identifier=control_plane_id),
        )
        chosen = sorted(self.by_name) if names is None else sorted(names & self.by_name.keys())
        response.resources.extend(self.by_name[name] for name in chosen)
        body = ResponseBody(response, response.SerializeToString())
        with self._lock:
            while len(self._bodies) >= MAX_BODIES:
                del self._bodies[next(iter(self._bodies))]
            self._bodies[key] = body
        return body


@dataclass(frozen=True)
class Snapshot:
    version: str
    types: Mapping[str, TypedResources]

    def of_type(self, type_url: str) -> TypedResources | None:
        return self.types.get(type_url)


def _packed(resource: message.Message) -> any_pb2.Any:
    entry = any_pb2.Any()
    entry.Pack(resource, deterministic=True)  # equal content, equal bytes, equal digest
    return entry


def _by_type(resources: Resources) -> dict[str, dict[str, any_pb2.Any]]:
    return {
        type_urls.CLUSTER: {item.name: _packed(item) for item in resources.clusters},
        type_urls.LISTENER: {item.name: _packed(item) for item in resources.listeners},
        type_urls.ROUTE: {item.name: _packed(item) for item in resources.routes},
        type_urls.ROUTING_TABLE: {item.gateway: _packed(item) for item in resources.routing_tables},
        type_urls.SECRET: {item.name: _packed(item) for item in resources.secrets},
    }


def _digest(by_name: Mapping[str, any_pb2.Any]) -> str:
    hasher = hashlib.sha256()
    for name in sorted(by_name):
        hasher.update(name.encode())
        hasher.update(b"\0")
        hasher.update(by_name[name].value)
        hasher.update(b"\0")
    return hasher.hexdigest()


class ClientProgress(Protocol):
    """What a stream tells the cache about its client: the versions it accepted."""

    def acked_version(self, type_url: str) -> str | None: ...

    def subscribes(self, type_url: str) -> bool: ...


class SnapshotCache:
    """The current snapshot, and a way for streams to wait for the next one."""

    def __init__(self) -> None:
        self._snapshot: Snapshot | None = None
        self._counter = 0
        self._watchers: set[asyncio.Event] = set()
        self._resources: Resources | None = None
        self._retiring: dict[str, any_pb2.Any] = {}
        """Clusters the config dropped that some Envoy may still route to."""

    @property
    def retiring(self) -> frozenset[str]:
        return frozenset(self._retiring)

    @property
    def served_version(self) -> str | None:
        """The version being served; None before the first snapshot."""
        return self._snapshot.version if self._snapshot is not None else None

    @property
    def current(self) -> Snapshot:
        if self._snapshot is None:
            raise RuntimeError("no snapshot has been set yet")
        return self._snapshot

    def set_resources(self, resources: Resources) -> Snapshot:
        """Install `resources`; a new version only if some type's content changed."""
        self._resources = resources
        by_type = _by_type(resources)
        clusters = by_type[type_urls.CLUSTER]
        if self._snapshot is not None:
            served = self._snapshot.types[type_urls.CLUSTER].by_name
            self._retiring.update(
                {name: packed for name, packed in served.items() if name not in clusters}
            )
        for name in list(self._retiring):
            if name in clusters:
                del self._retiring[name]  # back in the config: no longer retiring
        clusters.update(self._retiring)
        return self._install(by_type)

    def progress(self, clients: Iterable[ClientProgress]) -> Snapshot | None:
        """Prune retiring clusters once every client accepted the routes and listeners
        that stopped naming them; returns the new snapshot if there is one."""
        if not self._retiring or self._snapshot is None or self._resources is None:
            return None
        needed = [type_urls.ROUTE, type_urls.LISTENER]
        for client in clients:
            for type_url in needed:
                if not client.subscribes(type_url):
                    continue
                current = self._snapshot.types[type_url].version
                acked = client.acked_version(type_url)
                if acked is None or int(acked) < int(current):
                    return None
        self._retiring.clear()
        return self._install(_by_type(self._resources))

    def _install(self, by_type: dict[str, dict[str, any_pb2.Any]]) -> Snapshot:
        previous = self._snapshot
        candidate = {type_url: (by_name, _digest(by_name)) for type_url, by_name in by_type.items()}
        changed = previous is None or any(
            previous.types[type_url].digest != digest for type_url, (_, digest) in candidate.items()
        )
        if not changed:
            assert previous is not None
            return previous
        self._counter += 1
        version = str(self._counter)
        types: dict[str, TypedResources] = {}
        for type_url, (by_name, digest) in candidate.items():
            old = previous.types[type_url] if previous else None
            if old is not None and old.digest == digest:
                types[type_url] = old
            else:
                changed_at = {
                    name: old.changed_at.get(name, self._counter)
                    if old is not None
                    and name in old.by_name
                    and old.by_name[name].value == packed.value
                    else self._counter
                    for name, packed in by_name.items()
                }
                types[type_url] = TypedResources(version, digest, by_name, changed_at)
        self._snapshot = Snapshot(version=version, types=types)
        for watcher in self._watchers:
            watcher.set()
        return self._snapshot

    def watch(self) -> asyncio.Event:
        """An event set whenever a new snapshot is installed; the caller clears it."""
        event = asyncio.Event()
        self._watchers.add(event)
        return event

    def unwatch(self, event: asyncio.Event) -> None:
        self._watchers.discard(event)
