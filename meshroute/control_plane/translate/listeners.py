"""Gateway -> Listener: the port clients call, and the HTTP filter chain behind it.

The chain is: strip client-sent x-meshroute-* headers (so nobody can steer
routing), ext_proc (the routing decision), router. Routes come over RDS, so a
route change never drains the listener.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from envoy.config.common.mutation_rules.v3 import mutation_rules_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2, grpc_service_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.http.ext_proc.v3 import ext_proc_pb2, processing_mode_pb2
from envoy.extensions.filters.http.header_mutation.v3 import header_mutation_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.type.matcher.v3 import string_pb2
from envoy.type.v3 import http_status_pb2
from google.protobuf import wrappers_pb2

from meshroute.api import contract
from meshroute.control_plane.config.model import Gateway
from meshroute.control_plane.translate import names
from meshroute.control_plane.translate.local_reply import local_reply_config
from meshroute.control_plane.translate.protos import duration, pack

# How long Envoy waits for one ext_proc answer. The embedded router decides in well
# under a millisecond; this bounds a stalled sidecar, not the router.
EMBEDDED_ROUTER_MESSAGE_TIMEOUT = timedelta(seconds=2)


@dataclass(frozen=True)
class ListenerSettings:
    """Deployment facts the config files do not say: where gateways listen."""

    bind_address: str = "0.0.0.0"


def gateway_listener(gateway: Gateway, settings: ListenerSettings) -> listener_pb2.Listener:
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix=names.gateway_listener(gateway.name),
        codec_type=hcm_pb2.HttpConnectionManager.AUTO,
        rds=hcm_pb2.Rds(
            config_source=config_source_pb2.ConfigSource(
                ads=config_source_pb2.AggregatedConfigSource(),
                resource_api_version=config_source_pb2.V3,
            ),
            route_config_name=names.gateway_route_config(gateway.name),
        ),
        http_filters=[
            _strip_client_headers_filter(),
            _ext_proc_filter(gateway),
            hcm_pb2.HttpFilter(name=names.ROUTER_FILTER, typed_config=pack(router_pb2.Router())),
        ],
        local_reply_config=local_reply_config(
            [contract.CHAT_COMPLETIONS_PATH], gateway.spec.max_request_bytes
        ),
        normalize_path=wrappers_pb2.BoolValue(value=True),
        merge_slashes=True,
    )
    return listener_pb2.Listener(
        name=names.gateway_listener(gateway.name),
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(
                address=settings.bind_address, port_value=gateway.spec.port
            )
        ),
        # ext_proc buffers the whole body under this limit; beyond it Envoy answers 413.
        per_connection_buffer_limit_bytes=wrappers_pb2.UInt32Value(
            value=gateway.spec.max_request_bytes
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


def _strip_client_headers_filter() -> hcm_pb2.HttpFilter:
    strip = header_mutation_pb2.HeaderMutation(
        mutations=header_mutation_pb2.Mutations(
            request_mutations=[
                mutation_rules_pb2.HeaderMutation(
                    remove_on_match=mutation_rules_pb2.HeaderMutation.RemoveOnMatch(
                        key_matcher=string_pb2.StringMatcher(prefix=contract.HEADER_PREFIX)
                    )
                )
            ]
        )
    )
    return hcm_pb2.HttpFilter(name=names.STRIP_FILTER, typed_config=pack(strip))


def _ext_proc_filter(gateway: Gateway) -> hcm_pb2.HttpFilter:
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
        # BUFFERED. Responses pass straight through.
        processing_mode=mode(
            request_header_mode=mode.SEND,
            request_body_mode=mode.BUFFERED,
            request_trailer_mode=mode.SKIP,
            response_header_mode=mode.SKIP,
            response_body_mode=mode.NONE,
            response_trailer_mode=mode.SKIP,
        ),
        message_timeout=duration(EMBEDDED_ROUTER_MESSAGE_TIMEOUT),
        failure_mode_allow=gateway.spec.failure_mode == "open",
        status_on_error=http_status_pb2.HttpStatus(code=http_status_pb2.ServiceUnavailable),
    )
    return hcm_pb2.HttpFilter(name=names.EXT_PROC_FILTER, typed_config=pack(processor))
