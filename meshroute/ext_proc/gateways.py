"""Any RoutingTable -> the routing for its kind of gateway (agent or model)."""

from __future__ import annotations

import aiohttp

from meshroute.api.v1alpha1 import routing_table_pb2 as rt
from meshroute.ext_proc.metrics import SidecarMetrics
from meshroute.ext_proc.model_routing import ModelRouting
from meshroute.ext_proc.routing import GatewayRouting

AnyRouting = GatewayRouting | ModelRouting


def build_routing(
    table: rt.RoutingTable,
    session: aiohttp.ClientSession | None = None,
    metrics: SidecarMetrics | None = None,
) -> AnyRouting:
    """ValueError if the table cannot be used."""
    if table.HasField("models"):
        return ModelRouting(table, session, metrics)
    return GatewayRouting(table, session, metrics)
