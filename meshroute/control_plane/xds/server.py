"""The ADS gRPC service: one SotwStream or DeltaStream per connected Envoy or ext_proc server.

Both ADS flavours share the same plumbing (one event loop per stream that merges
the client's requests with new snapshots, so a stream's state machine only ever
runs on one task); Envoy picks its flavour with `api_type` in its bootstrap.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from meshroute.control_plane.metrics import (
    CLIENT_KINDS,
    ConnectedClient,
    ControlPlaneMetrics,
    client_status,
    replies_before,
)
from meshroute.control_plane.xds.delta import DeltaStream
from meshroute.control_plane.xds.snapshot import Snapshot, SnapshotCache
from meshroute.control_plane.xds.sotw import ProtocolError, SotwResponse, SotwStream
from meshroute.xds_tls import XdsServerTls, server_credentials

log = logging.getLogger("meshroute.control_plane.xds")

_STREAM_ENDED = object()
_NEW_SNAPSHOT = object()

AdsStream: TypeAlias = SotwStream | DeltaStream
"""The server's side of one ADS stream, in either flavour."""


class AggregatedDiscoveryService(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(
        self,
        cache: SnapshotCache,
        metrics: ControlPlaneMetrics | None = None,
        control_plane_id: str = "meshroute",
    ) -> None:
        self._cache = cache
        self._metrics = metrics or ControlPlaneMetrics()
        self._control_plane_id = control_plane_id
        self._stream_ids = itertools.count(1)
        self.streams: dict[int, AdsStream] = {}
        """Open streams by id, of both flavours: who is connected and what each has accepted."""
        self._clients: dict[int, ConnectedClient] = {}

    def status(self) -> list[dict[str, Any]]:
        """Every connected client and what it accepted, for `GET /status`."""
        return sorted(
            (
                client_status(stream.node_id, self._clients[stream_id], stream.types)
                for stream_id, stream in list(self.streams.items())
                if stream.node_id is not None and stream_id in self._clients
            ),
            key=lambda client: str(client["node"]),
        )

    async def StreamAggregatedResources(
        self,
        requests: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        stream = SotwStream(
            stream_id=next(self._stream_ids), control_plane_id=self._control_plane_id
        )
        await self._serve(stream, requests, context)

    async def DeltaAggregatedResources(
        self,
        requests: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        stream = DeltaStream(
            stream_id=next(self._stream_ids), control_plane_id=self._control_plane_id
        )
        await self._serve(stream, requests, context)

    async def _serve(
        self, stream: AdsStream, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> None:
        """Feed `stream` the client's requests and each new snapshot, in arrival order,
        and write out what it answers, until the client goes away."""
        self.streams[stream.stream_id] = stream
        protocol = "delta" if isinstance(stream, DeltaStream) else "sotw"
        client = ConnectedClient("other", protocol, time.monotonic())
        metrics = self._metrics
        events: asyncio.Queue[object] = asyncio.Queue()
        changed = self._cache.watch()

        async def read_requests() -> None:
            try:
                async for request in requests:
                    events.put_nowait(request)
            finally:
                events.put_nowait(_STREAM_ENDED)

        async def watch_snapshots() -> None:
            while True:
                await changed.wait()
                changed.clear()
                events.put_nowait(_NEW_SNAPSHOT)

        tasks = [asyncio.create_task(read_requests()), asyncio.create_task(watch_snapshots())]
        try:
            while True:
                event = await events.get()
                if event is _STREAM_ENDED:
                    break
                snapshot = self._cache.current
                responses: list[Any]
                if event is _NEW_SNAPSHOT:
                    if stream.node_id is None:
                        continue  # nothing subscribed yet
                    responses = stream.on_snapshot(snapshot)
                else:
                    responses = self._on_request(stream, client, event, snapshot)
                for response in responses:
                    metrics.pushed(response.type_url, stream.node_id)
                    await context.write(response)
        except ProtocolError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        finally:
            for task in tasks:
                task.cancel()
            self._cache.unwatch(changed)
            self.streams.pop(stream.stream_id, None)
            if self._clients.pop(stream.stream_id, None) is not None:
                metrics.clients.labels(client.kind).dec()
            log.info("xDS stream %d from node %s closed", stream.stream_id, stream.node_id)

    def _on_request(
        self, stream: AdsStream, client: ConnectedClient, request: Any, snapshot: Snapshot
    ) -> list[Any]:
        """Answer one client request; count what it ACKed or NACKed."""
        if stream.node_id is None:
            client.kind = CLIENT_KINDS.get(request.node.user_agent_name, "other")
        before = replies_before(stream.types)
        responses: list[Any] = stream.on_request(request, snapshot)
        if stream.stream_id not in self._clients:
            self._clients[stream.stream_id] = client
            self._metrics.clients.labels(client.kind).inc()
        self._metrics.replied(stream.node_id, before, stream.types.items())
        # An ACK may be what retiring clusters were waiting for.
        self._cache.progress(self.streams.values())
        return responses


ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"


def _serialize(response: SotwResponse | discovery_pb2.DiscoveryResponse) -> bytes:
    return response.SerializeToString()


def add_ads_service(service: AggregatedDiscoveryService, server: grpc.aio.Server) -> None:
    """Register ADS as the generated `add_AggregatedDiscoveryServiceServicer_to_server`
    does, but writing a SotwResponse as its shared body's bytes plus its nonce."""
    handlers = {
        "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
            service.StreamAggregatedResources,
            request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
            response_serializer=_serialize,
        ),
        "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
            service.DeltaAggregatedResources,
            request_deserializer=discovery_pb2.DeltaDiscoveryRequest.FromString,
            response_serializer=discovery_pb2.DeltaDiscoveryResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(ADS_SERVICE, handlers),))
    server.add_registered_method_handlers(ADS_SERVICE, handlers)


async def start_xds_server(
    cache: SnapshotCache,
    address: str,
    port: int,
    service: AggregatedDiscoveryService | None = None,
    tls: XdsServerTls | None = None,
) -> tuple[grpc.aio.Server, AggregatedDiscoveryService, int]:
    """Serve ADS and gRPC health on address:port (port 0 picks one); returns the bound port.

    With `tls`, only over TLS, and with its client CA only to clients presenting a
    certificate signed by it: gRPC refuses anyone else during the handshake, before
    any request reaches this service (and logs the refusal itself, one line per
    attempt, as `Handshake failed with error SSL_ERROR_SSL: ...`).
    """
    server = grpc.aio.server()
    service = service or AggregatedDiscoveryService(cache)
    add_ads_service(service, server)
    health_service = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_service, server)
    target = f"{address}:{port}"
    if tls is None:
        bound = server.add_insecure_port(target)
    else:
        bound = server.add_secure_port(target, server_credentials(tls))
    if bound == 0:
        raise OSError(f"cannot listen for xDS on {address}:{port}")
    await server.start()
    await health_service.set("", health_pb2.HealthCheckResponse.SERVING)
    return server, service, bound
