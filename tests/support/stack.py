"""Running meshroute for integration tests, two ways.

`UpStack` runs the public `meshroute up` command. `ComponentStack` runs the parts
as a Kubernetes pod would (ext_proc and Envoy as processes) around a control plane
inside the test process, so tests can push snapshots Envoy must reject, or stop the
control plane, and watch what each side does.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from meshroute.control_plane.bootstrap import BootstrapSettings, XdsProtocol, render_bootstrap
from meshroute.control_plane.config import load_config
from meshroute.control_plane.credentials import read_credentials
from meshroute.control_plane.translate.deployment import DeploymentSettings
from meshroute.control_plane.translate.snapshot import Resources, translate
from meshroute.control_plane.xds.delta import DeltaTypeState
from meshroute.control_plane.xds.server import (
    AdsStream,
    AggregatedDiscoveryService,
    start_xds_server,
)
from meshroute.control_plane.xds.snapshot import SnapshotCache
from meshroute.control_plane.xds.sotw import TypeState
from meshroute.xds_tls import XdsClientTls
from tests.support.processes import ManagedProcess, envoy_argv, free_port, meshroute_argv, port_open

T = TypeVar("T")


class UpStack:
    """`meshroute up PATH...` with every port chosen free."""

    def __init__(
        self,
        paths: list[Path],
        gateway_ports: dict[str, int],
        env: dict[str, str] | None = None,
        ext_proc_workers: int = 1,
    ) -> None:
        """`env`: extra environment for `up` and so for its children (provider keys)."""
        self.paths = paths
        self.gateway_ports = gateway_ports
        self.admin_port = free_port()
        self.xds_port = free_port()
        self.ext_proc_port = 0 if ext_proc_workers > 1 else free_port()  # 0: a free range
        self.internal_port = free_port()
        self.health_port = free_port()
        self.metrics_port = free_port()
        self.process = ManagedProcess(
            "meshroute up",
            meshroute_argv(
                "up",
                *map(str, paths),
                "--health-port",
                str(self.health_port),
                "--metrics-port",
                str(self.metrics_port),
                "--admin-port",
                str(self.admin_port),
                "--xds-port",
                str(self.xds_port),
                "--ext-proc-port",
                str(self.ext_proc_port),
                "--internal-port",
                str(self.internal_port),
                "--envoy-concurrency",
                "1",
                "--ext-proc-workers",
                str(ext_proc_workers),
            ),
            env=env,
        )
        try:
            self.process.wait_for_line(r"^meshroute is up\.")
        except BaseException:
            self.process.stop()  # nothing left running when it never came up
            raise

    def url(self, gateway: str, path: str = "/v1/chat/completions") -> str:
        return f"http://127.0.0.1:{self.gateway_ports[gateway]}{path}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def stop(self) -> int:
        return self.process.stop()


class ControlPlaneThread:
    """The real xDS server and snapshot cache, on an event loop of their own."""

    def __init__(self, resources: Resources) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.cache = SnapshotCache()
        self.cache_version = self.call(self._set, resources)
        self._server, self.service, self.port = self.run(
            start_xds_server(self.cache, "127.0.0.1", 0)
        )

    def _set(self, resources: Resources) -> str:
        return self.cache.set_resources(resources).version

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    def call(self, function: Callable[..., T], *args: Any) -> T:
        future: Future[T] = Future()

        def invoke() -> None:
            try:
                future.set_result(function(*args))
            except BaseException as error:  # handed to the caller
                future.set_exception(error)

        self._loop.call_soon_threadsafe(invoke)
        return future.result(timeout=30)

    def push(self, resources: Resources) -> str:
        return self.call(self._set, resources)

    def type_states(self, node_prefix: str) -> dict[str, TypeState | DeltaTypeState]:
        """A copy of the per-type stream state of the (one) node whose id starts so
        (SotW or incremental: both record acked_version, nacked_version, nack_detail)."""
        stream = self.stream(node_prefix)
        return dict(stream.types) if stream is not None else {}

    def stream(self, node_prefix: str) -> AdsStream | None:
        """A copy of the stream of the (one) node whose id starts so, if it is connected."""

        def collect() -> AdsStream | None:
            service: AggregatedDiscoveryService = self.service
            for stream in service.streams.values():
                if stream.node_id and stream.node_id.startswith(node_prefix):
                    return copy.deepcopy(stream)
            return None

        return self.call(collect)

    def stop(self) -> None:
        self.run(self._server.stop(grace=0))

    def restart(self, resources: Resources) -> None:
        """Serve again, on the same port, after `stop`: a control plane coming back
        (with a new process's first version of `resources`)."""
        self.cache = SnapshotCache()
        self.cache_version = self.call(self._set, resources)
        self._server, self.service, _ = self.run(
            start_xds_server(self.cache, "127.0.0.1", self.port)
        )

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)


def grpc_serving(port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1
            )
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def envoy_live(admin_port: int) -> bool:
    try:
        reply = httpx.get(f"http://127.0.0.1:{admin_port}/ready", timeout=2)
    except httpx.HTTPError:
        return False
    return reply.status_code == 200 and reply.text.strip() == "LIVE"


def start_envoy(path: Path, settings: BootstrapSettings) -> ManagedProcess:
    """Envoy from the bootstrap these settings render (written to `path`)."""
    path.write_text(render_bootstrap(settings))
    return ManagedProcess("envoy", envoy_argv(path))


