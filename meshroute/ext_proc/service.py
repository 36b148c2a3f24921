"""`meshroute ext-proc`: the routing sidecar as a process."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

import aiohttp
import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from meshroute.api.v1alpha1.routing_table_pb2 import RoutingTable
from meshroute.ext_proc.gateways import AnyRouting, build_routing
from meshroute.ext_proc.server import ExternalProcessor, RoutingTables
from meshroute.ext_proc.stats import RoutingStats
from meshroute.ext_proc.table_client import TableClient
from meshroute.lifecycle import wait_for_stop_signal

log = logging.getLogger("meshroute.ext_proc")

# Envoy sends the whole buffered body in one gRPC message; gateways accept up to
# 1 GiB (maxRequestBytes), so the server must too. gRPC's 4 MiB default would fail
# large requests with an opaque stream error.
MAX_MESSAGE_BYTES = 2**30 + 2**20
# Connections the sidecar keeps to Envoy's internal listener, for routing-model calls
# and sequence steps (each gateway's router also bounds its own concurrency).
HTTP_CONNECTIONS = 1024


def default_node_id() -> str:
    return f"ext-proc-{socket.gethostname()}-{os.getpid()}"


async def run_ext_proc(address: str, port: int, xds_target: str, node_id: str) -> None:
    tables = RoutingTables()
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
    )
    ep_grpc.add_ExternalProcessorServicer_to_server(ExternalProcessor(tables), server)
    health_service = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_service, server)
    bound = server.add_insecure_port(f"{address}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen for ext_proc on {address}:{port}")
    # Not ready until the first routing tables arrive: Envoy and Kubernetes should
    # not send requests we could only refuse.
    await health_service.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.start()
    log.info("ext_proc listening on %s:%d; routing tables from %s", address, bound, xds_target)

    async def ready() -> None:
        await health_service.set("", health_pb2.HealthCheckResponse.SERVING)

    # One HTTP client for the process: connections to Envoy's internal listener are
    # reused across requests and gateways.
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=HTTP_CONNECTIONS))
    stats = RoutingStats()

    def build(table: RoutingTable) -> AnyRouting:
        return build_routing(table, session, stats)

    client = asyncio.create_task(TableClient(xds_target, node_id, tables, build, ready).run())
    try:
        await wait_for_stop_signal()
    finally:
        client.cancel()
        await server.stop(grace=2)
        await session.close()


def serve(address: str, port: int, xds_target: str, node_id: str) -> None:
    asyncio.run(run_ext_proc(address, port, xds_target, node_id))
