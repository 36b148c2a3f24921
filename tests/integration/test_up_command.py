"""`meshroute up` as a user runs it: the quickstart, clean shutdown, and loud failures."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from meshroute.demo.agents import answer_text
from meshroute.envoy_binary import envoy_binary
from tests.support.configs import agent_yaml, quickstart_config
from tests.support.processes import ManagedProcess, free_port, meshroute_argv, port_open
from tests.support.stack import UpStack

QUICKSTART_PORTS = (8001, 12000, 9100, 9200, 9901, 18000, 18001, 18010, 18080, 18081)


def children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}/stat").exists() else ""
    return " Z " not in stat  # a zombie has exited


def command_of(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


@pytest.mark.skipif(
    any(port_open(port) for port in QUICKSTART_PORTS),
    reason=f"the quickstart's fixed ports {QUICKSTART_PORTS} are in use on this machine",
)
def test_up_with_no_path_runs_the_quickstart_and_stops_cleanly_on_sigterm() -> None:
    up = ManagedProcess("meshroute up", meshroute_argv("up"))
    try:
        up.wait_for_line(r"^meshroute is up\.")
        children = children_of(up.process.pid)
        # demo agents and models, control plane, ext_proc, Envoy
        assert len(children) == 5, [command_of(pid) for pid in children]
        question = "Will it rain in Paris tomorrow?"
        response = httpx.post(
            "http://localhost:8001/v1/chat/completions",
            json={"messages": [{"role": "user", "content": question}]},
            timeout=30,
        )
        assert response.headers["x-meshroute-agent"] == "weather"
        assert response.json()["choices"][0]["message"]["content"] == answer_text(
            "weather", [{"role": "user", "content": question}]
        )
        flights = httpx.post(
            "http://localhost:8001/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "Is UA 901 on time?"}]},
            timeout=30,
        )
        assert flights.headers["x-meshroute-agent"] == "flights"

        up.signal(signal.SIGTERM)
        assert up.process.wait(timeout=60) == 0
        assert not [pid for pid in children if alive(pid)]
        assert not [port for port in QUICKSTART_PORTS if port_open(port)]
    finally:
        up.stop()


def child_named(up_pid: int, word: str) -> int | None:
    """The pid of `up`'s child whose command line has `word` (its command or subcommand)."""
    for pid in children_of(up_pid):
        if word in command_of(pid).split()[:4]:
            return pid
    return None


def test_a_child_that_dies_is_restarted_and_traffic_recovers(
    tmp_path: Path, demo_agents_port: int
) -> None:
    gateway_port = free_port()
    stack = UpStack(
        [quickstart_config(tmp_path, gateway_port, demo_agents_port)], {"travel": gateway_port}
    )
    question = {"messages": [{"role": "user", "content": "Is UA 901 on time?"}]}
    try:
        up = stack.process.process.pid
        envoy, ext_proc = child_named(up, str(envoy_binary())), child_named(up, "ext-proc")
        assert envoy is not None
        assert ext_proc is not None
        os.kill(ext_proc, signal.SIGKILL)
        stack.process.wait_for_line(r"ext-proc exited unexpectedly with code -9; restarting it")
        stack.process.wait_for_line(r"ext-proc restarted after \d+\.\d s")

        def routed() -> bool:
            reply = httpx.post(stack.url("travel"), json=question, timeout=30)
            return reply.status_code == 200 and reply.headers["x-meshroute-agent"] == "flights"

        stack.process.wait_until(routed, "requests are routed again")
        assert child_named(up, str(envoy_binary())) == envoy  # Envoy was never restarted
        assert stack.process.process.poll() is None
    finally:
        stack.stop()


def test_a_child_that_keeps_crashing_stops_everything(
    tmp_path: Path, demo_agents_port: int
) -> None:
    gateway_port = free_port()
    stack = UpStack(
        [quickstart_config(tmp_path, gateway_port, demo_agents_port)], {"travel": gateway_port}
    )
    try:
        up = stack.process.process.pid
        children = children_of(up)
        killed: set[int] = set()
        while stack.process.process.poll() is None:
            pid = child_named(up, "ext-proc")
            if pid is not None and pid not in killed:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            stack.process.wait_until(
                lambda: (
                    stack.process.process.poll() is not None
                    or child_named(up, "ext-proc") not in (None, *killed)
                ),
                "a new ext-proc, or up giving up",
            )
        assert stack.process.process.returncode == 1
        assert len(killed) == 6
        stack.process.wait_for_line(r"ext-proc exited 6 times within 60 s; stopping everything")
        assert not [pid for pid in children if alive(pid)]
    finally:
        stack.stop()


