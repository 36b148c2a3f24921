"""Admin-ish endpoints bind loopback unless told otherwise: the control plane's xDS and
health/metrics/status ports, the sidecar's ext_proc and metrics ports, and Envoy's
admin (from `meshroute bootstrap`'s defaults), all started with no address flag.

In a pod the manifests pass 0.0.0.0 explicitly where the kubelet or other pods must
connect (tests/unit/test_deploy_manifests.py checks those).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from tests.support.configs import quickstart_config
from tests.support.processes import ManagedProcess, envoy_argv, free_port, meshroute_argv, port_open
from tests.support.sockets import listening
from tests.support.stack import ControlPlaneProcess, envoy_live, grpc_serving


def test_every_component_listens_on_loopback_by_default(
    tmp_path: Path, demo_agents_port: int
) -> None:
    gateway_port, internal_port = free_port(), free_port()
    config = quickstart_config(tmp_path / "config", gateway_port, demo_agents_port)
    control_plane = ControlPlaneProcess(config, internal_port, [])
    processes = [control_plane.process]
    try:
        ext_proc_port, metrics_port, admin_port = free_port(), free_port(), free_port()
        ext_proc = ManagedProcess(
            "ext-proc",
            meshroute_argv(
                "ext-proc",
                "--port",
                str(ext_proc_port),
                "--metrics-port",
                str(metrics_port),
                "--xds-address",
                f"127.0.0.1:{control_plane.port}",
            ),
        )
        processes.append(ext_proc)
        ext_proc.wait_until(lambda: grpc_serving(ext_proc_port), "ext_proc is SERVING")
        bootstrap = subprocess.run(
            meshroute_argv(
                "bootstrap",
                "--admin-port",
                str(admin_port),
                "--xds-address",
                f"127.0.0.1:{control_plane.port}",
                "--ext-proc-port",
                str(ext_proc_port),
                "--health-port",
                str(free_port()),
            ),
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        (tmp_path / "envoy.yaml").write_text(bootstrap)
        envoy = ManagedProcess("envoy", envoy_argv(tmp_path / "envoy.yaml"))
        processes.append(envoy)
        envoy.wait_until(lambda: envoy_live(admin_port), "Envoy is LIVE")
        envoy.wait_until(lambda: port_open(gateway_port), "the gateway is open")
        assert httpx.get(f"http://127.0.0.1:{control_plane.health_port}/readyz").status_code == 200

        expected = {
            control_plane.process: {control_plane.port, control_plane.health_port},
            ext_proc: {ext_proc_port, metrics_port},
            envoy: {admin_port},
        }
        for process, ports in expected.items():
            bound = listening(process.process.pid)
            assert ports <= {port for _, port in bound}, (process.name, bound)
            assert {address for address, _ in bound} == {"127.0.0.1"}, (process.name, bound)
    finally:
        for process in reversed(processes):
            process.stop()
