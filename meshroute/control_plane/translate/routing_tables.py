"""Gateway -> RoutingTable: what the ext_proc server needs to decide for one Gateway."""

from __future__ import annotations

from meshroute.api.v1alpha1 import routing_table_pb2 as rt
from meshroute.control_plane.config.model import Agent, Gateway


def gateway_routing_table(gateway: Gateway, agents: dict[str, Agent]) -> rt.RoutingTable:
    return rt.RoutingTable(
        gateway=gateway.name,
        agents=[
            rt.AgentTarget(
                name=ref.name,
                description=ref.description or agents[ref.name].spec.description,
                examples=agents[ref.name].spec.examples,
            )
            for ref in gateway.spec.agents
        ],
        default_agent=gateway.spec.default_agent,
        router=rt.Router(embedded=rt.EmbeddedRouter(min_score=gateway.spec.router.min_score)),
    )
