"""Agent Gateway -> RouteConfiguration: one header-match route per agent.

Envoy first matches a request before any decision exists (the "undecided" route,
which keeps ext_proc on); the ext_proc server then sets x-meshroute-agent and
clears the route cache, and Envoy matches again, now to the chosen agent's route.

x-meshroute-agent names the whole sequence of agents that served a request
("weather,flights"); the earlier ones have already run inside the sidecar, and a
route matches on the last. The header is echoed on the response as it is.

The internal listener's routes live here too: `/agents/<name>` and
`/providers/<name>/...`, the URLs the sidecar's own calls use.
"""

from __future__ import annotations

import re

from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from google.protobuf import wrappers_pb2

from meshroute.api import contract
from meshroute.control_plane.config.model import Agent, AgentGatewaySpec, Config, LLMProvider
from meshroute.control_plane.translate import names
from meshroute.control_plane.translate.protos import set_header
from meshroute.control_plane.translate.route_parts import (
    echo,
    forward,
    method_not_allowed,
    not_found,
    post_to,
)


def agent_gateway_routes(
    gateway: str, spec: AgentGatewaySpec, config: Config
) -> route_pb2.RouteConfiguration:
    agents = config.agents
    routes = [_agent_route(agents[ref.name], config) for ref in spec.agents]
    routes.append(_undecided_route(spec, agents[spec.default_agent], config))
    routes.append(method_not_allowed(contract.CHAT_COMPLETIONS_PATH, "POST"))
    routes.append(
        not_found(f"no such path; this gateway serves POST {contract.CHAT_COMPLETIONS_PATH}")
    )
    return virtual_host(names.gateway_route_config(gateway), routes)


def virtual_host(
    name: str, routes: list[route_components_pb2.Route]
) -> route_pb2.RouteConfiguration:
    return route_pb2.RouteConfiguration(
        name=name,
        virtual_hosts=[route_components_pb2.VirtualHost(name=name, domains=["*"], routes=routes)],
    )


def _to_agent(agent: Agent, config: Config) -> route_components_pb2.RouteAction:
    action = forward(agent.spec.path, agent.spec.timeout, config.policies[agent.ref])
    if not agent.spec.variants:
        action.cluster = names.agent_cluster(agent.name)
        return action
    action.weighted_clusters.clusters.extend(
        route_components_pb2.WeightedCluster.ClusterWeight(
            name=names.variant_cluster(agent.name, variant.name),
            weight=wrappers_pb2.UInt32Value(value=variant.weight),
            response_headers_to_add=[set_header(contract.VARIANT_HEADER, variant.name)],
        )
        for variant in agent.spec.variants
    )
    return action


def _to_provider(provider: LLMProvider, config: Config) -> route_components_pb2.RouteAction:
    action = forward(
        provider.spec.endpoint.base_path + "/", provider.spec.timeout, config.policies[provider.ref]
    )
    action.cluster = names.provider_cluster(provider.name)
    return action


def _agent_route(agent: Agent, config: Config) -> route_components_pb2.Route:
    last_in_sequence = route_components_pb2.HeaderMatcher(
        name=contract.AGENT_HEADER,
        string_match=string_pb2.StringMatcher(
            safe_regex=regex_pb2.RegexMatcher(regex=rf"^([^,]+,)*{re.escape(agent.name)}$")
        ),
    )
    return route_components_pb2.Route(
        name=names.agent_cluster(agent.name),
        match=post_to(contract.CHAT_COMPLETIONS_PATH, last_in_sequence),
        route=_to_agent(agent, config),
        response_headers_to_add=[
            echo(contract.AGENT_HEADER),
            echo(contract.ROUTE_REASON_HEADER),
        ],
    )


def _undecided_route(
    spec: AgentGatewaySpec, default_agent: Agent, config: Config
) -> route_components_pb2.Route:
    """Where a chat request matches before ext_proc has decided.

    With a healthy sidecar the request never leaves through this route: the decision
    re-routes it. If the sidecar fails, `failureMode: open` lets the request through
    here to the default agent; `closed` never gets here (ext_proc answers 503 first),
    and the 503 below only guards that promise.
    """
    route = route_components_pb2.Route(
        name="undecided", match=post_to(contract.CHAT_COMPLETIONS_PATH)
    )
    if spec.failure_mode == "open":
        route.route.CopyFrom(_to_agent(default_agent, config))
        route.response_headers_to_add.extend(
            [
                set_header(contract.AGENT_HEADER, default_agent.name),
                set_header(contract.ROUTE_REASON_HEADER, contract.REASON_FALLBACK),
            ]
        )
    else:
        route.direct_response.status = 503
        route.direct_response.body.inline_string = "no routing decision was made for this request"
    return route


# ------------------------------------------------------------------ internal listener


def internal_agent_path(agent: str) -> str:
    return f"/agents/{agent}"


def internal_provider_prefix(provider: str) -> str:
    return f"/providers/{provider}/"


def internal_route_config(config: Config) -> route_pb2.RouteConfiguration:
    """Routes for the sidecar's own calls, one per agent and one per provider."""
    routes = [
        route_components_pb2.Route(
            name=names.agent_cluster(agent.name),
            match=route_components_pb2.RouteMatch(path=internal_agent_path(agent.name)),
            route=_to_agent(agent, config),
        )
        for agent in sorted(config.agents.values(), key=lambda agent: agent.name)
    ]
    routes += [
        route_components_pb2.Route(
            name=names.provider_cluster(provider.name),
            match=route_components_pb2.RouteMatch(prefix=internal_provider_prefix(provider.name)),
            route=_to_provider(provider, config),
        )
        for provider in sorted(config.providers.values(), key=lambda provider: provider.name)
    ]
    routes.append(
        not_found(f"no such path; this gateway serves POST {contract.CHAT_COMPLETIONS_PATH}")
    )
    return virtual_host(names.INTERNAL_ROUTE_CONFIG, routes)