def test_a_busy_port_is_a_clear_error(tmp_path: Path, demo_agents_port: int) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        busy = squatter.getsockname()[1]
        config = quickstart_config(tmp_path, busy, demo_agents_port)
        up = ManagedProcess(
            "meshroute up",
            meshroute_argv(
                "up",
                str(config),
                *("--admin-port", "0", "--xds-port", "0", "--ext-proc-port", "0"),
                *("--health-port", "0", "--metrics-port", "0"),
            ),
        )
        try:
            assert up.process.wait(timeout=60) == 1
            up.wait_for_line(
                rf"meshroute up failed: port {busy} \(Gateway/travel\) on 127.0.0.1 is not free"
            )
        finally:
            up.stop()


def test_a_bad_config_is_refused_with_its_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("apiVersion: meshroute.io/v1alpha1\nkind: Gateway\n")
    up = ManagedProcess("meshroute up", meshroute_argv("up", str(tmp_path)))
    try:
        assert up.process.wait(timeout=60) == 1
        up.wait_for_line(r"error: .*bad\.yaml:1: metadata: required field is missing")
        up.wait_for_line(r"error: .*bad\.yaml:1: spec: required field is missing")
    finally:
        up.stop()


def test_config_edits_apply_live_and_a_broken_edit_changes_nothing(
    tmp_path: Path, demo_agents_port: int
) -> None:
    gateway_port = free_port()
    config = quickstart_config(tmp_path, gateway_port, demo_agents_port)
    stack = UpStack([config], {"travel": gateway_port})
    question = "Any free hotel rooms near the station tonight?"

    def agent_for(text: str) -> str:
        response = httpx.post(
            stack.url("travel"), json={"messages": [{"role": "user", "content": text}]}, timeout=30
        )
        assert response.status_code == 200, response.text
        return response.headers["x-meshroute-agent"]

    try:
        assert agent_for(question) != "hotels"
        gateway_file = config / "gateway.yaml"
        good_gateway = gateway_file.read_text()

        # A broken edit: the gateway names an agent that does not exist.
        mark = len(stack.process.lines)
        replace_file(gateway_file, good_gateway.replace("- {name: currency}", "- {name: hotels}"))
        stack.process.wait_for_line(r"config reload REJECTED, still serving version 1", start=mark)
        stack.process.wait_for_line(r"spec\.agents\[2\]\.name: no Agent named 'hotels'", start=mark)
        assert agent_for("How many yen for 10 euros?") == "currency"  # old config serves

        # The fix: add the agent too, in a new file, then the gateway.
        mark = len(stack.process.lines)
        (config / "hotels.yaml").write_text(
            agent_yaml(
                "hotels",
                "Hotel rooms: availability, prices, booking, check-in and check-out.",
                f"http://127.0.0.1:{demo_agents_port}",
                examples=["Book a hotel room in Rome", "Is there a free room tonight?"],
            )
        )
        replace_file(
            gateway_file,
            good_gateway.replace("- {name: currency}", "- {name: currency}\n    - {name: hotels}"),
        )
        stack.process.wait_for_line(r"config reloaded: now serving version 2", start=mark)
        stack.process.wait_until(lambda: agent_for(question) == "hotels", "the new agent routes")
        assert agent_for("How many yen for 10 euros?") == "currency"
    finally:
        stack.stop()


def replace_file(path: Path, text: str) -> None:
    """Save as editors do: write a new file, rename it over the old one."""
    temporary = path.with_name(f".{path.name}.swp")
    temporary.write_text(text)
    os.replace(temporary, path)


def test_several_sidecar_workers_share_the_requests(tmp_path: Path, demo_agents_port: int) -> None:
    gateway_port = free_port()
    config = quickstart_config(tmp_path, gateway_port, demo_agents_port)
    stack = UpStack([config], {"travel": gateway_port}, ext_proc_workers=2)
    try:
        stack.process.wait_for_line(r"ext_proc: 127\.0\.0\.1:\d+-\d+ \(2 workers\)")
        status = httpx.get(f"http://127.0.0.1:{stack.health_port}/status", timeout=10).json()
        sidecars = [client for client in status["clients"] if client["kind"] == "ext-proc"]
        assert len(sidecars) == 2  # each worker has its own routing-table subscription
        for _ in range(20):
            reply = httpx.post(
                stack.url("travel"),
                json={"messages": [{"role": "user", "content": "Is UA 901 on time?"}]},
                timeout=30,
            )
            assert reply.headers["x-meshroute-agent"] == "flights"
        # One /metrics for all workers: their counts add up.
        metrics = httpx.get(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=10).text
        decided = [
            sample.value
            for family in text_string_to_metric_families(metrics)
            for sample in family.samples
            if sample.name == "meshroute_routing_decisions_total"
            and sample.labels["gateway"] == "travel"
        ]
        assert sum(decided) == 20
    finally:
        stack.stop()
