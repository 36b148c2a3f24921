"""Gateway -> RouteConfiguration: one header-match route per agent.

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
from datetime import timedelta

from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.ext_proc.v3 import ext_proc_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from google.protobuf import wrappers_pb2

from meshroute.api import contract
from meshroute.control_plane.config.model import Agent, Config, Gateway, LLMProvider
from meshroute.control_plane.config.policies import ResolvedPolicy, RetriesSpec
from meshroute.control_plane.translate import names
from meshroute.control_plane.translate.protos import duration, pack, set_header

_ECHO_REASON = set_header(contract.ROUTE_REASON_HEADER, f"%REQ({contract.ROUTE_REASON_HEADER})%")
_ECHO_AGENTS = set_header(contract.AGENT_HEADER, f"%REQ({contract.AGENT_HEADER})%")


def gateway_route_config(gateway: Gateway, config: Config) -> route_pb2.RouteConfiguration:
    agents = config.agents
    routes = [_agent_route(agents[ref.name], config) for ref in gateway.spec.agents]
    routes.append(_undecided_route(gateway, agents[gateway.spec.default_agent], config))
    routes.append(_method_not_allowed_route())
    routes.append(_not_found_route())
    return route_pb2.RouteConfiguration(
        name=names.gateway_route_config(gateway.name),
        virtual_hosts=[
            route_components_pb2.VirtualHost(
                name=names.gateway_route_config(gateway.name), domains=["*"], routes=routes
            )
        ],
    )


def _chat_match(*headers: route_components_pb2.HeaderMatcher) -> route_components_pb2.RouteMatch:
    post = route_components_pb2.HeaderMatcher(
        name=":method", string_match=string_pb2.StringMatcher(exact="POST")
    )
    return route_components_pb2.RouteMatch(
        path=contract.CHAT_COMPLETIONS_PATH, headers=[post, *headers]
    )


def _forward(
    path: str, idle_timeout: timedelta, policy: ResolvedPolicy
) -> route_components_pb2.RouteAction:
    action = route_components_pb2.RouteAction(
        prefix_rewrite=path,
        auto_host_rewrite=wrappers_pb2.BoolValue(value=True),
        # No total timeout: a long stream is not cut. The idle timeout bounds silence.
        timeout=duration(timedelta(0)),
        idle_timeout=duration(idle_timeout),
    )
    if policy.retries.attempts:
        action.retry_policy.CopyFrom(_retry_policy(policy.retries))
    hash_on = policy.load_balancing.hash_on
    if hash_on is not None:
        action.hash_policy.append(
            route_components_pb2.RouteAction.HashPolicy(
                header=route_components_pb2.RouteAction.HashPolicy.Header(
                    header_name=hash_on.header.lower()
                )
            )
        )
    return action


def _retry_policy(spec: RetriesSpec) -> route_components_pb2.RetryPolicy:
    conditions: list[str] = [c for c in spec.retry_on if isinstance(c, str)]
    codes = [code for code in spec.retry_on if isinstance(code, int)]
    if codes:
        conditions.append("retriable-status-codes")
    policy = route_components_pb2.RetryPolicy(
        retry_on=",".join(conditions),
        num_retries=wrappers_pb2.UInt32Value(value=spec.attempts),
        retriable_status_codes=codes,
        retry_back_off=route_components_pb2.RetryPolicy.RetryBackOff(
            base_interval=duration(spec.backoff.base), max_interval=duration(spec.backoff.max)
        ),
    )
    if spec.per_try_timeout is not None:
        policy.per_try_timeout.CopyFrom(duration(spec.per_try_timeout))
    if spec.other_host:
        policy.retry_host_predicate.append(
            route_components_pb2.RetryPolicy.RetryHostPredicate(
                name="envoy.retry_host_predicates.previous_hosts",
                typed_config=pack(previous_hosts_pb2.PreviousHostsPredicate()),
            )
        )
        policy.host_selection_retry_max_attempts = 5
    return policy


def _to_agent(agent: Agent, config: Config) -> route_components_pb2.RouteAction:
    action = _forward(agent.spec.path, agent.spec.timeout, config.policies[agent.ref])
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
    action = _forward(
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
        match=_chat_match(last_in_sequence),
        route=_to_agent(agent, config),
        response_headers_to_add=[_ECHO_AGENTS, _ECHO_REASON],
    )


def _undecided_route(
    gateway: Gateway, default_agent: Agent, config: Config
) -> route_components_pb2.Route:
    """Where a chat request matches before ext_proc has decided.

    With a healthy sidecar the request never leaves through this route: the decision
    re-routes it. If the sidecar fails, `failureMode: open` lets the request through
    here to the default agent; `closed` never gets here (ext_proc answers 503 first),
    and the 503 below only guards that promise.
    """
    route = route_components_pb2.Route(name="undecided", match=_chat_match())
    if gateway.spec.failure_mode == "open":
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


def _method_not_allowed_route() -> route_components_pb2.Route:
    route = route_components_pb2.Route(
        name="method_not_allowed",
        match=route_components_pb2.RouteMatch(path=contract.CHAT_COMPLETIONS_PATH),
        direct_response=route_components_pb2.DirectResponseAction(status=405),
        typed_per_filter_config={names.EXT_PROC_FILTER: _EXT_PROC_OFF},
    )
    route.direct_response.body.inline_string = f"use POST for {contract.CHAT_COMPLETIONS_PATH}"
    route.response_headers_to_add.append(set_header("allow", "POST"))
    return route


def _not_found_route() -> route_components_pb2.Route:
    route = route_components_pb2.Route(
        name="not_found",
        match=route_components_pb2.RouteMatch(prefix="/"),
        direct_response=route_components_pb2.DirectResponseAction(status=404),
        typed_per_filter_config={names.EXT_PROC_FILTER: _EXT_PROC_OFF},
    )
    route.direct_response.body.inline_string = (
        f"no such path; this gateway serves POST {contract.CHAT_COMPLETIONS_PATH}"
    )
    return route


_EXT_PROC_OFF = pack(ext_proc_pb2.ExtProcPerRoute(disabled=True))


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
    routes.append(_not_found_route())
    return route_pb2.RouteConfiguration(
        name=names.INTERNAL_ROUTE_CONFIG,
        virtual_hosts=[
            route_components_pb2.VirtualHost(
                name=names.INTERNAL_ROUTE_CONFIG, domains=["*"], routes=routes
            )
        ],
    )
