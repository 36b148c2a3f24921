"""The `meshroute` command. Every flag has an environment twin, MESHROUTE_<FLAG>.

Subcommands import their machinery lazily so `meshroute validate` does not pay for
gRPC and Envoy's protobufs it never uses.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from meshroute import __version__
from meshroute.control_plane.translate.deployment import DEFAULT_SECRETS_DIR


def _env(flag: str, default: Any) -> Any:
    """The default for --flag: $MESHROUTE_FLAG if set, else `default`."""
    value = os.environ.get("MESHROUTE_" + flag.upper().replace("-", "_"))
    if value is None:
        return default
    return type(default)(value) if default is not None else value


def _add(parser: argparse.ArgumentParser, flag: str, default: Any, help_text: str) -> None:
    env_name = "MESHROUTE_" + flag.upper().replace("-", "_")
    parser.add_argument(
        f"--{flag}",
        default=_env(flag, default),
        type=type(default) if default is not None else str,
        help=f"{help_text} (env {env_name}; now %(default)s)",
    )


def _add_xds_protocol(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--xds-protocol",
        choices=["sotw", "delta"],
        default=_env("xds-protocol", "sotw"),
        help="how Envoy speaks xDS: State of the World or Incremental "
        "(env MESHROUTE_XDS_PROTOCOL; default sotw)",
    )


def _add_log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        default=_env("log-level", "info"),
        choices=["debug", "info", "warning", "error"],
        help="log level (env MESHROUTE_LOG_LEVEL; default info)",
    )
    parser.add_argument(
        "--log-format",
        default=_env("log-format", "text"),
        choices=["text", "json"],
        help="log lines for people, or one JSON object per line (env MESHROUTE_LOG_FORMAT; "
        "default text)",
    )


def _paths(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument(
        "paths",
        metavar="PATH",
        nargs="+" if required else "*",
        type=Path,
        help="a YAML file or a directory of them",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meshroute",
        description="Route requests across AI agents and LLMs, with Envoy on the data path.",
    )
    parser.add_argument("--version", action="version", version=f"meshroute {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser(
        "up", help="run control plane, ext_proc and Envoy here, in the foreground"
    )
    _paths(up, required=False)
    _add(up, "address", "127.0.0.1", "address gateways listen on")
    _add(up, "admin-port", 9901, "Envoy admin port on loopback (0 picks a free one)")
    _add(up, "xds-port", 18000, "control plane port on loopback (0 picks a free one)")
    _add(up, "ext-proc-port", 18001, "ext_proc port on loopback (0 picks a free one)")
    _add(
        up,
        "ext-proc-workers",
        0,
        "ext_proc processes, on the ext_proc port and the ones after it (0: one per two CPUs)",
    )
    _add(up, "internal-port", 18010, "Envoy's internal listener on loopback (0 picks a free one)")
    _add(
        up,
        "health-port",
        18080,
        "control plane /metrics and /status on loopback (0 picks a free one)",
    )
    _add(up, "metrics-port", 18081, "ext_proc /metrics on loopback (0 picks a free one)")
    _add(up, "envoy-log-level", "warning", "Envoy's log level")
    _add_xds_protocol(up)
    _add(up, "envoy-concurrency", 0, "Envoy worker threads (0: one per core)")
    _add_log_level(up)

    validate = commands.add_parser("validate", help="check config; exit 1 on any error")
    _paths(validate, required=True)

    render = commands.add_parser(
        "render", help="print the Envoy resources the control plane would serve, as YAML"
    )
    _paths(render, required=True)
    _add_deployment_flags(render)

    route = commands.add_parser("route", help="dry-run one routing decision and say why")
    _paths(route, required=True)
    route.add_argument("--message", required=True, help="the user message to route")
    route.add_argument("--gateway", help="which Gateway (default: each of them in turn)")

    _add_control_plane_command(commands)
    _add_status_command(commands)
    commands.add_parser(
        "crds",
        help="print the CustomResourceDefinitions for Agent, LLMProvider and Gateway "
        "(kubectl apply -f -)",
    )

    ext_proc = commands.add_parser("ext-proc", help="the routing sidecar Envoy calls")
    _add(
        ext_proc,
        "address",
        "127.0.0.1",
        "address the ext_proc server listens on (0.0.0.0 in a pod, for the kubelet's probe)",
    )
    _add(ext_proc, "port", 18001, "ext_proc port")
    _add(ext_proc, "xds-address", "127.0.0.1:18000", "the control plane, host:port")
    _add_xds_client_tls_flags(ext_proc, "this process reads")
    _add(ext_proc, "node-id", None, "xDS node id (default ext-proc-<host>-<pid>)")
    _add(ext_proc, "metrics-address", "127.0.0.1", "address /metrics (Prometheus) listens on")
    _add(ext_proc, "metrics-port", 18081, "port for /metrics (0: none)")
    _add(
        ext_proc,
        "workers",
        1,
        "sidecar processes, on PORT, PORT+1, ... (0: one per two CPUs); Envoy's ext_proc "
        "cluster must list them all",
    )
    _add_log_level(ext_proc)

    _add_bootstrap_command(commands)

    demo = commands.add_parser(
        "demo-agents", help="the quickstart's demo agents (OpenAI-compatible, offline)"
    )
    _add(demo, "address", "127.0.0.1", "address to listen on")
    _add(demo, "port", 9100, "port to listen on")
    _add_log_level(demo)

    models = commands.add_parser(
        "demo-models",
        help="the quickstart's demo model backends (OpenAI and Anthropic APIs, offline)",
    )
    _add(models, "address", "127.0.0.1", "address to listen on")
    _add(models, "port", 9200, "port to listen on")
    models.add_argument(
        "--require-keys",
        action="store_true",
        help="refuse requests without the keys in $DEMO_OPENAI_API_KEY and "
        "$DEMO_ANTHROPIC_API_KEY (as the real APIs would)",
    )
    _add_log_level(models)
    return parser


def _add_control_plane_command(commands: Any) -> None:
    control_plane = commands.add_parser(
        "control-plane",
        help="serve config to Envoy and ext_proc over ADS, from files or Kubernetes",
    )
    _paths(control_plane, required=False)
    control_plane.add_argument(
        "--source",
        choices=["files", "kubernetes"],
        default=_env("source", "files"),
        help="where config comes from: the PATHs (reloaded on change or SIGHUP), or "
        "Agent/LLMProvider/Gateway objects in a Kubernetes namespace "
        "(env MESHROUTE_SOURCE; default files)",
    )
    _add(
        control_plane,
        "address",
        "127.0.0.1",
        "address the xDS server and the health port listen on (0.0.0.0 in a pod)",
    )
    _add(control_plane, "port", 18000, "xDS port")
    _add(
        control_plane,
        "health-port",
        18080,
        "HTTP port for /healthz, /readyz, /metrics and /status (0: none)",
    )
    _add_xds_server_tls_flags(control_plane)
    _add_deployment_flags(control_plane)
    control_plane.add_argument(
        "--secrets-dir",
        default=_env("secrets-dir", DEFAULT_SECRETS_DIR),
        help="files source: where Secrets named by auth.secretRef are mounted, "
        "<dir>/<secret>/<key> (env MESHROUTE_SECRETS_DIR; default %(default)s)",
    )
    control_plane.add_argument(
        "--no-watch",
        action="store_true",
        default=_env("no-watch", "") not in ("", "0", "false"),
        help="files source: do not reload when the files change (SIGHUP still does; "
        "env MESHROUTE_NO_WATCH)",
    )
    _add(
        control_plane,
        "namespace",
        None,
        "kubernetes source: the namespace to watch (default: the pod's, or the "
        "kubeconfig context's)",
    )
    _add(
        control_plane,
        "kubeconfig",
        None,
        "kubernetes source: kubeconfig file (default: in-cluster service account in a "
        "pod, else $KUBECONFIG or ~/.kube/config)",
    )
    _add(control_plane, "context", None, "kubernetes source: kubeconfig context")
    _add_log_level(control_plane)


def _add_xds_server_tls_flags(parser: argparse.ArgumentParser) -> None:
    _add(
        parser,
        "xds-tls-cert",
        None,
        "serve xDS over TLS with this certificate (PEM chain); needs --xds-tls-key",
    )
    _add(parser, "xds-tls-key", None, "the private key of --xds-tls-cert (PEM, unencrypted)")
    _add(
        parser,
        "xds-client-ca",
        None,
        "require xDS clients to present a certificate signed by this CA (PEM): mutual TLS; "
        "needs --xds-tls-cert",
    )


def _add_xds_client_tls_flags(parser: argparse.ArgumentParser, whose: str) -> None:
    """The xDS client's TLS flags, for the sidecar and for Envoy's bootstrap; `whose`:
    who reads the files (for the help text)."""
    _add(
        parser,
        "xds-server-ca",
        None,
        f"reach the control plane over TLS, trusting this CA (PEM) for its certificate; "
        f"a path {whose}",
    )
    _add(
        parser,
        "xds-client-cert",
        None,
        "the certificate (PEM chain) to present to a control plane that requires one; "
        "needs --xds-client-key and --xds-server-ca",
    )
    _add(parser, "xds-client-key", None, "the private key of --xds-client-cert (PEM)")
    _add(
        parser,
        "xds-server-name",
        None,
        "the name the control plane's certificate must carry, also sent as TLS SNI "
        "(default: the host of --xds-address)",
    )


def _add_bootstrap_command(commands: Any) -> None:
    bootstrap = commands.add_parser(
        "bootstrap",
        help="print Envoy's bootstrap (envoy/bootstrap.yaml filled in), e.g. for a "
        "Kubernetes ConfigMap",
        description="Prints the bootstrap an Envoy beside an ext-proc sidecar starts from: "
        "its admin, readiness listener, the control plane (optionally over mutual TLS) "
        "and the ext_proc cluster. Files named by the TLS flags are Envoy's to read, "
        "where Envoy runs; they are not opened here.",
    )
    _add(bootstrap, "node-id", "meshroute-envoy", "xDS node id (Envoy's --service-node wins)")
    _add(bootstrap, "node-cluster", "meshroute", "xDS node cluster")
    _add(bootstrap, "admin-address", "127.0.0.1", "address Envoy's admin listens on")
    _add(bootstrap, "admin-port", 9901, "Envoy's admin port")
    _add(bootstrap, "xds-address", "127.0.0.1:18000", "the control plane, host:port")
    _add_xds_protocol(bootstrap)
    _add(bootstrap, "ext-proc-address", "127.0.0.1", "where the ext-proc sidecar listens")
    _add(bootstrap, "ext-proc-port", 18001, "the ext-proc sidecar's port")
    _add(bootstrap, "ext-proc-workers", 1, "sidecar processes, on the port and the ones after it")
    _add(
        bootstrap,
        "health-address",
        "127.0.0.1",
        "address of the GET /ready listener for probes (0.0.0.0 in a pod)",
    )
    _add(bootstrap, "health-port", 15021, "port of the GET /ready listener")
    _add_xds_client_tls_flags(bootstrap, "Envoy reads")


def _add_status_command(commands: Any) -> None:
    status = commands.add_parser(
        "status",
        help="show a running meshroute: xDS clients, upstream traffic, routing decisions",
        description="Reads the control plane's /status, Envoy's admin endpoint and the "
        "routing sidecar's metrics, each with a 2 s timeout, and prints what they say.",
        epilog="Exit status: 0 when every source answered; 1 when any was unreachable "
        "(its section says why; the others are still shown); 2 on bad arguments.",
    )
    _add(status, "control-plane", "http://127.0.0.1:18080", "the control plane's HTTP endpoint")
    _add(status, "admin", "http://127.0.0.1:9901", "Envoy's admin endpoint")
    _add(status, "ext-proc-metrics", "http://127.0.0.1:18081/metrics", "the sidecar's metrics")
    _add(status, "interval", 1.0, "seconds between the two samples rates are computed from")
    status.add_argument(
        "--json",
        action="store_true",
        default=_env("json", "") not in ("", "0", "false"),
        help="print the same data as JSON (env MESHROUTE_JSON)",
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    handler = _COMMANDS[args.command]
    try:
        code = handler(args)
    except _BadFlags as error:
        print(f"error: {error}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


# ------------------------------------------------------------------------ commands


def _load(paths: list[Path]) -> Any:
    """The checked config, or None after printing every error to stderr."""
    from meshroute.control_plane.config import ConfigErrors, load_config

    try:
        return load_config(paths)
    except ConfigErrors as errors:
        for error in errors.errors:
            print(f"error: {error}", file=sys.stderr)
        count = len(errors.errors)
        print(f"{count} error{'s' if count != 1 else ''} in config", file=sys.stderr)
        return None


def _deployment(args: argparse.Namespace) -> Any:
    """The deployment facts from flags, and Envoy's tracing from the OTEL_* environment."""
    from meshroute.control_plane.translate.deployment import (
        DeploymentSettings,
        tracing_from_environment,
    )

    try:
        tracing = tracing_from_environment(os.environ)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    return DeploymentSettings(
        bind_address=args.gateway_address,
        internal_port=args.internal_port,
        ca_bundle=args.ca_bundle,
        tracing=tracing,
    )


