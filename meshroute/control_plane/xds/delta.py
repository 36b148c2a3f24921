"""Incremental (Delta) xDS on one ADS stream: which resources to send, and what replies mean.

Where State-of-the-World resends a whole type, an incremental stream tracks, per
resource, the version the client holds, and sends only the resources that differ
plus the names that went away. The subtleties, as this module handles them:

* A resource's version is a short hash of its packed bytes, so equal content has
  an equal version in every stream and after every restart of the control plane.
* Subscriptions are deltas. Clusters, listeners and routing tables are wildcard
  types: a first request that names nothing (in either list) means "everything",
  and stays so when names are added later; "*" asks for everything explicitly and
  unsubscribing "*" ends it. Routes are asked for by name.
* A name the client subscribes to is sent even if the client already has its
  version (the client may have dropped it); a subscribed name we do not serve is
  answered in `removed_resources`, so the client need not wait for a timeout.
  Unsubscribing needs no answer, except when a wildcard still covers the name:
  then the client cannot tell whether to keep it, so it is sent again (or removed).
* On a new stream the first request may carry `initial_resource_versions`: what
  the client kept from the previous stream. Those resources are not sent again
  unless they changed, and those we no longer serve are removed. Later requests'
  initial versions mean nothing.
* Responses go out without waiting for ACKs, so several may be in flight. A reply
  names the response it answers by nonce; a nonce we did not send, or one already
  answered, is stale and its ACK or NACK is ignored. Its subscription changes are
  not: the protocol says they count whatever the nonce.
* An ACK records the snapshot version of the type the client now holds, but only
  once no newer response is in flight and no resource it was sent stands rejected:
  the cache prunes retiring clusters on that record (see `snapshot.py`), and a
  client holding a rejected route still routes by the old one.
* A NACK is logged (its detail on one line) and recorded. The rejected content is
  not sent again (that only earns the same NACK); a later change to it is.
* The first request for a type is always answered, even with nothing in it: Envoy
  waits for a first response before it finishes starting, and its ACK is what
  tells the cache this client is up to date. After that a type is answered only
  when something the client subscribes to changed, in `type_urls.PUSH_ORDER`.
* A snapshot that moves a type's version without touching anything this client
  subscribes to needs no response; the client already holds that version's content
  and is recorded as having it.

Pure logic, no I/O, like `sotw.py`: `server.py` feeds it requests and snapshots.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from meshroute.control_plane.xds import type_urls
from meshroute.control_plane.xds.snapshot import Snapshot, TypedResources
from meshroute.control_plane.xds.sotw import ProtocolError

log = logging.getLogger("meshroute.control_plane.xds")

WILDCARD = "*"


def resource_version(packed: any_pb2.Any) -> str:
    """A short, content-derived version: equal bytes, equal version, on any stream."""
    return hashlib.sha256(packed.SerializeToString(deterministic=True)).hexdigest()[:16]


_RECENT_VERSIONS: dict[int, tuple[TypedResources, dict[str, str]]] = {}
_RECENT_LIMIT = 16


def resource_versions(typed: TypedResources | None) -> Mapping[str, str]:
    """The version of every resource in `typed`, hashed once for all streams.

    A snapshot reuses a type's TypedResources until that type changes, so the few
    most recent ones are all the streams ask about; the entry keeps its key alive,
    so an id is never reused while it is remembered.
    """
    if typed is None:
        return {}
    entry = _RECENT_VERSIONS.get(id(typed))
    if entry is not None and entry[0] is typed:
        return entry[1]
    versions = {name: resource_version(packed) for name, packed in typed.by_name.items()}
    if len(_RECENT_VERSIONS) >= _RECENT_LIMIT:
        _RECENT_VERSIONS.pop(next(iter(_RECENT_VERSIONS)), None)  # the oldest
    _RECENT_VERSIONS[id(typed)] = (typed, versions)
    return versions


def _push_rank(type_url: str) -> int:
    """Where a type goes in `type_urls.PUSH_ORDER` (types not in it go last)."""
    order = type_urls.PUSH_ORDER
    return order.index(type_url) if type_url in order else len(order)


@dataclass(frozen=True)
class SentResponse:
    """What one response in flight carried, to interpret its ACK or NACK."""

    version: str
    updated: frozenset[str]
    removed: frozenset[str]


@dataclass
class DeltaTypeState:
    """One resource type on one incremental stream."""

    wildcard: bool = False
    names: set[str] = field(default_factory=set)
    """Names subscribed explicitly (besides any wildcard)."""
    known: dict[str, str] = field(default_factory=dict)
    """The version of each resource the client holds, as far as we know: what it
    declared on reconnecting, else what we last sent it (even if it rejected that)."""
    resend: set[str] = field(default_factory=set)
    """Names to answer in the next response whatever the client holds."""
    in_flight: dict[str, SentResponse] = field(default_factory=dict)
    """Responses not yet answered, by nonce, oldest first."""
    rejected: set[str] = field(default_factory=set)
    """Names whose latest content the client rejected and so does not hold."""
    answered: bool = False
    synced_version: str | None = None
    """The snapshot version of this type that what we sent corresponds to."""
    acked_version: str | None = None
    nacked_version: str | None = None
    nack_detail: str | None = None


@dataclass
class DeltaStream:
    """The server's side of one incremental ADS stream."""

    stream_id: int
    control_plane_id: str = "meshroute"
    node_id: str | None = None
    types: dict[str, DeltaTypeState] = field(default_factory=dict)
    _nonce: int = 0

    def on_request(
        self, request: discovery_pb2.DeltaDiscoveryRequest, snapshot: Snapshot
    ) -> list[discovery_pb2.DeltaDiscoveryResponse]:
        if self.node_id is None:
            if not request.node.id:
                raise ProtocolError("the first request on a stream must name its node")
            self.node_id = request.node.id
            log.info("incremental xDS stream %d opened by node %s", self.stream_id, self.node_id)
        type_url = request.type_url
        if not type_url:
            raise ProtocolError("an incremental ADS request must carry a type_url")
        subscribe = list(request.resource_names_subscribe)
        unsubscribe = list(request.resource_names_unsubscribe)
        state = self.types.get(type_url)
        first = state is None
        if state is None:
            state = self.types[type_url] = DeltaTypeState(
                known=dict(request.initial_resource_versions),
                wildcard=type_url in type_urls.WILDCARD_TYPES and not subscribe and not unsubscribe,
            )
        if request.response_nonce:
            self._on_reply(type_url, state, request)
        for name in subscribe:
            if name == WILDCARD:
                state.wildcard = True
            else:
                state.names.add(name)
                if not (first and name in state.known):  # kept across a reconnect: no resend
                    state.resend.add(name)
        self._unsubscribe(state, unsubscribe)
        return self._respond_if_needed(type_url, state, snapshot)

    def on_snapshot(self, snapshot: Snapshot) -> list[discovery_pb2.DeltaDiscoveryResponse]:
        return [
            response
            for type_url in sorted(self.types, key=_push_rank)  # stable: others keep their order
            for response in self._respond_if_needed(type_url, self.types[type_url], snapshot)
        ]

    def acked_version(self, type_url: str) -> str | None:
        state = self.types.get(type_url)
        return state.acked_version if state else None

    def subscribes(self, type_url: str) -> bool:
        state = self.types.get(type_url)
        return state is not None and (state.wildcard or bool(state.names))

    def _on_reply(
        self, type_url: str, state: DeltaTypeState, request: discovery_pb2.DeltaDiscoveryRequest
    ) -> None:
        nonce = request.response_nonce
        sent = state.in_flight.get(nonce)
        if sent is None:
            log.debug(
                "node %s answered %s nonce %s, which is not in flight: ignored",
                self.node_id,
                type_urls.short_name(type_url),
                nonce,
            )
            return
        for answered in list(state.in_flight):  # this one, and any older never answered
            del state.in_flight[answered]
            if answered == nonce:
                break
        if request.HasField("error_detail"):
            self._on_nack(type_url, state, sent, request.error_detail.message)
            return
        state.rejected -= sent.updated | sent.removed
        if state.in_flight:
            return  # superseded: the newest response's ACK will say where the client is
        self._record_in_sync(type_url, state)

    def _on_nack(
        self, type_url: str, state: DeltaTypeState, sent: SentResponse, detail: str
    ) -> None:
        state.rejected |= sent.updated
        state.nacked_version = sent.version
        state.nack_detail = " ".join(detail.split())  # one log line
        log.warning(
            "node %s REJECTED %s version %s (%s; keeps what it had): %s",
            self.node_id,
            type_urls.short_name(type_url),
            sent.version,
            ", ".join(sorted(sent.updated)) or "removals only",
            state.nack_detail,
        )

    def _record_in_sync(self, type_url: str, state: DeltaTypeState) -> None:
        """The client holds everything of `synced_version` it subscribes to, unless a
        resource stands rejected (then it holds an older copy of that one)."""
        if state.rejected or state.synced_version == state.acked_version:
            return
        state.acked_version = state.synced_version
        log.debug(
            "node %s holds %s version %s",
            self.node_id,
            type_urls.short_name(type_url),
            state.acked_version,
        )

    @staticmethod
    def _unsubscribe(state: DeltaTypeState, names: Iterable[str]) -> None:
        for name in names:
            if name == WILDCARD:
                state.wildcard = False
                # The client drops what only the wildcard gave it; re-subscribing sends it again.
                state.known = {n: v for n, v in state.known.items() if n in state.names}
                state.rejected &= state.names
                continue
            state.names.discard(name)
            if state.wildcard:
                state.resend.add(name)  # still ours or not? The client cannot tell alone.
            else:
                state.resend.discard(name)
                state.known.pop(name, None)
                state.rejected.discard(name)

    def _respond_if_needed(
        self, type_url: str, state: DeltaTypeState, snapshot: Snapshot
    ) -> list[discovery_pb2.DeltaDiscoveryResponse]:
        typed = snapshot.of_type(type_url)
        version = typed.version if typed else snapshot.version
        served: Mapping[str, any_pb2.Any] = typed.by_name if typed else {}
        versions = resource_versions(typed)
        wanted = (state.names | set(served)) if state.wildcard else state.names
        updated = sorted(
            name
            for name in wanted
            if name in served and (name in state.resend or state.known.get(name) != versions[name])
        )
        removed = sorted(name for name in state.known.keys() | state.resend if name not in served)
        state.resend.clear()
        state.synced_version = version
        first_time = not state.answered
        if not (updated or removed or first_time):
            if not state.in_flight:
                self._record_in_sync(type_url, state)
            return []
        if typed is None and first_time:
            log.info(
                "node %s asked for %s, which this control plane does not serve",
                self.node_id,
                type_url,
            )
        self._nonce += 1
        response = discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=version,
            type_url=type_url,
            nonce=str(self._nonce),
            control_plane=base_pb2.ControlPlane(identifier=self.control_plane_id),
            removed_resources=removed,
        )
        for name in updated:
            response.resources.add(name=name, version=versions[name]).resource.CopyFrom(
                served[name]
            )
            state.known[name] = versions[name]
        for name in removed:
            state.known.pop(name, None)
        state.answered = True
        state.in_flight[response.nonce] = SentResponse(
            version=version, updated=frozenset(updated), removed=frozenset(removed)
        )
        return [response]