def xds_client_tls_flags(tls: XdsClientTls | None) -> list[str]:
    """`meshroute ext-proc`'s flags for these xDS TLS settings."""
    if tls is None:
        return []
    flags = ["--xds-server-ca", tls.server_ca_file]
    if tls.cert_file is not None and tls.key_file is not None:
        flags += ["--xds-client-cert", tls.cert_file, "--xds-client-key", tls.key_file]
    if tls.server_name is not None:
        flags += ["--xds-server-name", tls.server_name]
    return flags


class ControlPlaneProcess:
    """`meshroute control-plane PATH` as an operator runs it, on free loopback ports
    (it binds loopback by default), with `extra_args` (e.g. the TLS flags)."""

    def __init__(
        self,
        config_dir: Path,
        internal_port: int,
        extra_args: list[str],
        env: dict[str, str] | None = None,
    ) -> None:
        """Returns once it serves its first config."""
        self.port = free_port()
        self.health_port = free_port()
        self.process = ManagedProcess(
            "control-plane",
            meshroute_argv(
                "control-plane",
                str(config_dir),
                "--port",
                str(self.port),
                "--health-port",
                str(self.health_port),
                "--gateway-address",
                "127.0.0.1",
                "--internal-port",
                str(internal_port),
                *extra_args,
            ),
            env=env,
        )
        try:
            self.process.wait_for_line(r"serving config version \S+ over ADS")
        except BaseException:
            self.process.stop()
            raise

    def clients(self) -> list[dict[str, Any]]:
        """Who is connected, from its `GET /status`."""
        reply = httpx.get(f"http://127.0.0.1:{self.health_port}/status", timeout=10)
        reply.raise_for_status()
        clients: list[dict[str, Any]] = reply.json()["clients"]
        return clients

    def stop(self) -> int:
        return self.process.stop()


class DataPlane:
    """`meshroute ext-proc` and Envoy, as processes, the way a pod runs them beside an
    application: both fed by the control plane at `xds_port`, every listener on loopback."""

    def __init__(
        self,
        xds_port: int,
        workdir: Path,
        wait_for_ports: list[int],
        xds_protocol: XdsProtocol = "sotw",
        xds_tls: XdsClientTls | None = None,
    ) -> None:
        """Returns once Envoy is LIVE and has opened `wait_for_ports`. `xds_tls`: both
        reach the control plane over TLS with these files."""
        self.xds_port = xds_port
        self.xds_tls = xds_tls
        self.ext_proc_port = free_port()
        self.metrics_port = free_port()
        self.admin_port = free_port()
        self.ext_proc: ManagedProcess | None = None
        self.start_ext_proc()
        self.envoy = start_envoy(
            workdir / "envoy.yaml",
            BootstrapSettings(
                node_id="test-envoy",
                admin_port=self.admin_port,
                xds_port=xds_port,
                ext_proc_port=self.ext_proc_port,
                xds_protocol=xds_protocol,
                health_port=free_port(),
                xds_tls=xds_tls,
            ),
        )
        try:
            self.envoy.wait_until(lambda: envoy_live(self.admin_port), "Envoy is LIVE")
            for port in wait_for_ports:
                self.envoy.wait_until(functools.partial(port_open, port), f"port {port} is open")
        except BaseException:
            self.close()
            raise

    def start_ext_proc(self) -> None:
        self.ext_proc = ManagedProcess(
            "ext-proc",
            meshroute_argv(
                "ext-proc",
                "--address",
                "127.0.0.1",
                "--port",
                str(self.ext_proc_port),
                "--xds-address",
                f"127.0.0.1:{self.xds_port}",
                "--node-id",
                "test-ext-proc",
                "--metrics-port",
                str(self.metrics_port),
                *xds_client_tls_flags(self.xds_tls),
            ),
        )
        self.ext_proc.wait_until(lambda: grpc_serving(self.ext_proc_port), "ext_proc is SERVING")

    def close(self) -> None:
        envoy = getattr(self, "envoy", None)
        if envoy is not None:
            envoy.stop()
        if self.ext_proc is not None:
            self.ext_proc.stop()


class ComponentStack:
    """Control plane (in-process) + `meshroute ext-proc` + Envoy, each separately stoppable.

    Serves the config in `config_dir`, with every listener on loopback. Envoy speaks
    State-of-the-World ADS, or incremental ADS with `xds_protocol="delta"`.
    """

    def __init__(self, config_dir: Path, workdir: Path, xds_protocol: XdsProtocol = "sotw") -> None:
        self.config_dir = config_dir
        self.settings = DeploymentSettings(bind_address="127.0.0.1", internal_port=free_port())
        config = load_config([config_dir])
        self.gateway_ports = {name: gateway.spec.port for name, gateway in config.gateways.items()}
        self.control_plane = ControlPlaneThread(self.translate())
        try:
            self.data_plane = DataPlane(
                self.control_plane.port,
                workdir,
                [*self.gateway_ports.values(), self.settings.internal_port],
                xds_protocol,
            )
        except BaseException:
            self.control_plane.close()
            raise
        self.ext_proc_port = self.data_plane.ext_proc_port
        self.admin_port = self.data_plane.admin_port

    @property
    def ext_proc(self) -> ManagedProcess | None:
        return self.data_plane.ext_proc

    def start_ext_proc(self) -> None:
        self.data_plane.start_ext_proc()

    def translate(self) -> Resources:
        """The config directory as it is now, as resources for this stack (with the
        providers' keys read from this process's environment, as the control plane
        reads its own)."""
        config = load_config([self.config_dir])
        return translate(config, self.settings, read_credentials(config, self.settings.secrets_dir))

    def url(self, gateway: str, path: str = "/v1/chat/completions") -> str:
        return f"http://127.0.0.1:{self.gateway_ports[gateway]}{path}"

    def close(self) -> None:
        try:
            self.data_plane.close()
        finally:
            self.control_plane.close()
