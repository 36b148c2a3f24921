"""Gateway -> Listener: the port clients call, and the HTTP filter chain behind it.

The chain is: strip client-sent x-meshroute-* and x-envoy-* headers (so nobody can
steer routing, retries or timeouts), the Gateway's authentication if it has `auth`
(callers without a valid credential stop there; see the `auth` module), ext_proc
(the routing decision), the usage filters (token counts from the response, for logs
and spans), router. Routes come over RDS, so a route change never drains the
listener. Every listener logs each request and, where tracing is on, traces it
(`observability`).

Gateways bound slow clients (`clientTimeouts`): headers must arrive in time, a
stalled stream is cut, and the whole request must be received within
`max_request_time`. None of them cuts a long response.

The internal listener (for the sidecar's own calls) is built here too: the same
shape without strip, authentication and ext_proc.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta

from envoy.config.common.mutation_rules.v3 import mutation_rules_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2, grpc_service_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.http.ext_proc.v3 import ext_proc_pb2, processing_mode_pb2
from envoy.extensions.filters.http.header_mutation.v3 import header_mutation_pb2
from envoy.extensions.filters.http.json_to_metadata.v3 import json_to_metadata_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import http_status_pb2
from google.protobuf import wrappers_pb2

from meshroute.api import contract
from meshroute.control_plane.config.model import AgentGatewaySpec, Gateway, OrchestratorRouterSpec
from meshroute.control_plane.credentials import ClientKey
from meshroute.control_plane.translate import names
from meshroute.control_plane.translate.auth import auth_filter
from meshroute.control_plane.translate.deployment import DeploymentSettings, TracingSettings
from meshroute.control_plane.translate.local_reply import local_reply_config
from meshroute.control_plane.translate.observability import (
    access_logs,
    gateway_tracing,
    tracing_config,
    usage_filters,
)
from meshroute.control_plane.translate.protos import duration, pack

# How long Envoy waits for one ext_proc answer when the sidecar decides locally (the
# embedded router takes well under a millisecond): this bounds a stalled sidecar.
LOCAL_DECISION_TIMEOUT = timedelta(seconds=2)
# What the sidecar adds on top of the routing model's own timeout before Envoy gives up.
ROUTING_CALL_MARGIN = timedelta(seconds=1)
# The longest the sidecar may hold a request while it runs the earlier agents of a
# multi-agent sequence (it asks Envoy for this much, per request, when it starts one).
MAX_SEQUENCE_DURATION = timedelta(seconds=contract.MAX_SEQUENCE_SECONDS)

# Client headers that could steer what Envoy does with a request: our routing
# headers, and Envoy's own request controls (x-envoy-upstream-rq-timeout-ms,
# x-envoy-retry-on, x-envoy-max-retries, ...). Envoy trusts the latter from clients
# it deems internal (which depends on addresses), so every gateway removes them.
STRIPPED_PREFIXES = (contract.HEADER_PREFIX, "x-envoy-")


MODEL_GATEWAY_PATHS = [contract.CHAT_COMPLETIONS_PATH, contract.MESSAGES_PATH, contract.MODELS_PATH]


def gateway_listener(
    gateway: Gateway, settings: DeploymentSettings, client_keys: Sequence[ClientKey] = ()
) -> listener_pb2.Listener:
    """`client_keys`: the keys the Gateway's `auth.apiKeys` name, if it has them."""
    spec = gateway.spec
    # Authentication follows the strip (so the client header it sets cannot be forged)
    # and precedes everything else (so a refused request costs nothing more).
    pinning = isinstance(spec, AgentGatewaySpec) and spec.allow_client_pinning
    edge = [_strip_client_headers_filter(pinning)]
    checked = auth_filter(gateway, client_keys)
    if checked is not None:
        edge.append(checked)
    if isinstance(spec, AgentGatewaySpec):
        filters = [
            *edge,
            _ext_proc_filter(gateway, failure_open=spec.failure_mode == "open", model=False),
            *usage_filters(),
            _router_filter(),
        ]
        paths = [contract.CHAT_COMPLETIONS_PATH]
    else:
        # A request naming a model by its exposed name is routed by Envoy alone: the
        # body's `model` becomes metadata routes match, before ext_proc looks.
        filters = [
            *edge,
            _model_name_filter(),
            _ext_proc_filter(gateway, failure_open=False, model=True),
            *usage_filters(),
            _router_filter(),
        ]
        paths = MODEL_GATEWAY_PATHS
    manager = _http_connection_manager(
        names.gateway_listener(gateway.name),
        names.gateway_route_config(gateway.name),
        filters,
        local_reply_config(paths, gateway.spec.max_request_bytes),
        log_name=gateway.name,
        tracing=gateway_tracing(gateway, settings),
    )
    _slow_client_timeouts(manager, gateway)
    # ext_proc buffers the whole body under this limit; beyond it Envoy answers 413.
    return _listener(
        names.gateway_listener(gateway.name),
        settings.bind_address,
        gateway.spec.port,
        manager,
        buffer_limit=gateway.spec.max_request_bytes,
    )


