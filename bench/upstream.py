"""The upstream every throughput bench talks to, and plain Envoys in front of it.

The upstream is an Envoy answering a canned chat completion itself (a direct response),
so it is never what limits a measurement; "direct" is a plain Envoy proxy to it, the
baseline every path is a ratio of. The "ext_proc floor" is that proxy with an ext_proc
filter asking bench/bare_ext_proc.py where each request goes, as meshroute's gateways
ask its sidecar: what any Python ext_proc costs before doing any work.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.ext_proc.v3 import ext_proc_pb2, processing_mode_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from bench.bare_ext_proc import ROUTE_HEADER
from meshroute.control_plane.bootstrap import message_to_dict, to_yaml
from meshroute.control_plane.config.model import Endpoint
from meshroute.control_plane.translate.clusters import load_assignment, speak_http2
from meshroute.control_plane.translate.protos import duration, pack
from tests.support.processes import ManagedProcess, envoy_argv, free_port, port_open
from tests.support.stack import envoy_live

COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": "bench-model",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
)


ROUTER_FILTER = hcm_pb2.HttpFilter(
    name="envoy.filters.http.router", typed_config=pack(router_pb2.Router())
)
EXT_PROC_CLUSTER = "bare_ext_proc"
# Envoy half-closes an ext_proc stream and waits for the server's status, as meshroute's
# bootstrap has it (envoy/bootstrap.yaml), instead of resetting it.
GRACEFUL_EXT_PROC_CLOSE = "envoy.reloadable_features.ext_proc_graceful_grpc_close"


def _ext_proc_filter() -> hcm_pb2.HttpFilter:
    """Request headers, then the buffered body, as meshroute's gateways send them."""
    mode = processing_mode_pb2.ProcessingMode
    processor = ext_proc_pb2.ExternalProcessor(
        processing_mode=mode(
            request_header_mode=mode.SEND,
            request_body_mode=mode.BUFFERED,
            response_header_mode=mode.SKIP,
        ),
        message_timeout=duration(timedelta(seconds=5)),
    )
    processor.grpc_service.envoy_grpc.cluster_name = EXT_PROC_CLUSTER
    return hcm_pb2.HttpFilter(name="envoy.filters.http.ext_proc", typed_config=pack(processor))


def _listener(
    port: int, routes: list[route_components_pb2.Route], filters: list[hcm_pb2.HttpFilter]
) -> listener_pb2.Listener:
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix="bench",
        route_config=route_pb2.RouteConfiguration(
            virtual_hosts=[
                route_components_pb2.VirtualHost(name="bench", domains=["*"], routes=routes)
            ]
        ),
        http_filters=[*filters, ROUTER_FILTER],
    )
    return listener_pb2.Listener(
        name="bench",
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=port)
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


def _cluster(name: str, port: int, *, http2: bool = False) -> cluster_pb2.Cluster:
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.STATIC,
        connect_timeout=duration(timedelta(seconds=1)),
        load_assignment=load_assignment(name, [Endpoint("http", "127.0.0.1", port)]),
    )
    if http2:
        speak_http2(cluster)
    return cluster


def _bootstrap(
    admin_port: int, listener: listener_pb2.Listener, clusters: list[cluster_pb2.Cluster]
) -> str:
    bootstrap = bootstrap_pb2.Bootstrap()
    bootstrap.admin.address.socket_address.address = "127.0.0.1"
    bootstrap.admin.address.socket_address.port_value = admin_port
    bootstrap.static_resources.listeners.append(listener)
    bootstrap.static_resources.clusters.extend(clusters)
    layer = bootstrap.layered_runtime.layers.add(name="bench")
    layer.static_layer.update({GRACEFUL_EXT_PROC_CLOSE: True})
    return to_yaml(message_to_dict(bootstrap))


def start_envoy(
    name: str,
    workdir: Path,
    listener_port: int,
    upstream: int | None,
    *,
    ext_proc: int | None = None,
) -> ManagedProcess:
    """An Envoy on `listener_port`: the canned answer itself (no upstream), or a proxy;
    with `ext_proc` (a bare_ext_proc port), a proxy only for requests it routes."""
    clusters = [] if upstream is None else [_cluster("upstream", upstream)]
    filters: list[hcm_pb2.HttpFilter] = []
    route = route_components_pb2.Route(match=route_components_pb2.RouteMatch(prefix="/"))
    if upstream is None:
        route.direct_response.status = 200
        route.direct_response.body.inline_string = COMPLETION
    else:
        route.route.cluster = "upstream"
    routes = [route]
    if ext_proc is not None:
        clusters.append(_cluster(EXT_PROC_CLUSTER, ext_proc, http2=True))
        filters.append(_ext_proc_filter())
        route.match.headers.add(name=ROUTE_HEADER, present_match=True)
        unrouted = route_components_pb2.Route(
            match=route_components_pb2.RouteMatch(prefix="/"),
            direct_response=route_components_pb2.DirectResponseAction(status=404),
        )
        routes.append(unrouted)
    admin = free_port()
    config = workdir / f"{name}.yaml"
    config.write_text(_bootstrap(admin, _listener(listener_port, routes, filters), clusters))
    envoy = ManagedProcess(name, envoy_argv(config))
    envoy.wait_until(lambda: envoy_live(admin) and port_open(listener_port), f"{name} is up")
    return envoy
