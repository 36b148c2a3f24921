"""`meshroute control-plane` on its own: reload by SIGHUP, and Envoy's validation as the
last gate before a snapshot is served."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.support.configs import agent_yaml, documents, gateway_yaml, quickstart_config
from tests.support.processes import ManagedProcess, free_port, meshroute_argv


def control_plane(config: Path, *flags: str) -> ManagedProcess:
    process = ManagedProcess(
        "control-plane",
        meshroute_argv(
            "control-plane",
            str(config),
            "--address",
            "127.0.0.1",
            "--port",
            str(free_port()),
            "--internal-port",
            str(free_port()),
            *flags,
        ),
    )
    process.wait_for_line(r"serving config version 1 over ADS")
    return process


def test_sighup_reloads_when_watching_is_off(tmp_path: Path) -> None:
    config = quickstart_config(tmp_path, free_port(), free_port())
    process = control_plane(config, "--no-watch")
    try:
        (config / "extra.yaml").write_text(
            agent_yaml("extra", "An extra agent", "http://10.0.0.9:80")
        )
        mark = len(process.lines)
        process.signal(signal.SIGHUP)
        process.wait_for_line(r"config reloaded: now serving version 2", start=mark)
    finally:
        process.stop()


def test_envoys_own_validation_refuses_what_our_checks_let_through(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    good = documents(
        agent_yaml("secure", "Behind TLS", "https://secure.example.com"),
        gateway_yaml("g", free_port(), ["secure"], "secure"),
    )
    (config / "all.yaml").write_text(good)
    process = control_plane(config)
    try:
        mark = len(process.lines)
        # Well-formed YAML and schema, but not a certificate Envoy can load.
        bad_ca = "  tls: {caPem: 'not a certificate'}\n"
        (config / "all.yaml").write_text(good.replace("  path:", bad_ca + "  path:", 1))
        line = process.wait_for_line(r"config reload REJECTED", start=mark)
        assert "still serving version 1" in line
        assert "Envoy's validation refuses it" in line
        assert "trusted CA" in line
    finally:
        process.stop()


def test_a_config_that_cannot_be_served_stops_startup(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(gateway_yaml("g", 8000, ["nobody"], "nobody"))
    process = ManagedProcess(
        "control-plane", meshroute_argv("control-plane", str(tmp_path), "--port", str(free_port()))
    )
    try:
        assert process.process.wait(timeout=60) == 1
        process.wait_for_line(r"error: config cannot be served: 1 error: .*no Agent named 'nobody'")
    finally:
        process.stop()
