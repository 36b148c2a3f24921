"""A small State-of-the-World ADS client that subscribes the way Envoy does, for benches.

Envoy asks for clusters and listeners (wildcard), reads the RDS route-config names
out of the listeners' HTTP connection managers, asks for those routes by name, and
ACKs every response with its version and nonce. `EnvoyLikeStream` does the same and
records, per type, the version it holds, when that version arrived and how large the
response was: enough to time a config change reaching many "Envoys" at once without
starting that many Envoys (each costs ~50 MB and a core at startup).

It is deliberately lean: responses are not unpacked beyond the listeners' route names,
so on a 2-core machine the clients stay cheap next to the control plane they measure.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from meshroute.control_plane.xds import type_urls

# Responses can be several MB with thousands of clusters; Envoy takes them whole, and
# so must we (gRPC's default receive limit is 4 MB).
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", -1)]


@dataclass(frozen=True)
class Received:
    """The latest response of one type on one stream."""

    version: str
    at: float
    """time.perf_counter() when it arrived."""
    size: int
    """Serialized bytes of the whole DiscoveryResponse."""
    resources: int


@dataclass
class EnvoyLikeStream:
    """One ADS stream with Envoy's subscriptions; run() until cancelled."""

    node_id: str
    target: str
    latest: dict[str, Received] = field(default_factory=dict)
    route_names: tuple[str, ...] = ()
    errors: list[str] = field(default_factory=list)
    _outbox: asyncio.Queue[discovery_pb2.DiscoveryRequest | None] = field(
        default_factory=asyncio.Queue
    )
    _nonces: dict[str, str] = field(default_factory=dict)
    _listener_bytes: tuple[bytes, ...] = ()

    def holds(self, type_url: str) -> str | None:
        received = self.latest.get(type_url)
        return received.version if received else None

    @property
    def synced(self) -> bool:
        """Has clusters, listeners, and the routes its listeners name."""
        routes = self.latest.get(type_urls.ROUTE)
        return (
            type_urls.CLUSTER in self.latest
            and type_urls.LISTENER in self.latest
            and routes is not None
            and routes.resources == len(self.route_names)
        )

    async def run(self) -> None:
        async with grpc.aio.insecure_channel(self.target, options=CHANNEL_OPTIONS) as channel:
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
            self._send(type_urls.CLUSTER, ())
            self._send(type_urls.LISTENER, ())
            call = stub.StreamAggregatedResources(self._requests())
            try:
                async for response in call:
                    self._on_response(response)
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.CANCELLED:
                    self.errors.append(f"{self.node_id}: {error.code().name}: {error.details()}")
            finally:
                self._outbox.put_nowait(None)
                call.cancel()

    def _on_response(self, response: discovery_pb2.DiscoveryResponse) -> None:
        arrived = time.perf_counter()
        type_url = response.type_url
        self.latest[type_url] = Received(
            version=response.version_info,
            at=arrived,
            size=response.ByteSize(),
            resources=len(response.resources),
        )
        self._nonces[type_url] = response.nonce
        names = self.route_names if type_url == type_urls.ROUTE else ()
        self._send(type_url, names, response.version_info, response.nonce)  # ACK
        if type_url == type_urls.LISTENER:
            self._follow_listeners(response)

    def _follow_listeners(self, response: discovery_pb2.DiscoveryResponse) -> None:
        """Subscribe to the routes the listeners name, when that set changes."""
        listener_bytes = tuple(resource.value for resource in response.resources)
        if listener_bytes == self._listener_bytes:
            return
        self._listener_bytes = listener_bytes
        names = sorted({name for packed in listener_bytes for name in _rds_names(packed)})
        if tuple(names) != self.route_names:
            self.route_names = tuple(names)
            held = self.latest.get(type_urls.ROUTE)
            self._send(
                type_urls.ROUTE,
                self.route_names,
                held.version if held else "",
                self._nonces.get(type_urls.ROUTE, ""),
            )

    def _send(
        self, type_url: str, names: tuple[str, ...], version: str = "", nonce: str = ""
    ) -> None:
        self._outbox.put_nowait(
            discovery_pb2.DiscoveryRequest(
                node=base_pb2.Node(id=self.node_id, cluster="bench", user_agent_name="envoy"),
                type_url=type_url,
                resource_names=names,
                version_info=version,
                response_nonce=nonce,
            )
        )

    async def _requests(self) -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
        while True:
            request = await self._outbox.get()
            if request is None:
                return
            yield request


def _rds_names(packed_listener: bytes) -> list[str]:
    listener = listener_pb2.Listener.FromString(packed_listener)
    names = []
    for chain in listener.filter_chains:
        for network_filter in chain.filters:
            manager = hcm_pb2.HttpConnectionManager()
            if network_filter.typed_config.Unpack(manager) and manager.HasField("rds"):
                names.append(manager.rds.route_config_name)
    return names


class StreamFleet:
    """Many EnvoyLikeStreams against one control plane, each on its own connection (as
    many Envoys would be)."""

    def __init__(self, target: str, count: int, prefix: str = "bench-envoy") -> None:
        self.streams = [EnvoyLikeStream(f"{prefix}-{index:03d}", target) for index in range(count)]
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(stream.run()) for stream in self.streams]

    async def until(self, condition: str, check: Callable[[], bool], within: float) -> None:
        """Poll `check()` until true (arrival times are stamped on receipt, so the poll
        interval does not blur them); TimeoutError naming `condition` after `within` s."""
        deadline = time.perf_counter() + within
        while not check():
            failed = [task for task in self._tasks if task.done()]
            if failed:
                errors = [error for stream in self.streams for error in stream.errors]
                raise RuntimeError(f"{len(failed)} ADS stream(s) ended: {errors[:3]}")
            if time.perf_counter() > deadline:
                raise TimeoutError(f"not within {within:.0f} s: {condition}")
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