def _add_deployment_flags(parser: argparse.ArgumentParser) -> None:
    _add(parser, "gateway-address", "0.0.0.0", "address gateway listeners bind")
    _add(parser, "internal-port", 18010, "Envoy's loopback listener for the sidecar's calls")
    parser.add_argument(
        "--ca-bundle",
        default=_env("ca-bundle", None),
        help="CA bundle Envoy checks https upstreams against unless they name their own "
        "(env MESHROUTE_CA_BUNDLE; default: this system's)",
    )


class _BadFlags(Exception):
    """Flags that cannot work together or files that cannot serve: one line for stderr."""


def _xds_server_tls(args: argparse.Namespace, check_files: bool = True) -> Any:
    """The control plane's xDS TLS from its flags (None: plaintext); _BadFlags says why
    not, with the files checked so a bad mount fails at once."""
    from meshroute.xds_tls import TlsFileError, XdsServerTls, check_server_tls

    if args.xds_tls_cert is None and args.xds_tls_key is None:
        if args.xds_client_ca is not None:
            raise _BadFlags("--xds-client-ca needs --xds-tls-cert and --xds-tls-key")
        return None
    if args.xds_tls_cert is None or args.xds_tls_key is None:
        raise _BadFlags("--xds-tls-cert and --xds-tls-key go together: give both")
    tls = XdsServerTls(args.xds_tls_cert, args.xds_tls_key, args.xds_client_ca)
    if check_files:
        try:
            check_server_tls(tls)
        except TlsFileError as error:
            raise _BadFlags(str(error)) from None
    return tls


