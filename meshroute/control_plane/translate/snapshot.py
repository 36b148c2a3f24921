"""A whole Config -> every resource the control plane serves, keyed by xDS type."""

from __future__ import annotations

from dataclasses import dataclass, field

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from meshroute.api.v1alpha1 import routing_table_pb2
from meshroute.control_plane.config.model import AgentGatewaySpec, Config, Gateway
from meshroute.control_plane.credentials import Credentials, redacted_credentials
from meshroute.control_plane.translate.auth import jwks_clusters
from meshroute.control_plane.translate.clusters import (
    agent_clusters,
    key_secret,
    provider_cluster_resource,
)
from meshroute.control_plane.translate.deployment import DeploymentSettings
from meshroute.control_plane.translate.listeners import gateway_listener, internal_listener
from meshroute.control_plane.translate.model_routes import model_gateway_routes
from meshroute.control_plane.translate.observability import collector_clusters
from meshroute.control_plane.translate.routes import agent_gateway_routes, internal_route_config
from meshroute.control_plane.translate.routing_tables import gateway_routing_table


@dataclass(frozen=True)
class Resources:
    """The resources of one snapshot, before versioning and packing for the wire."""

    clusters: list[cluster_pb2.Cluster] = field(default_factory=list)
    listeners: list[listener_pb2.Listener] = field(default_factory=list)
    routes: list[route_pb2.RouteConfiguration] = field(default_factory=list)
    routing_tables: list[routing_table_pb2.RoutingTable] = field(default_factory=list)
    secrets: list[secret_pb2.Secret] = field(default_factory=list)


def translate(
    config: Config,
    settings: DeploymentSettings | None = None,
    credentials: Credentials | None = None,
) -> Resources:
    """`credentials`: the providers' and Gateways' keys (read_credentials); None puts
    stand-ins in their place, for showing a config without its keys."""
    settings = settings or DeploymentSettings()
    if credentials is None:
        credentials = redacted_credentials(config)
    keys = credentials.providers
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
            provider_cluster_resource(
                provider, config, settings.system_ca_bundle, keys.get(provider.name)
            )
            for provider in providers
        ]
        + collector_clusters(gateways, settings)
        + jwks_clusters(gateways, settings.system_ca_bundle),
        listeners=[
            gateway_listener(gateway, settings, credentials.client_keys.get(gateway.name, ()))
            for gateway in gateways
        ]
        + [internal_listener(settings)],
        routes=[_gateway_routes(gateway, config) for gateway in gateways]
        + [internal_route_config(config)],
        routing_tables=[gateway_routing_table(gateway, config, settings) for gateway in gateways],
        secrets=[key_secret(keys[name]) for name in sorted(keys)],
    )


def _gateway_routes(gateway: Gateway, config: Config) -> route_pb2.RouteConfiguration:
    if isinstance(gateway.spec, AgentGatewaySpec):
        return agent_gateway_routes(gateway.name, gateway.spec, config)
    return model_gateway_routes(gateway.name, gateway.spec, config)
