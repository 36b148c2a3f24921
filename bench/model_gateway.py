"""The model gateway's two paths, against Envoy straight to the same upstream, in one run.

The upstream is an Envoy answering a canned chat completion itself (direct
response), so it never limits the measurement. Three ways to it:

* direct: a plain Envoy proxy, nothing else;
* fast path: meshroute, a model named as its provider names it (json_to_metadata and
  a route inside Envoy; Python never sees the request);
* alias path: meshroute, an alias (the sidecar decides and rewrites the body).

Each at concurrency 1 and 32, with the closed-loop generator in bench/load.py.

    .venv/bin/python -m bench.model_gateway [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import textwrap
from collections.abc import Sequence
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

from bench.common import machine
from bench.load import LoadResult, post_request, run_load
from meshroute.control_plane.bootstrap import message_to_dict, to_yaml
from meshroute.control_plane.translate.protos import duration, pack
from meshroute.envoy_binary import envoy_binary
from tests.support.configs import provider_yaml
from tests.support.processes import ManagedProcess, free_port, port_open
from tests.support.stack import UpStack, envoy_live

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
    envoy = ManagedProcess(
        name,
        [
            envoy_binary(),
            "-c",
            str(config),
            "-l",
            "warning",
            "--concurrency",
            "1",
            "--disable-hot-restart",
            "--use-dynamic-base-id",
        ],
    )
    envoy.wait_until(lambda: envoy_live(admin) and port_open(listener_port), f"{name} is up")
    return envoy


def gateway_config(directory: Path, upstream: int, gateway_port: int) -> None:
    (directory / "bench.yaml").write_text(
        provider_yaml(
            "bench",
            f"http://127.0.0.1:{upstream}",
            {"bench-model": "bench-model", "other": "bench-model"},
        )
        + "---\n"
        + textwrap.dedent(
            f"""\
            apiVersion: meshroute.io/v1alpha1
            kind: Gateway
            metadata: {{name: llm}}
            spec:
              type: model
              port: {gateway_port}
              defaultModel: bench-model
              modelAliases: {{quick: bench-model}}
            """
        )
    )


def body(model: str) -> bytes:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()


def row(name: str, result: LoadResult, direct: LoadResult) -> str:
    ratio = result.throughput / direct.throughput
    return (
        f"{name:<30}{result.throughput:>10.0f}{result.p50:>9.2f}{result.p99:>9.2f}"
        f"{ratio:>10.2f}x{result.p50 - direct.p50:>+10.2f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000, help="per target and concurrency")
    args = parser.parse_args(argv)
    upstream_port, direct_port, gateway_port = free_port(), free_port(), free_port()
    started: list[ManagedProcess] = []
    stack: UpStack | None = None
    lines = []
    try:
        with tempfile.TemporaryDirectory(prefix="meshroute-bench-") as workdir:
            work = Path(workdir)
            started.append(start_envoy("upstream", work, upstream_port, None))
            started.append(start_envoy("direct", work, direct_port, upstream_port))
            config = work / "config"
            config.mkdir()
            gateway_config(config, upstream_port, gateway_port)
            stack = UpStack([config], {"llm": gateway_port})
            path = "/v1/chat/completions"
            targets = {
                "direct (plain Envoy)": post_request(
                    "127.0.0.1", direct_port, path, body("bench-model")
                ),
                "fast path (Envoy only)": post_request(
                    "127.0.0.1", gateway_port, path, body("bench-model")
                ),
                "alias path (sidecar)": post_request(
                    "127.0.0.1", gateway_port, path, body("quick")
                ),
            }
            ports = {"direct (plain Envoy)": direct_port}
            for concurrency in (1, 32):
                results = {}
                for name, request in targets.items():
                    port = ports.get(name, gateway_port)
                    count = args.requests if concurrency > 1 else args.requests // 4
                    asyncio.run(
                        run_load("127.0.0.1", port, request, connections=concurrency, requests=200)
                    )
                    results[name] = asyncio.run(
                        run_load(
                            "127.0.0.1", port, request, connections=concurrency, requests=count
                        )
                    )
                    bad = {s: n for s, n in results[name].statuses.items() if s != 200}
                    if bad:
                        print(f"ERROR {name}: non-200 answers {bad}", file=sys.stderr)
                        return 1
                direct = results["direct (plain Envoy)"]
                lines.append(f"concurrency {concurrency}:")
                header = ("target", "req/s", "p50 ms", "p99 ms", "vs direct", "+p50 ms")
                lines.append("{:<30}{:>10}{:>9}{:>9}{:>11}{:>10}".format(*header))
                lines += [row(name, result, direct) for name, result in results.items()]
    finally:
        if stack is not None:
            stack.stop()
        for process in started:
            process.stop()
    print(
        "meshroute model gateway: fast path and alias path vs Envoy straight to the same upstream"
    )
    print("\n".join(lines))
    print("machine: " + ", ".join(f"{k} {v}" for k, v in machine().items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
