"""What the control plane serves: versioned snapshots of every resource.

A snapshot has one version number for the whole system. Each resource type also
remembers the version at which its own content last changed, so a stream pushes a
type only when that type changed: adding an agent pushes clusters and routes, not
listeners.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf import any_pb2, message

from meshroute.control_plane.translate.snapshot import Resources
from meshroute.control_plane.xds import type_urls


@dataclass(frozen=True)
class TypedResources:
    """All resources of one type in a snapshot, packed once for every stream."""

    version: str
    """The snapshot version at which this type's content last changed."""
    digest: str
    by_name: Mapping[str, any_pb2.Any]


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
    }


def _digest(by_name: Mapping[str, any_pb2.Any]) -> str:
    hasher = hashlib.sha256()
    for name in sorted(by_name):
        hasher.update(name.encode())
        hasher.update(b"\0")
        hasher.update(by_name[name].value)
        hasher.update(b"\0")
    return hasher.hexdigest()


class SnapshotCache:
    """The current snapshot, and a way for streams to wait for the next one."""

    def __init__(self) -> None:
        self._snapshot: Snapshot | None = None
        self._counter = 0
        self._watchers: set[asyncio.Event] = set()

    @property
    def current(self) -> Snapshot:
        if self._snapshot is None:
            raise RuntimeError("no snapshot has been set yet")
        return self._snapshot

    def set_resources(self, resources: Resources) -> Snapshot:
        """Install `resources`; a new version only if some type's content changed."""
        previous = self._snapshot
        candidate = {
            type_url: (by_name, _digest(by_name))
            for type_url, by_name in _by_type(resources).items()
        }
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
                types[type_url] = TypedResources(version=version, digest=digest, by_name=by_name)
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
