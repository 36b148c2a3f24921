"""`meshroute up`: control plane, ext_proc, Envoy (and, for the quickstart, demo agents
and demo model backends)
on this machine, in the foreground, as separate processes, just as they run in a pod.

Each child is started, then waited for until it is really ready (not for a fixed
time): the control plane when its port answers, the ext_proc server when its gRPC
health says SERVING (it has routing tables), Envoy when its admin says LIVE and
every gateway port accepts connections. Ctrl-C or SIGTERM stops every child; a
child that dies on its own is reported, the rest are stopped, and `up` exits 1.
The control plane follows the config files as they change; SIGHUP, passed on to it,
reloads them too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from meshroute.api import contract
from meshroute.control_plane.bootstrap import BootstrapSettings, XdsProtocol, render_bootstrap
from meshroute.control_plane.config import Config
from meshroute.control_plane.config.model import Gateway
from meshroute.envoy_binary import envoy_binary
from meshroute.lifecycle import on_signal, wait_for_stop_signal
from meshroute.supervisor import Child, Supervisor, keep_running, say

READY_TIMEOUT = 60.0
DEMO_AGENTS_PORT = 9100
DEMO_MODELS_PORT = 9200
# The quickstart's demo keys: the demo model backends demand them and Envoy injects
# them, so the quickstart shows credential injection working, offline. Not secrets.
DEMO_KEYS = {
    "DEMO_OPENAI_API_KEY": "sk-demo-openai-not-a-secret",
    "DEMO_ANTHROPIC_API_KEY": "sk-ant-demo-not-a-secret",
}


@dataclass(frozen=True)
class UpOptions:
    paths: list[Path]
    quickstart: bool
    address: str = "127.0.0.1"
    """Where gateways listen."""
    admin_port: int = 9901
    xds_port: int = 18000
    internal_port: int = 18010
    ext_proc_port: int = 18001
    ext_proc_workers: int = 1
    """Sidecar processes, on ext_proc_port and the ports after it."""
    health_port: int = 18080
    """The control plane's /metrics, /status, /healthz and /readyz."""
    metrics_port: int = 18081
    """The sidecar's /metrics."""
    log_level: str = "info"
    log_format: str = "text"
    envoy_log_level: str = "warning"
    xds_protocol: XdsProtocol = "sotw"
    envoy_concurrency: int | None = None


class UpFailed(Exception):
    """`up` could not bring everything up; the message says what and why."""


def _meshroute(command: str, *args: str, **flags: object) -> list[str]:
    """argv for `meshroute COMMAND ARGS --flag value ...` in this same Python."""
    argv = [sys.executable, "-m", "meshroute", command, *args]
    for flag, value in flags.items():
        argv += [f"--{flag.replace('_', '-')}", str(value)]
    return argv


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _check_port_free(address: str, port: int, what: str) -> None:
    problem = _bind_problem(address, port)
    if problem is not None:
        raise UpFailed(
            f"port {port} ({what}) on {address} is not free: {problem}. "
            "Stop whatever uses it, or choose another port."
        )


