"""A whole Config -> every resource the control plane serves, keyed by xDS type."""

from __future__ import annotations

from dataclasses import dataclass, field

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2

from meshroute.api.v1alpha1 import routing_table_pb2
from meshroute.control_plane.config.model import Config
from meshroute.control_plane.translate.clusters import agent_clusters, provider_cluster_resource
from meshroute.control_plane.translate.deployment import DeploymentSettings
from meshroute.control_plane.translate.listeners import gateway_listener, internal_listener
from meshroute.control_plane.translate.routes import gateway_route_config, internal_route_config
from meshroute.control_plane.translate.routing_tables import gateway_routing_table


@dataclass(frozen=True)
class Resources:
    """The resources of one snapshot, before versioning and packing for the wire."""

    clusters: list[cluster_pb2.Cluster] = field(default_factory=list)
    listeners: list[listener_pb2.Listener] = field(default_factory=list)
    routes: list[route_pb2.RouteConfiguration] = field(default_factory=list)
    routing_tables: list[routing_table_pb2.RoutingTable] = field(default_factory=list)


def translate(config: Config, settings: DeploymentSettings | None = None) -> Resources:
    settings = settings or DeploymentSettings()
    gateways = sorted(config.gateways.values(), key=lambda gateway: gateway.name)
    agents = [config.agents[name] for name in sorted(config.agents)]
    providers = [config.providers[name] for name in sorted(config.providers)]
    return Resources(
        clusters=[
            cluster
            for agent in agents
            for cluster in agent_clusters(agent, config, settings.system_ca_bundle)
        ]
        + [
            provider_cluster_resource(provider, config, settings.system_ca_bundle)
            for provider in providers
        ],
        listeners=[gateway_listener(gateway, settings) for gateway in gateways]
        + [internal_listener(settings)],
        routes=[gateway_route_config(gateway, config) for gateway in gateways]
        + [internal_route_config(config)],
        routing_tables=[gateway_routing_table(gateway, config, settings) for gateway in gateways],
    )