def internal_listener(settings: DeploymentSettings) -> listener_pb2.Listener:
    """Loopback only, no ext_proc: the sidecar's calls get Envoy's LB, retries and TLS.
    Logged and traced (the environment's tracing) like a gateway: the routing model's
    tokens cost as much as any, and its spans join the request's trace through the
    traceparent the sidecar sends."""
    manager = _http_connection_manager(
        names.INTERNAL_LISTENER,
        names.INTERNAL_ROUTE_CONFIG,
        [*usage_filters(), _router_filter()],
        local_reply_config([], max_request_bytes=2**30),
        log_name=contract.INTERNAL_LOG_NAME,
        tracing=settings.tracing,
    )
    return _listener(
        names.INTERNAL_LISTENER, settings.internal_address, settings.internal_port, manager
    )


def ext_proc_message_timeout(gateway: Gateway) -> timedelta:
    """Never shorter than the router's own budget, so Envoy never gives up first."""
    router = gateway.spec.router
    if isinstance(router, OrchestratorRouterSpec):
        return max(LOCAL_DECISION_TIMEOUT, router.timeout + ROUTING_CALL_MARGIN)
    return LOCAL_DECISION_TIMEOUT


def max_request_time(gateway: Gateway) -> timedelta:
    """How long receiving one request may take, from its first byte until it goes
    upstream or its response starts. The request waits inside the sidecar for the
    routing decision and, for a multi-agent sequence, for the earlier agents: that
    time is never cut; what remains bounds a client trickling its body."""
    upload = gateway.spec.client_timeouts.upload
    return ext_proc_message_timeout(gateway) + MAX_SEQUENCE_DURATION + upload


def _slow_client_timeouts(manager: hcm_pb2.HttpConnectionManager, gateway: Gateway) -> None:
    """A slow sender cannot hold a connection and its buffers for ever."""
    timeouts = gateway.spec.client_timeouts
    manager.request_headers_timeout.CopyFrom(duration(timeouts.headers))
    manager.stream_idle_timeout.CopyFrom(duration(timeouts.idle))
    manager.request_timeout.CopyFrom(duration(max_request_time(gateway)))


def _http_connection_manager(
    stat_prefix: str,
    route_config: str,
    filters: list[hcm_pb2.HttpFilter],
    local_reply: hcm_pb2.LocalReplyConfig,
    *,
    log_name: str,
    tracing: TracingSettings | None,
) -> hcm_pb2.HttpConnectionManager:
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix=stat_prefix,
        codec_type=hcm_pb2.HttpConnectionManager.AUTO,
        rds=hcm_pb2.Rds(
            config_source=config_source_pb2.ConfigSource(
                ads=config_source_pb2.AggregatedConfigSource(),
                resource_api_version=config_source_pb2.V3,
            ),
            route_config_name=route_config,
        ),
        http_filters=filters,
        local_reply_config=local_reply,
        normalize_path=wrappers_pb2.BoolValue(value=True),
        merge_slashes=True,
        access_log=access_logs(log_name),
    )
    if tracing is not None:
        manager.tracing.CopyFrom(tracing_config(tracing, log_name))
    return manager


def _listener(
    name: str,
    address: str,
    port: int,
    manager: hcm_pb2.HttpConnectionManager,
    buffer_limit: int | None = None,
) -> listener_pb2.Listener:
    listener = listener_pb2.Listener(
        name=name,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address=address, port_value=port)
        ),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    listener_components_pb2.Filter(
                        name="envoy.filters.network.http_connection_manager",
                        typed_config=pack(manager),
                    )
                ]
            )
        ],
    )
    if buffer_limit is not None:
        listener.per_connection_buffer_limit_bytes.value = buffer_limit
    return listener


