"""The ADS gRPC service: one SotwStream or DeltaStream per connected Envoy or ext_proc server.

Both ADS flavours share the same plumbing (one event loop per stream that merges
the client's requests with new snapshots, so a stream's state machine only ever
runs on one task); Envoy picks its flavour with `api_type` in its bootstrap.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from meshroute.control_plane.xds.delta import DeltaStream
from meshroute.control_plane.xds.snapshot import SnapshotCache
from meshroute.control_plane.xds.sotw import ProtocolError, SotwStream

log = logging.getLogger("meshroute.control_plane.xds")

_STREAM_ENDED = object()
_NEW_SNAPSHOT = object()

AdsStream: TypeAlias = SotwStream | DeltaStream
"""The server's side of one ADS stream, in either flavour."""


class AggregatedDiscoveryService(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self, cache: SnapshotCache, control_plane_id: str = "meshroute") -> None:
        self._cache = cache
        self._control_plane_id = control_plane_id
        self._stream_ids = itertools.count(1)
        self.streams: dict[int, AdsStream] = {}
        """Open streams by id, of both flavours: who is connected and what each has accepted."""

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
                    responses = stream.on_request(event, snapshot)
                    # An ACK may be what retiring clusters were waiting for.
                    self._cache.progress(self.streams.values())
                for response in responses:
                    await context.write(response)
        except ProtocolError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        finally:
            for task in tasks:
                task.cancel()
            self._cache.unwatch(changed)
            self.streams.pop(stream.stream_id, None)
            log.info("xDS stream %d from node %s closed", stream.stream_id, stream.node_id)


async def start_xds_server(
    cache: SnapshotCache, address: str, port: int
) -> tuple[grpc.aio.Server, AggregatedDiscoveryService, int]:
    """Serve ADS and gRPC health on address:port (port 0 picks one); returns the bound port."""
    server = grpc.aio.server()
    service = AggregatedDiscoveryService(cache)
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(service, server)
    health_service = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_service, server)
    bound = server.add_insecure_port(f"{address}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen for xDS on {address}:{port}")
    await server.start()
    await health_service.set("", health_pb2.HealthCheckResponse.SERVING)
    return server, service, bound
