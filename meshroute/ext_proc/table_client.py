"""Subscribing to routing tables over ADS, as an xDS client, and surviving outages.

The ext_proc server is the control plane's client just as Envoy is: it opens an ADS
stream, asks for every RoutingTable, ACKs what it can use and NACKs (with the
reason) what it cannot. If the control plane goes away it keeps routing with the
last good tables and reconnects with backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.rpc import status_pb2

from meshroute.api import contract
from meshroute.api.v1alpha1 import routing_table_pb2 as rt
from meshroute.ext_proc.gateways import AnyRouting
from meshroute.ext_proc.server import RoutingTables
from meshroute.xds_tls import XdsClientTls, channel_credentials, channel_options

log = logging.getLogger("meshroute.ext_proc.xds")

INITIAL_BACKOFF = 0.25
MAX_BACKOFF = 5.0


RoutingFactory = Callable[[rt.RoutingTable], AnyRouting]


def build_routing(
    response: discovery_pb2.DiscoveryResponse, factory: RoutingFactory
) -> dict[str, AnyRouting]:
    """Every table in `response`, ready to serve; ValueError if any is unusable."""
    built: dict[str, AnyRouting] = {}
    for resource in response.resources:
        table = rt.RoutingTable()
        if not resource.Unpack(table):
            raise ValueError(f"expected {contract.ROUTING_TABLE_TYPE_URL}, got {resource.type_url}")
        built[table.gateway] = factory(table)
    return built


class TableClient:
    def __init__(
        self,
        target: str,
        node_id: str,
        tables: RoutingTables,
        factory: RoutingFactory,
        on_first_tables: Callable[[], Awaitable[None]] | None = None,
        *,
        tls: XdsClientTls | None = None,
    ) -> None:
        """`tls`: reach the control plane over TLS (its files are read here, once)."""
        self._factory = factory
        self._target = target
        self._credentials = channel_credentials(tls) if tls is not None else None
        self._channel_options = channel_options(tls) if tls is not None else []
        self._node = base_pb2.Node(
            id=node_id, cluster="meshroute-ext-proc", user_agent_name=contract.EXT_PROC_USER_AGENT
        )
        self._tables = tables
        self._on_first_tables = on_first_tables
        self._applied_once = False

    async def run(self) -> None:
        """Stay subscribed forever (until cancelled)."""
        backoff = INITIAL_BACKOFF
        last_problem: str | None = None
        while True:
            try:
                async with self._channel() as channel:
                    await self._subscribe(ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel))
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as error:
                problem = f"{error.code().name}: {error.details()}"
                # Said once as a warning; the same failure again (every few seconds
                # while it lasts) only at debug level.
                log.log(
                    logging.DEBUG if problem == last_problem else logging.WARNING,
                    "control plane at %s unavailable (%s); serving routing tables version %s",
                    self._target,
                    problem,
                    self._tables.version or "none",
                )
                last_problem = problem
            else:
                backoff = INITIAL_BACKOFF
                last_problem = None
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _channel(self) -> grpc.aio.Channel:
        if self._credentials is None:
            return grpc.aio.insecure_channel(self._target)
        return grpc.aio.secure_channel(
            self._target, self._credentials, options=self._channel_options
        )

    async def _subscribe(self, stub: ads_pb2_grpc.AggregatedDiscoveryServiceStub) -> None:
        call = stub.StreamAggregatedResources()
        await call.write(
            discovery_pb2.DiscoveryRequest(
                node=self._node,
                type_url=contract.ROUTING_TABLE_TYPE_URL,
                version_info=self._tables.version or "",
            )
        )
        log.info("subscribed to routing tables at %s", self._target)
        while True:
            response = await call.read()
            if response is grpc.aio.EOF:
                return
            await call.write(await self._apply(response))

    async def _apply(
        self, response: discovery_pb2.DiscoveryResponse
    ) -> discovery_pb2.DiscoveryRequest:
        reply = discovery_pb2.DiscoveryRequest(
            type_url=contract.ROUTING_TABLE_TYPE_URL, response_nonce=response.nonce
        )
        try:
            built = build_routing(response, self._factory)
        except ValueError as error:
            log.error("rejected routing tables version %s: %s", response.version_info, error)
            reply.version_info = self._tables.version or ""
            reply.error_detail.CopyFrom(
                status_pb2.Status(
                    code=grpc.StatusCode.INVALID_ARGUMENT.value[0], message=str(error)
                )
            )
            return reply
        self._tables.replace(built, response.version_info)
        log.info(
            "routing tables version %s: gateways %s",
            response.version_info,
            ", ".join(sorted(built)) or "none",
        )
        reply.version_info = response.version_info
        if not self._applied_once:
            self._applied_once = True
            if self._on_first_tables is not None:
                await self._on_first_tables()
        return reply