def _router_filter() -> hcm_pb2.HttpFilter:
    return hcm_pb2.HttpFilter(name=names.ROUTER_FILTER, typed_config=pack(router_pb2.Router()))


def _strip_client_headers_filter(allow_pinning: bool) -> hcm_pb2.HttpFilter:
    """Remove every client header under STRIPPED_PREFIXES (but the agent header, where
    clients may pin): one regex, one pass over the headers."""
    ours = re.escape(contract.HEADER_PREFIX) + ".*"
    if allow_pinning:
        ours = _prefix_except(contract.HEADER_PREFIX, contract.AGENT_HEADER)
    others = [re.escape(prefix) + ".*" for prefix in STRIPPED_PREFIXES[1:]]
    matcher = string_pb2.StringMatcher(
        safe_regex=regex_pb2.RegexMatcher(regex=f"^({'|'.join([ours, *others])})$")
    )
    strip = header_mutation_pb2.HeaderMutation(
        mutations=header_mutation_pb2.Mutations(
            request_mutations=[
                mutation_rules_pb2.HeaderMutation(
                    remove_on_match=mutation_rules_pb2.HeaderMutation.RemoveOnMatch(
                        key_matcher=matcher
                    )
                )
            ]
        )
    )
    return hcm_pb2.HttpFilter(name=names.STRIP_FILTER, typed_config=pack(strip))


def _prefix_except(prefix: str, keep: str) -> str:
    """An RE2 regex (no lookahead, no anchors) for names starting with `prefix`,
    except `keep`.

    A name other than `keep` either leaves `keep`'s spelling at some character, or
    stops short of it, or runs past it.
    """
    rest = keep.removeprefix(prefix)
    branches = [
        re.escape(rest[:index]) + f"[^{re.escape(rest[index])}]" for index in range(len(rest))
    ]
    shorter = [re.escape(rest[:index]) for index in range(len(rest))]
    alternatives = [f"{branch}.*" for branch in branches] + shorter + [re.escape(rest) + ".+"]
    return f"{re.escape(prefix)}({'|'.join(alternatives)})"


def _model_name_filter() -> hcm_pb2.HttpFilter:
    rules = json_to_metadata_pb2.JsonToMetadata
    extract = rules(
        request_rules=rules.MatchRules(
            rules=[
                rules.Rule(
                    selectors=[rules.Selector(key="model")],
                    on_present=rules.KeyValuePair(
                        metadata_namespace=contract.MODEL_METADATA_NAMESPACE,
                        key=contract.MODEL_METADATA_KEY,
                        type=rules.STRING,
                    ),
                )
            ],
            allow_content_types=["application/json"],
        )
    )
    return hcm_pb2.HttpFilter(name=names.MODEL_NAME_FILTER, typed_config=pack(extract))


def _ext_proc_filter(gateway: Gateway, *, failure_open: bool, model: bool) -> hcm_pb2.HttpFilter:
    """The sidecar's filter. For model gateways it also sees response headers: only
    then does it know whether the response needs translating, and only then does it
    ask (mode_override) for the body; untranslated responses pass through."""
    mode = processing_mode_pb2.ProcessingMode
    processor = ext_proc_pb2.ExternalProcessor(
        grpc_service=grpc_service_pb2.GrpcService(
            envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=names.EXT_PROC_CLUSTER),
            initial_metadata=[
                base_pb2.HeaderValue(key=contract.GATEWAY_METADATA_KEY, value=gateway.name)
            ],
        ),
        # Routing reads the body, and the route must be chosen again after the
        # decision: headers SEND (so clear_route_cache takes effect) and the body
        # BUFFERED.
        processing_mode=mode(
            request_header_mode=mode.SEND,
            request_body_mode=mode.BUFFERED,
            request_trailer_mode=mode.SKIP,
            response_header_mode=mode.SEND if model else mode.SKIP,
            response_body_mode=mode.NONE,
            response_trailer_mode=mode.SKIP,
        ),
        allow_mode_override=model,
        message_timeout=duration(ext_proc_message_timeout(gateway)),
        # The sidecar may ask for longer on one message (override_message_timeout)
        # while it runs a multi-agent sequence.
        max_message_timeout=duration(MAX_SEQUENCE_DURATION),
        failure_mode_allow=failure_open,
        status_on_error=http_status_pb2.HttpStatus(code=http_status_pb2.ServiceUnavailable),
    )
    return hcm_pb2.HttpFilter(name=names.EXT_PROC_FILTER, typed_config=pack(processor))
