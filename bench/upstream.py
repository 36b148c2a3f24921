"""The upstream every throughput bench talks to, and a plain Envoy in front of it.

The upstream is an Envoy answering a canned chat completion itself (a direct response),
so it is never what limits a measurement; "direct" is a plain Envoy proxy to it, the
baseline every path is a ratio of.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from meshroute.control_plane.bootstrap import message_to_dict, to_yaml
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


def _listener(port: int, routes: list[route_components_pb2.Route]) -> listener_pb2.Listener:
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix="bench",
        route_config=route_pb2.RouteConfiguration(
            virtual_hosts=[
                route_components_pb2.VirtualHost(name="bench", domains=["*"], routes=routes)
            ]
        ),
        http_filters=[
            hcm_pb2.HttpFilter(
                name="envoy.filters.http.router", typed_config=pack(router_pb2.Router())
            )
        ],
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


def _bootstrap(admin_port: int, listener: listener_pb2.Listener, upstream: int | None) -> str:
    bootstrap = bootstrap_pb2.Bootstrap()
    bootstrap.admin.address.socket_address.address = "127.0.0.1"
    bootstrap.admin.address.socket_address.port_value = admin_port
    bootstrap.static_resources.listeners.append(listener)
    if upstream is not None:
        bootstrap.static_resources.clusters.append(
            cluster_pb2.Cluster(
                name="upstream",
                type=cluster_pb2.Cluster.STATIC,
                connect_timeout=duration(timedelta(seconds=1)),
                load_assignment=endpoint_pb2.ClusterLoadAssignment(
                    cluster_name="upstream",
                    endpoints=[
                        endpoint_components_pb2.LocalityLbEndpoints(
                            lb_endpoints=[
                                endpoint_components_pb2.LbEndpoint(
                                    endpoint=endpoint_components_pb2.Endpoint(
                                        address=address_pb2.Address(
                                            socket_address=address_pb2.SocketAddress(
                                                address="127.0.0.1", port_value=upstream
                                            )
                                        )
                                    )
                                )
                            ]
                        )
                    ],
                ),
            )
        )
    return to_yaml(message_to_dict(bootstrap))


def start_envoy(
    name: str, workdir: Path, listener_port: int, upstream: int | None
) -> ManagedProcess:
    """An Envoy on `listener_port`: the canned answer itself (no upstream), or a proxy."""
    if upstream is None:
        route = route_components_pb2.Route(
            match=route_components_pb2.RouteMatch(prefix="/"),
            direct_response=route_components_pb2.DirectResponseAction(status=200),
        )
        route.direct_response.body.inline_string = COMPLETION
    else:
        route = route_components_pb2.Route(
            match=route_components_pb2.RouteMatch(prefix="/"),
            route=route_components_pb2.RouteAction(cluster="upstream"),
        )
    admin = free_port()
    config = workdir / f"{name}.yaml"
    config.write_text(_bootstrap(admin, _listener(listener_port, [route]), upstream))
    envoy = ManagedProcess(name, envoy_argv(config))
    envoy.wait_until(lambda: envoy_live(admin) and port_open(listener_port), f"{name} is up")
    return envoy
