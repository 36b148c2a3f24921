"""State-of-the-World xDS on one ADS stream: what to send, when, and what ACKs mean.

The protocol's subtleties, as this module handles them:

* Every response carries a fresh nonce. A request whose `response_nonce` is not the
  nonce of the last response of its type is stale (the client had not yet seen our
  latest response when it wrote it) and is ignored.
* A request carrying the latest nonce and no `error_detail` is an ACK of that
  response's version. With `error_detail` it is a NACK: the client keeps its last
  accepted version (the request's `version_info`) and tells us why.
* After a NACK we do not send the rejected version again. Doing so just earns the
  same NACK in a tight loop; the next *new* snapshot gets a fresh chance.
* A type is pushed only when its content changed (its version moved), when the
  client subscribes to it for the first time on this stream, or when the set of
  names it asks for changes.
* Clusters and listeners (and our routing tables) are wildcard types: an empty name
  list means "all". Routes are asked for by name.
* A response to clusters or listeners holds all of them; one to routes holds only
  the route configs that changed since the version the client last accepted (the
  protocol allows it for every other type, and Envoy updates only the RDS
  subscriptions a response names), so an edit to one gateway does not send every
  gateway's routes to every Envoy.
* Streams sent the same resources share one response body, built and serialized
  once (`TypedResources.response_body`); each adds only its nonce.

Pure logic, no I/O: `server.py` feeds it requests and snapshots and writes out what
it returns, which keeps it testable without gRPC.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import cast

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from google.protobuf.internal.containers import RepeatedCompositeFieldContainer

from meshroute.control_plane.xds import type_urls
from meshroute.control_plane.xds.snapshot import ResponseBody, Snapshot, TypedResources

log = logging.getLogger("meshroute.control_plane.xds")


@dataclass(frozen=True)
class SotwResponse:
    """One response on one stream: a body shared by every stream sent the same
    resources, and this stream's nonce. Reads like a DiscoveryResponse; on the wire it
    is the body's bytes followed by the nonce field (protobuf merges concatenated
    messages), so no stream rebuilds or re-serializes the resources."""

    body: ResponseBody
    nonce: str

    @property
    def version_info(self) -> str:
        return str(self.body.message.version_info)

    @property
    def type_url(self) -> str:
        return str(self.body.message.type_url)

    @property
    def resources(self) -> RepeatedCompositeFieldContainer[any_pb2.Any]:
        return cast(RepeatedCompositeFieldContainer[any_pb2.Any], self.body.message.resources)

    @property
    def control_plane(self) -> base_pb2.ControlPlane:
        return self.body.message.control_plane

    def SerializeToString(self) -> bytes:
        """Named as a message's, so gRPC's serializer takes either."""
        nonce: bytes = discovery_pb2.DiscoveryResponse(nonce=self.nonce).SerializeToString()
        return self.body.serialized + nonce

    def message(self) -> discovery_pb2.DiscoveryResponse:
        """The whole response as a message (for tests and logs; not the hot path)."""
        return discovery_pb2.DiscoveryResponse.FromString(self.SerializeToString())


class ProtocolError(Exception):
    """The client broke the protocol; the stream should end with INVALID_ARGUMENT."""


@dataclass
class TypeState:
    """One resource type on one stream."""

    names: frozenset[str] = frozenset()
    """Names the client asks for (empty = all, for wildcard types)."""
    sent_version: str | None = None
    sent_nonce: str | None = None
    sent_names: frozenset[str] | None = None
    acked_version: str | None = None
    nacked_version: str | None = None
    nack_detail: str | None = None


@dataclass
class SotwStream:
    """The server's side of one ADS stream."""

    stream_id: int
    control_plane_id: str = "meshroute"
    node_id: str | None = None
    types: dict[str, TypeState] = field(default_factory=dict)
    _nonce: int = 0

    def on_request(
        self, request: discovery_pb2.DiscoveryRequest, snapshot: Snapshot
    ) -> list[SotwResponse]:
        if self.node_id is None:
            if not request.node.id:
                raise ProtocolError("the first request on a stream must name its node")
            self.node_id = request.node.id
            log.info("xDS stream %d opened by node %s", self.stream_id, self.node_id)
        type_url = request.type_url
        if not type_url:
            raise ProtocolError("a State-of-the-World ADS request must carry a type_url")
        state = self.types.setdefault(type_url, TypeState())
        if request.response_nonce:
            if request.response_nonce != state.sent_nonce:
                return []  # stale: a newer response is already on its way
            if request.HasField("error_detail"):
                self._on_nack(type_url, state, request)
                state.names = frozenset(request.resource_names)
                return []
            state.acked_version = request.version_info
            log.debug(
                "node %s accepted %s version %s",
                self.node_id,
                type_urls.short_name(type_url),
                request.version_info,
            )
        state.names = frozenset(request.resource_names)
        return self._respond_if_needed(type_url, state, snapshot)

    def acked_version(self, type_url: str) -> str | None:
        state = self.types.get(type_url)
        return state.acked_version if state else None

    def subscribes(self, type_url: str) -> bool:
        return type_url in self.types

    def on_snapshot(self, snapshot: Snapshot) -> list[SotwResponse]:
        responses: list[SotwResponse] = []
        ordered: list[str] = [t for t in type_urls.PUSH_ORDER if t in self.types]
        ordered += [t for t in self.types if t not in type_urls.PUSH_ORDER]
        for type_url in ordered:
            responses += self._respond_if_needed(type_url, self.types[type_url], snapshot)
        return responses

    def _on_nack(
        self, type_url: str, state: TypeState, request: discovery_pb2.DiscoveryRequest
    ) -> None:
        state.nacked_version = state.sent_version
        state.nack_detail = " ".join(request.error_detail.message.split())  # one log line
        log.warning(
            "node %s REJECTED %s version %s (keeps version %s): %s",
            self.node_id,
            type_urls.short_name(type_url),
            state.sent_version,
            request.version_info or "none",
            state.nack_detail,
        )

    def _respond_if_needed(
        self, type_url: str, state: TypeState, snapshot: Snapshot
    ) -> list[SotwResponse]:
        typed = snapshot.of_type(type_url)
        version = typed.version if typed else snapshot.version
        first_time = state.sent_nonce is None
        if not first_time and state.sent_version == version and state.sent_names == state.names:
            return []  # nothing new; this also keeps a NACKed version from being re-sent
        if typed is None:
            typed = TypedResources(version=version, digest="", by_name={})
            if first_time:
                log.info(
                    "node %s asked for %s, which this control plane does not serve",
                    self.node_id,
                    type_url,
                )
        wildcard = not state.names and type_url in type_urls.WILDCARD_TYPES
        names = None if wildcard else state.names
        if not first_time and state.sent_names == state.names:
            names = _changed_since_accepted(type_url, state, typed) or names
        body = typed.response_body(type_url, names, self.control_plane_id)
        response = SotwResponse(body, self._next_nonce())
        state.sent_version = version
        state.sent_nonce = response.nonce
        state.sent_names = state.names
        return [response]

    def _next_nonce(self) -> str:
        self._nonce += 1
        return str(self._nonce)


def _changed_since_accepted(
    type_url: str, state: TypeState, typed: TypedResources
) -> frozenset[str] | None:
    """For a type a response may carry only some of, the names asked for whose content
    changed since the version the client last accepted (not last sent: a NACKed
    response's changes are sent again); None: send them all."""
    if type_url not in type_urls.PARTIAL_UPDATE_TYPES or state.acked_version is None:
        return None
    try:
        accepted = int(state.acked_version)
    except ValueError:
        return None
    changed = frozenset(
        name
        for name in state.names
        if name in typed.by_name and typed.changed_at.get(name, accepted + 1) > accepted
    )
    return changed or None