def _xds_client_tls(args: argparse.Namespace, check_files: bool) -> Any:
    """An xDS client's TLS from its flags (None: plaintext); _BadFlags says why not.
    `check_files`: read them now (the sidecar), or leave them to Envoy (bootstrap)."""
    from meshroute.xds_tls import TlsFileError, XdsClientTls, check_client_tls

    if args.xds_server_ca is None:
        given = [
            flag
            for flag, value in (
                ("--xds-client-cert", args.xds_client_cert),
                ("--xds-client-key", args.xds_client_key),
                ("--xds-server-name", args.xds_server_name),
            )
            if value is not None
        ]
        if given:
            raise _BadFlags(
                f"{', '.join(given)} needs --xds-server-ca (the CA the control plane's "
                "certificate is checked against)"
            )
        return None
    try:
        tls = XdsClientTls(
            server_ca_file=args.xds_server_ca,
            cert_file=args.xds_client_cert,
            key_file=args.xds_client_key,
            server_name=args.xds_server_name,
        )
        if check_files:
            check_client_tls(tls)
    except TlsFileError as error:
        raise _BadFlags(str(error)) from None
    return tls


def _host_port(value: str, flag: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port)."""
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise _BadFlags(f"{flag} wants HOST:PORT, not {value!r}")
    return host.strip("[]"), int(port)


def _cmd_validate(args: argparse.Namespace) -> int:
    config = _load(args.paths)
    if config is None:
        return 1
    print(
        f"config OK: {len(config.agents)} agent(s), {len(config.providers)} LLM provider(s), "
        f"{len(config.gateways)} gateway(s) in {', '.join(map(str, args.paths))}"
    )
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    from meshroute.control_plane.render import render_resources
    from meshroute.control_plane.translate.snapshot import translate

    config = _load(args.paths)
    if config is None:
        return 1
    resources = translate(config, _deployment(args))
    sys.stdout.write(render_resources(resources))
    return 0


def _cmd_route(args: argparse.Namespace) -> int:
    from meshroute.dry_run import explain_route

    config = _load(args.paths)
    if config is None:
        return 1
    gateways = config.gateways
    if not gateways:
        print("error: the config has no Gateway to route on", file=sys.stderr)
        return 1
    if args.gateway:
        gateway = gateways.get(args.gateway)
        if gateway is None:
            print(
                f"error: no Gateway named {args.gateway!r} (known: {', '.join(sorted(gateways))})",
                file=sys.stderr,
            )
            return 1
        chosen = [gateway]
    else:
        chosen = [gateways[name] for name in sorted(gateways)]

    async def explain_all() -> list[list[str]]:
        return [await explain_route(config, gateway, args.message) for gateway in chosen]

    print("\n\n".join("\n".join(lines) for lines in asyncio.run(explain_all())))
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    from meshroute.data_files import quickstart_dir
    from meshroute.ext_proc.workers import default_workers
    from meshroute.up import UpOptions, run_up

    quickstart = not args.paths
    paths = args.paths or [quickstart_dir()]
    config = _load(paths)
    if config is None:
        return 1
    options = UpOptions(
        paths=paths,
        quickstart=quickstart,
        address=args.address,
        admin_port=args.admin_port,
        xds_port=args.xds_port,
        internal_port=args.internal_port,
        ext_proc_port=args.ext_proc_port,
        ext_proc_workers=args.ext_proc_workers or default_workers(),
        health_port=args.health_port,
        metrics_port=args.metrics_port,
        log_level=args.log_level,
        log_format=args.log_format,
        envoy_log_level=args.envoy_log_level,
        xds_protocol=args.xds_protocol,
        envoy_concurrency=args.envoy_concurrency or None,
    )
    return asyncio.run(run_up(options, config))


def _cmd_control_plane(args: argparse.Namespace) -> int:
    from meshroute.control_plane.service import ConfigRejected, FileFeed, serve
    from meshroute.lifecycle import configure_logging

    configure_logging(args.log_level, args.log_format)
    tls = _xds_server_tls(args)
    settings = dataclasses.replace(_deployment(args), secrets_dir=args.secrets_dir)
    health = (args.address, args.health_port) if args.health_port else None
    if args.source == "kubernetes":
        if args.paths:
            print("error: the kubernetes source reads no files; drop the PATHs", file=sys.stderr)
            return 2
        return _serve_kubernetes(args, settings, health, tls)
    if not args.paths:
        print("error: name the config files or directories to serve", file=sys.stderr)
        return 2
    feed = FileFeed(args.paths, settings, not args.no_watch)
    try:
        serve(feed, args.address, args.port, health, tls)
    except ConfigRejected as rejected:
        print(f"error: config cannot be served: {rejected}", file=sys.stderr)
        return 1
    return 0


def _serve_kubernetes(args: argparse.Namespace, settings: Any, health: Any, tls: Any) -> int:
    from meshroute.control_plane.k8s.api import ClusterAccess, KubeApiError, connect
    from meshroute.control_plane.k8s.feed import KubernetesFeed
    from meshroute.control_plane.service import run_control_plane

    async def run() -> int:
        try:
            api, namespace = await connect(ClusterAccess(args.kubeconfig, args.context))
        except KubeApiError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        async with api:
            feed = KubernetesFeed(api, args.namespace or namespace, settings)
            await run_control_plane(feed, args.address, args.port, health, tls)
        return 0

    return asyncio.run(run())


def _cmd_ext_proc(args: argparse.Namespace) -> int:
    from meshroute.ext_proc.service import default_node_id, serve
    from meshroute.ext_proc.workers import default_workers, run_workers
    from meshroute.lifecycle import configure_logging

    configure_logging(args.log_level, args.log_format)
    tls = _xds_client_tls(args, check_files=True)
    metrics = (args.metrics_address, args.metrics_port) if args.metrics_port else None
    node_id = args.node_id or default_node_id()
    workers = args.workers or default_workers()
    if workers < 0:
        print("error: --workers must be 0 (automatic) or more", file=sys.stderr)
        return 2
    if workers > 1:
        flags = [f"--log-level={args.log_level}", f"--log-format={args.log_format}"]
        flags += _xds_client_tls_argv(args)
        return asyncio.run(
            run_workers(
                workers,
                address=args.address,
                port=args.port,
                xds_target=args.xds_address,
                node_id=node_id,
                metrics_endpoint=metrics,
                worker_flags=flags,
            )
        )
    serve(args.address, args.port, args.xds_address, node_id, metrics, xds_tls=tls)
    return 0


def _xds_client_tls_argv(args: argparse.Namespace) -> list[str]:
    """The xDS TLS flags as given, for the worker processes."""
    return [
        f"--{flag}={value}"
        for flag, value in (
            ("xds-server-ca", args.xds_server_ca),
            ("xds-client-cert", args.xds_client_cert),
            ("xds-client-key", args.xds_client_key),
            ("xds-server-name", args.xds_server_name),
        )
        if value is not None
    ]


def _cmd_bootstrap(args: argparse.Namespace) -> int:
    from meshroute.control_plane.bootstrap import BootstrapSettings, render_bootstrap

    xds_host, xds_port = _host_port(args.xds_address, "--xds-address")
    settings = BootstrapSettings(
        node_id=args.node_id,
        node_cluster=args.node_cluster,
        admin_address=args.admin_address,
        admin_port=args.admin_port,
        xds_address=xds_host,
        xds_port=xds_port,
        ext_proc_address=args.ext_proc_address,
        ext_proc_port=args.ext_proc_port,
        ext_proc_workers=args.ext_proc_workers,
        xds_protocol=args.xds_protocol,
        health_address=args.health_address,
        health_port=args.health_port,
        xds_tls=_xds_client_tls(args, check_files=False),
    )
    sys.stdout.write(render_bootstrap(settings))
    return 0


def _cmd_demo_models(args: argparse.Namespace) -> int:
    from meshroute.demo.models import serve
    from meshroute.lifecycle import configure_logging

    configure_logging(args.log_level, args.log_format)
    keys = None
    if args.require_keys:
        keys = {
            provider: os.environ[variable]
            for provider, variable in DEMO_KEY_VARIABLES.items()
            if os.environ.get(variable)
        }
    serve(args.address, args.port, keys)
    return 0


# The environment variables the quickstart's providers read their keys from.
DEMO_KEY_VARIABLES = {"openai": "DEMO_OPENAI_API_KEY", "anthropic": "DEMO_ANTHROPIC_API_KEY"}


def _cmd_demo_agents(args: argparse.Namespace) -> int:
    from meshroute.demo.agents import serve
    from meshroute.lifecycle import configure_logging

    configure_logging(args.log_level, args.log_format)
    serve(args.address, args.port)
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from meshroute.status import run_status

    return run_status(
        args.control_plane, args.admin, args.ext_proc_metrics, args.interval, args.json
    )


def _cmd_crds(_: argparse.Namespace) -> int:
    from meshroute.control_plane.k8s.crds import crds_yaml

    sys.stdout.write(crds_yaml())
    return 0


_COMMANDS = {
    "up": _cmd_up,
    "crds": _cmd_crds,
    "validate": _cmd_validate,
    "render": _cmd_render,
    "route": _cmd_route,
    "status": _cmd_status,
    "control-plane": _cmd_control_plane,
    "ext-proc": _cmd_ext_proc,
    "bootstrap": _cmd_bootstrap,
    "demo-agents": _cmd_demo_agents,
    "demo-models": _cmd_demo_models,
}