def _bind_problem(address: str, port: int) -> str | None:
    """Why `port` cannot be listened on now, or None."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as error:
            return error.strerror or str(error)
    return None


async def _port_open(address: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(address, port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _wait_until(what: str, child: Child, ready: Callable[[], Awaitable[bool]]) -> None:
    """Poll `ready` until true; fail fast if the child exits, or after READY_TIMEOUT."""
    deadline = asyncio.get_running_loop().time() + READY_TIMEOUT
    while not await ready():
        if child.process.returncode is not None:
            raise UpFailed(
                f"{child.name} exited with code {child.process.returncode} while starting"
            )
        if asyncio.get_running_loop().time() > deadline:
            raise UpFailed(f"{what} was not ready after {READY_TIMEOUT:.0f}s")
        await asyncio.sleep(0.05)


async def _grpc_serving(address: str, port: int) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with grpc.aio.insecure_channel(f"{address}:{port}") as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1
            )
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def _envoy_live(session: aiohttp.ClientSession, admin: str) -> bool:
    try:
        async with session.get(f"{admin}/ready") as response:
            return response.status == 200 and (await response.text()).strip() == "LIVE"
    except aiohttp.ClientError:
        return False


def _resolve_port(port: int) -> int:
    return _free_port() if port == 0 else port


def _free_range(count: int) -> int:
    """The first of `count` consecutive ports that are free now."""
    while True:
        first = _free_port()
        if all(_bind_problem("127.0.0.1", first + i) is None for i in range(1, count)):
            return first


async def bring_up(options: UpOptions, config: Config, supervisor: Supervisor) -> list[str]:
    """Start everything; return the lines that tell the user where it all is."""
    loopback = "127.0.0.1"
    admin_port = _resolve_port(options.admin_port)
    xds_port = _resolve_port(options.xds_port)
    internal_port = _resolve_port(options.internal_port)
    workers = options.ext_proc_workers
    ext_proc_port = options.ext_proc_port or _free_range(workers)
    health_port = _resolve_port(options.health_port)
    metrics_port = _resolve_port(options.metrics_port)
    ports = [
        (loopback, admin_port, "Envoy admin"),
        (loopback, xds_port, "control plane xDS"),
        (loopback, internal_port, "Envoy internal listener"),
        *((loopback, ext_proc_port + i, f"ext_proc worker {i}") for i in range(workers)),
        (loopback, health_port, "control plane metrics and status"),
        (loopback, metrics_port, "ext_proc metrics"),
    ]
    ports += [
        (options.address, gateway.spec.port, f"Gateway/{gateway.name}")
        for gateway in config.gateways.values()
    ]
    if options.quickstart:
        ports.append((loopback, DEMO_AGENTS_PORT, "quickstart demo agents"))
        ports.append((loopback, DEMO_MODELS_PORT, "quickstart demo models"))
    for address, port, what in ports:
        _check_port_free(address, port, what)

    if options.quickstart:
        demo = await supervisor.start(
            "demo-agents",
            _meshroute(
                "demo-agents",
                address=loopback,
                port=DEMO_AGENTS_PORT,
                log_level=options.log_level,
            ),
        )
        await _wait_until("the demo agents", demo, lambda: _port_open(loopback, DEMO_AGENTS_PORT))
        models = await supervisor.start(
            "demo-models",
            _meshroute(
                "demo-models",
                "--require-keys",
                address=loopback,
                port=DEMO_MODELS_PORT,
                log_level=options.log_level,
            ),
            env=DEMO_KEYS,
        )
        await _wait_until("the demo models", models, lambda: _port_open(loopback, DEMO_MODELS_PORT))

    control_plane = await supervisor.start(
        "control-plane",
        _meshroute(
            "control-plane",
            *map(str, options.paths),
            address=loopback,
            port=xds_port,
            gateway_address=options.address,
            internal_port=internal_port,
            health_port=health_port,
            log_level=options.log_level,
            log_format=options.log_format,
        ),
        env=DEMO_KEYS if options.quickstart else None,
    )
    # It opens its port only once the config is loaded and translated.
    await _wait_until("the control plane", control_plane, lambda: _port_open(loopback, xds_port))

    ext_proc = await supervisor.start(
        "ext-proc",
        _meshroute(
            "ext-proc",
            address=loopback,
            port=ext_proc_port,
            workers=workers,
            xds_address=f"{loopback}:{xds_port}",
            metrics_address=loopback,
            metrics_port=metrics_port,
            log_level=options.log_level,
            log_format=options.log_format,
        ),
    )

    bootstrap = supervisor.workdir / "envoy.yaml"
    bootstrap.write_text(
        render_bootstrap(
            BootstrapSettings(
                node_id=f"meshroute-up-{os.getpid()}",
                admin_address=loopback,
                admin_port=admin_port,
                xds_address=loopback,
                xds_port=xds_port,
                ext_proc_address=loopback,
                ext_proc_port=ext_proc_port,
                ext_proc_workers=workers,
                xds_protocol=options.xds_protocol,
                health_port=_free_port(),  # for probes from outside a pod; unused here
            )
        )
    )
    envoy_argv = [
        envoy_binary(),
        "-c",
        str(bootstrap),
        "--log-level",
        options.envoy_log_level,
        # Envoy warns at every config push that the usage filters' protos are marked
        # work in progress (sse_to_metadata); those warnings are all "misc" says.
        "--component-log-level",
        "misc:error",
        "--disable-hot-restart",
        "--use-dynamic-base-id",
    ]
    if options.envoy_concurrency:
        envoy_argv += ["--concurrency", str(options.envoy_concurrency)]
    envoy = await supervisor.start("envoy", envoy_argv)
    # Every child is forked by now; only from here on does this process use gRPC
    # (whose threads do not mix with fork).
    for port in range(ext_proc_port, ext_proc_port + workers):
        await _wait_until(
            f"the ext_proc server on port {port}",
            ext_proc,
            functools.partial(_grpc_serving, loopback, port),
        )
    admin = f"http://{loopback}:{admin_port}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        await _wait_until("Envoy", envoy, lambda: _envoy_live(session, admin))
    host = loopback if options.address in ("0.0.0.0", "::") else options.address
    listening = [
        (f"Gateway/{g.name} on port {g.spec.port}", host, g.spec.port)
        for g in config.gateways.values()
    ]
    listening.append((f"the internal listener on port {internal_port}", loopback, internal_port))
    for what, address, port in listening:
        await _wait_until(what, envoy, functools.partial(_port_open, address, port))

    return _banner(
        options,
        config,
        host=host,
        admin=admin,
        xds=f"{loopback}:{xds_port}",
        ext_proc=(
            f"127.0.0.1:{ext_proc_port}"
            if workers == 1
            else f"127.0.0.1:{ext_proc_port}-{ext_proc_port + workers - 1} ({workers} workers)"
        ),
        health=f"http://{loopback}:{health_port}",
        metrics=f"http://{loopback}:{metrics_port}/metrics",
    )


def _banner(
    options: UpOptions,
    config: Config,
    *,
    host: str,
    admin: str,
    xds: str,
    ext_proc: str,
    health: str,
    metrics: str,
) -> list[str]:
    """What the user needs to know once everything is up."""
    lines = ["meshroute is up."]
    for gateway in sorted(config.gateways.values(), key=lambda g: g.spec.port):
        base = f"http://{host}:{gateway.spec.port}"
        if gateway.spec.type == "agent":
            where = f"{base}{contract.CHAT_COMPLETIONS_PATH}"
        else:
            where = f"{base}/v1  (OpenAI and Anthropic clients; GET {contract.MODELS_PATH})"
        lines.append(
            f"  gateway {gateway.name} ({gateway.spec.type}): {where}{_auth_note(gateway)}"
        )
    lines += [
        f"  Envoy admin:   {admin}/",
        f"  metrics:       {admin}/stats/prometheus (Envoy)",
        f"                 {health}/metrics (control plane)   {metrics} (ext_proc)",
        f"  control plane: {xds} (ADS)   ext_proc: {ext_proc}",
        "  status:        meshroute status",
    ]
    if options.quickstart:
        agents = next(g for g in config.gateways.values() if g.spec.type == "agent").spec.port
        models = next(g for g in config.gateways.values() if g.spec.type == "model").spec.port
        lines += [
            "Try:",
            f"  curl -s -i localhost:{agents}/v1/chat/completions \\",
            "    -H 'content-type: application/json' \\",
            '    -d \'{"messages":[{"role":"user","content":"Will it rain in Paris tomorrow?"}]}\'',
            f"  curl -s -i localhost:{models}/v1/chat/completions \\",
            "    -H 'content-type: application/json' \\",
            '    -d \'{"model":"smart","messages":[{"role":"user","content":"hello"}]}\'',
        ]
    else:
        lines.append(
            "Edits to the config files apply live; a broken edit is refused and logged. "
            f"(`kill -HUP {os.getpid()}` reloads too.)"
        )
    lines.append("Ctrl-C stops everything.")
    return lines


def _auth_note(gateway: Gateway) -> str:
    """What a caller of the Gateway must present, so a 401 surprises no one."""
    auth = gateway.spec.auth
    if auth is None:
        return ""
    if auth.jwt is not None:
        return f"  [auth: JWT from {auth.jwt.issuer}]"
    count = len(auth.api_keys or [])
    return f"  [auth: API key, {count} client{'s' if count != 1 else ''}]"


async def run_up(options: UpOptions, config: Config) -> int:
    supervisor = Supervisor()
    stop = asyncio.create_task(wait_for_stop_signal())
    on_signal(signal.SIGHUP, functools.partial(supervisor.forward, "control-plane", signal.SIGHUP))
    try:
        starting = asyncio.create_task(bring_up(options, config, supervisor))
        done, _ = await asyncio.wait({starting, stop}, return_when=asyncio.FIRST_COMPLETED)
        if stop in done:
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, UpFailed):
                await starting
            return 0
        try:
            lines = starting.result()
        except UpFailed as error:
            say(f"meshroute up failed: {error}")
            return 1
        say("\n".join(lines))
        return await keep_running(supervisor, stop)
    finally:
        stop.cancel()
        await supervisor.stop_all()
