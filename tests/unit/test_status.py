"""`meshroute status`, against stand-in control plane, Envoy admin and sidecar metrics.

The Envoy shapes below were captured from Envoy 1.40 under `meshroute up` (an agent
answering 500 behind an active health check, a variant whose endpoint refuses
connections), so the stand-in answers what a real admin endpoint answers.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from meshroute.cli import main
from meshroute.status import (
    ClusterTraffic,
    ControlPlaneStatus,
    EnvoyStatus,
    Section,
    SidecarStatus,
    StatsSample,
    Status,
    UpstreamCounters,
    collect,
    format_duration,
    format_ratio,
    parse_clusters,
    parse_control_plane,
    parse_decisions,
    parse_stats,
    render,
    traffic,
)
from tests.support.processes import free_port, meshroute_argv
from tests.support.threaded_server import ThreadedServer

INTERVAL = 0.2

# ---------------------------------------------------------------- canned answers

CONTROL_PLANE_STATUS: dict[str, Any] = {
    "serving_version": "7",
    "clients": [
        {
            "node": "meshroute-up-123",
            "kind": "envoy",
            "protocol": "sotw",
            "connected_seconds": 185.2,
            "types": [
                {"type": "listeners", "acked": "7", "nacked": None, "error": None},
                {"type": "routes", "acked": "7", "nacked": None, "error": None},
                {"type": "clusters", "acked": "7", "nacked": None, "error": None},
                {"type": "secrets", "acked": "7", "nacked": None, "error": None},
            ],
        },
        {
            "node": "envoy-travel-7d9f8c6b5-x2x9k",
            "kind": "envoy",
            "protocol": "delta",
            "connected_seconds": 3725,
            "future_field": "ignored",
            "types": [
                {"type": "listeners", "acked": "7", "nacked": None, "error": None},
                {"type": "routes", "acked": "7", "nacked": None, "error": None},
                {
                    "type": "clusters",
                    "acked": "6",
                    "nacked": "7",
                    "error": "Error adding/updating cluster(s) agent_flights: "
                    "Proto constraint validation failed (ClusterValidationError.ConnectTimeout:"
                    " value must be greater than 0s): connect_timeout {\n}\n" + "x" * 300,
                },
                {"type": "secrets", "acked": "7", "nacked": None, "error": None},
            ],
        },
        {
            "node": "ext-proc-vm-28001",
            "kind": "ext-proc",
            "protocol": "sotw",
            "connected_seconds": 12.5,
            "types": [{"type": "routing_tables", "acked": "5", "nacked": None, "error": None}],
        },
    ],
}

SERVER_INFO = {
    "version": "9e5580933739775e8bce696a57a2e1bc99368f23/1.40.0/Clean/RELEASE/BoringSSL",
    "state": "LIVE",
    "uptime_current_epoch": "20s",
    "uptime_all_epochs": "20s",
    "hot_restart_version": "disabled",
}


def _host(address: str, port: int, health: dict[str, Any]) -> dict[str, Any]:
    """One entry of `host_statuses` as Envoy 1.40 writes it (zero stats have no value)."""
    return {
        "address": {"socket_address": {"address": address, "port_value": port}},
        "stats": [
            {"name": "cx_connect_fail"},
            {"value": "2", "name": "cx_total"},
            {"value": "3", "name": "rq_error"},
            {"name": "rq_success"},
            {"name": "rq_timeout"},
            {"value": "3", "name": "rq_total"},
            {"type": "GAUGE", "value": "2", "name": "cx_active"},
            {"type": "GAUGE", "name": "rq_active"},
            {"type": "GAUGE", "name": "rq_pending_active"},
        ],
        "health_status": health,
        "weight": 1,
        "hostname": address,
        "locality": {},
    }


def _cluster(name: str, *hosts: dict[str, Any], dynamic: bool = True) -> dict[str, Any]:
    thresholds = {
        "max_connections": 1024,
        "max_pending_requests": 1024,
        "max_requests": 1024,
        "max_retries": 3,
    }
    cluster: dict[str, Any] = {"name": name}
    if dynamic:
        cluster["added_via_api"] = True
    cluster |= {
        "host_statuses": list(hosts),
        "circuit_breakers": {"thresholds": [thresholds, {"priority": "HIGH", **thresholds}]},
        "observability_name": name,
    }
    return cluster


HEALTHY = {"eds_health_status": "HEALTHY"}

CLUSTERS = {
    "cluster_statuses": [
        _cluster("meshroute_xds", _host("127.0.0.1", 18000, HEALTHY), dynamic=False),
        _cluster(
            "agent_broken",
            _host("127.0.0.1", 9300, {"failed_active_health_check": True, **HEALTHY}),
            _host("127.0.0.2", 9300, HEALTHY),
        ),
        _cluster("agent_weather", _host("127.0.0.1", 9100, HEALTHY)),
        _cluster("agent_flights_canary", _host("127.0.0.1", 9199, HEALTHY)),
        _cluster(
            "provider_demo-openai",
            _host("127.0.0.1", 9200, {"failed_outlier_check": True, **HEALTHY}),
        ),
    ]
}


def _counters(values: dict[str, int]) -> list[dict[str, Any]]:
    return [{"name": name, "value": value} for name, value in sorted(values.items())]


# Envoy's counters at the first and at the second read. Besides the ones `status`
# reads, the neighbours a loose filter would also catch. `upstream_rq_5xx` exists only
# after a first 5xx; connect failures (agent_flights_canary) count in `_5xx` and
# `_completed` but not in `_total`, as measured.
FIRST = {
    "cluster.agent_broken.upstream_rq_500": 3,
    "cluster.agent_broken.upstream_rq_5xx": 3,
    "cluster.agent_broken.upstream_rq_completed": 3,
    "cluster.agent_broken.upstream_rq_total": 3,
    "cluster.agent_flights_canary.upstream_rq_503": 2,
    "cluster.agent_flights_canary.upstream_rq_5xx": 2,
    "cluster.agent_flights_canary.upstream_rq_completed": 2,
    "cluster.agent_flights_canary.upstream_rq_total": 0,
    "cluster.agent_weather.external.upstream_rq_completed": 100,
    "cluster.agent_weather.upstream_rq_200": 100,
    "cluster.agent_weather.upstream_rq_completed": 100,
    "cluster.agent_weather.upstream_rq_total": 100,
    "cluster.meshroute_xds.upstream_rq_completed": 1,
    "cluster.meshroute_xds.upstream_rq_total": 1,
    "cluster.provider_demo-openai.upstream_rq_completed": 0,
    "cluster.provider_demo-openai.upstream_rq_total": 0,
}
SECOND = FIRST | {
    "cluster.agent_broken.upstream_rq_500": 7,
    "cluster.agent_broken.upstream_rq_5xx": 7,
    "cluster.agent_broken.upstream_rq_completed": 11,  # 8 more, 4 of them 5xx: 50%
    "cluster.agent_broken.upstream_rq_total": 11,
    "cluster.agent_weather.external.upstream_rq_completed": 140,
    "cluster.agent_weather.upstream_rq_200": 140,
    "cluster.agent_weather.upstream_rq_completed": 140,  # 40 more, none 5xx
    "cluster.agent_weather.upstream_rq_total": 140,
    "cluster.meshroute_xds.upstream_rq_completed": 900,
}

HISTOGRAMS = {
    "histograms": {
        "supported_quantiles": [0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100],
        "computed_quantiles": [
            {
                "name": "cluster.agent_weather.upstream_rq_time",
                "values": [{"cumulative": 1.03, "interval": None}] * 10,
            }
        ],
    }
}


def _sidecar_metrics() -> str:
    """What prometheus_client exposes for the sidecar's two metrics."""
    registry = CollectorRegistry()
    decisions = Counter(
        "meshroute_routing_decisions",
        "routing decisions",
        ["gateway", "target", "reason"],
        registry=registry,
    )
    decisions.labels("travel", "weather", "embedded").inc(12)
    decisions.labels("travel", "flights", "embedded").inc(3)
    decisions.labels("travel", "weather", "default").inc(2)
    decisions.labels("llm", "gpt-4o", "alias").inc(5)
    seconds = Histogram("meshroute_orchestrator_seconds", "orchestrator", registry=registry)
    seconds.observe(0.4)
    return generate_latest(registry).decode()


# ---------------------------------------------------------------- stand-in servers


@dataclass
class StandIns:
    control_plane: ThreadedServer
    envoy: ThreadedServer
    sidecar: ThreadedServer
    stats_queries: list[dict[str, str]] = field(default_factory=list)

    @property
    def args(self) -> list[str]:
        return [
            "--control-plane",
            self.control_plane.url,
            "--admin",
            self.envoy.url,
            "--ext-proc-metrics",
            self.sidecar.url + "/metrics",
            "--interval",
            str(INTERVAL),
        ]


def _envoy_app(queries: list[dict[str, str]]) -> web.Application:
    """Envoy's admin: /stats answers FIRST, then SECOND, filtered as Envoy filters."""

    async def stats(request: web.Request) -> web.Response:
        query = dict(request.query)
        queries.append(query)
        if query.get("format") != "json":
            return web.Response(text="not the format status asks for", status=400)
        values = FIRST if len(queries) == 1 else SECOND
        pattern = re.compile(query.get("filter", ""))
        entries: list[dict[str, Any]] = [
            entry for entry in _counters(values) if pattern.search(entry["name"])
        ]
        if query.get("type") != "Counters":
            entries.append(HISTOGRAMS)
        return web.json_response({"stats": entries})

    async def clusters(request: web.Request) -> web.Response:
        assert request.query.get("format") == "json"
        return web.json_response(CLUSTERS)

    async def server_info(_: web.Request) -> web.Response:
        return web.json_response(SERVER_INFO)

    app = web.Application()
    app.router.add_get("/stats", stats)
    app.router.add_get("/clusters", clusters)
    app.router.add_get("/server_info", server_info)
    return app


def _app(path: str, body: str, content_type: str) -> web.Application:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(text=body, content_type=content_type)

    app = web.Application()
    app.router.add_get(path, handler)
    return app


@pytest.fixture
def stand_ins() -> Iterator[StandIns]:
    queries: list[dict[str, str]] = []
    servers = StandIns(
        control_plane=ThreadedServer(
            _app("/status", json.dumps(CONTROL_PLANE_STATUS), "application/json")
        ),
        envoy=ThreadedServer(_envoy_app(queries)),
        sidecar=ThreadedServer(_app("/metrics", _sidecar_metrics(), "text/plain")),
        stats_queries=queries,
    )
    yield servers
    for server in (servers.control_plane, servers.envoy, servers.sidecar):
        server.close()


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["status", *args])
    out, err = capsys.readouterr()
    code = exit_info.value.code
    assert isinstance(code, int)
    return code, out, err


def _line(text: str, start: str) -> str:
    """The line of `text` that starts (after indentation) with `start`."""
    return next(line for line in text.splitlines() if line.strip().startswith(start))


# ---------------------------------------------------------------- the command


def test_status_shows_clients_traffic_and_decisions(
    stand_ins: StandIns, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, *stand_ins.args)
    assert (code, err) == (0, "")
    assert all(len(line) <= 100 for line in out.splitlines()), out

    # Control plane: sorted by node; the NACKing client is flagged and says why,
    # shortened to one line; the ext_proc server on an older version is behind.
    assert "serving version 7, 3 xDS clients" in out
    nodes = [
        line.split()[0] for line in out.splitlines() if re.match(r"  \S+ +(envoy|ext-proc) ", line)
    ]
    assert nodes == ["envoy-travel-7d9f8c6b5-x2x9k", "ext-proc-vm-28001", "meshroute-up-123"]
    nacking = _line(out, "envoy-travel-7d9f8c6b5-x2x9k")
    assert re.search(r"envoy +delta +1h02m +behind NACK +listeners=7 routes=7 clusters=6", nacking)
    assert "NACK clusters version 7: Error adding/updating cluster(s) agent_flights: " in out
    detail = _line(out, "NACK clusters")
    assert detail.endswith("...")
    assert detail.startswith(
        "      NACK clusters version 7: Error adding/updating cluster(s) agent_flights: Proto"
    )
    assert re.search(r"ext-proc +sotw +12s +behind +routing_tables=5", _line(out, "ext-proc-vm"))
    assert re.search(r"envoy +sotw +3m05s +ok +listeners=7", _line(out, "meshroute-up-123"))

    # Envoy: only agent and provider clusters, by name; 5xx over all completed.
    assert "Envoy (" in out
    assert "LIVE, Envoy 1.40.0, rates over 0." in out
    clusters = [line.split()[0] for line in out.splitlines() if line.startswith("  agent_")]
    assert clusters == ["agent_broken", "agent_flights_canary", "agent_weather"]
    assert "meshroute_xds" not in out
    broken = _line(out, "agent_broken").split()
    assert broken[2:] == ["50%", "1/2", "some", "endpoints", "unhealthy"]
    assert 8 / 1.2 <= float(broken[1]) <= 8 / INTERVAL  # 8 requests over the window
    weather = _line(out, "agent_weather").split()
    assert weather[2:] == ["0%", "1/1"]
    assert 40 / 1.2 <= float(weather[1]) <= 40 / INTERVAL
    assert _line(out, "agent_flights_canary").split()[1:] == ["0.0", "-", "1/1"]
    assert _line(out, "provider_demo-openai").split()[1:] == [
        "0.0",
        "-",
        "0/1",
        "no",
        "healthy",
        "endpoint",
    ]

    # Two reads of the counters, filtered on Envoy's side.
    assert len(stand_ins.stats_queries) == 2
    assert all(query.get("filter") for query in stand_ins.stats_queries)

    # The sidecar: decisions by gateway, target and reason; the histogram ignored.
    assert "22 routing decisions since it started" in out
    assert re.search(r"travel +weather +embedded +12$", out, re.MULTILINE)
    assert re.search(r"travel +flights +embedded +3$", out, re.MULTILINE)
    assert re.search(r"llm +gpt-4o +alias +5$", out, re.MULTILINE)
    assert "orchestrator" not in out


def test_status_json_has_the_same_data(
    stand_ins: StandIns, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, *stand_ins.args, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["ok"] is True

    control_plane = data["control_plane"]
    assert control_plane["reachable"] is True
    assert control_plane["serving_version"] == "7"
    clients = {client["node"]: client for client in control_plane["clients"]}
    nacking = clients["envoy-travel-7d9f8c6b5-x2x9k"]
    assert (nacking["behind"], nacking["nack"], nacking["protocol"]) == (True, True, "delta")
    clusters_type = next(t for t in nacking["types"] if t["type"] == "clusters")
    assert clusters_type["acked"] == "6"
    assert clusters_type["nacked"] == "7"
    assert clusters_type["error"].startswith("Error adding/updating cluster(s)")  # unshortened
    assert (clients["meshroute-up-123"]["behind"], clients["meshroute-up-123"]["nack"]) == (
        False,
        False,
    )
    assert clients["ext-proc-vm-28001"]["behind"] is True

    envoy = data["envoy"]
    assert (envoy["state"], envoy["version"]) == ("LIVE", "1.40.0")
    assert INTERVAL <= envoy["window_seconds"] < INTERVAL + 1
    by_name = {cluster["name"]: cluster for cluster in envoy["clusters"]}
    assert list(by_name) == sorted(by_name)
    broken = by_name["agent_broken"]
    assert (broken["completed"], broken["errors_5xx"], broken["error_ratio"]) == (8, 4, 0.5)
    assert broken["requests_per_second"] == pytest.approx(8 / envoy["window_seconds"])
    assert (broken["healthy"], broken["endpoints"]) == (1, 2)
    assert by_name["agent_weather"]["error_ratio"] == 0.0
    assert by_name["agent_flights_canary"]["error_ratio"] is None  # nothing in the window

    sidecar = data["sidecar"]
    assert sidecar["total"] == 22
    assert {"gateway": "travel", "target": "flights", "reason": "embedded", "count": 3.0} in (
        sidecar["decisions"]
    )


def test_an_unreachable_source_is_reported_and_exits_1(
    stand_ins: StandIns, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    args = [*stand_ins.args]
    args[args.index("--admin") + 1] = dead
    code, out, err = _run(capsys, *args)
    assert code == 1
    assert "Traceback" not in out + err
    assert f"Envoy ({dead}): unreachable: cannot connect to 127.0.0.1:" in out
    assert "Connection refused" in out
    # The others are still shown in full.
    assert "serving version 7, 3 xDS clients" in out
    assert "22 routing decisions since it started" in out

    code, out, _ = _run(capsys, *args, "--json")
    data = json.loads(out)
    assert code == 1
    assert data["ok"] is False
    assert data["envoy"]["reachable"] is False
    assert "Connection refused" in data["envoy"]["error"]
    assert data["control_plane"]["reachable"] is True


def test_a_wrong_answer_is_reported_not_raised(
    stand_ins: StandIns, capsys: pytest.CaptureFixture[str]
) -> None:
    page = ThreadedServer(_app("/status", "<html>hello</html>", "text/html"))
    try:
        args = [*stand_ins.args]
        args[args.index("--control-plane") + 1] = page.url
        args[args.index("--ext-proc-metrics") + 1] = page.url + "/nothing-here"
        code, out, err = _run(capsys, *args)
    finally:
        page.close()
    assert code == 1
    assert "Traceback" not in out + err
    assert "Control plane (" in out
    assert all(len(line) <= 100 for line in out.splitlines()), out
    unwrapped = " ".join(out.split())
    assert f"Control plane ({page.url}): unreachable: unexpected answer: body: Invalid JSON" in (
        unwrapped
    )
    assert f"unreachable: HTTP 404 Not Found from {page.url}/nothing-here" in unwrapped
    assert "LIVE" in out


async def test_a_source_that_does_not_answer_times_out() -> None:
    release = asyncio.Event()

    async def hang(_: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="too late")

    app = web.Application()
    app.router.add_get("/status", hang)
    app.router.add_get("/metrics", hang)
    slow = ThreadedServer(app)
    try:
        status = await collect(
            slow.url, slow.url, slow.url + "/metrics", INTERVAL, request_timeout=0.3
        )
    finally:
        slow.loop.call_soon_threadsafe(release.set)
        slow.close()
    assert status.exit_code == 1
    assert status.control_plane.error == f"no answer within 0.3s from {slow.url}/status"
    assert status.sidecar.error is not None
    assert status.sidecar.error.startswith("no answer within 0.3s")
    assert status.envoy.error is not None  # it answers 404 to everything


def test_interval_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "--interval", "0")
    assert code == 2
    assert "--interval must be a positive number" in err


def test_status_as_a_user_runs_it(stand_ins: StandIns) -> None:
    """The console command, configured by its environment twins."""
    env = {
        **os.environ,
        "MESHROUTE_CONTROL_PLANE": stand_ins.control_plane.url,
        "MESHROUTE_ADMIN": stand_ins.envoy.url,
        "MESHROUTE_EXT_PROC_METRICS": stand_ins.sidecar.url + "/metrics",
        "MESHROUTE_INTERVAL": str(INTERVAL),
    }
    result = subprocess.run(
        meshroute_argv("status"), capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    assert re.search(r"agent_broken +\d+\.\d +50% +1/2", result.stdout)
    assert "behind NACK" in result.stdout

    env["MESHROUTE_EXT_PROC_METRICS"] = f"http://127.0.0.1:{free_port()}/metrics"
    result = subprocess.run(
        meshroute_argv("status", "--json"),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert json.loads(result.stdout)["sidecar"]["reachable"] is False


# ---------------------------------------------------------------- parsing and rendering


def test_control_plane_before_the_first_config() -> None:
    status = parse_control_plane('{"serving_version": null, "clients": []}')
    assert status == ControlPlaneStatus(None, [])
    text = render(
        Status(
            Section("http://cp", status),
            Section("http://admin", error="x"),
            Section("http://m", error="y"),
        )
    )
    assert "Control plane (http://cp): no config served yet, 0 xDS clients" in text


def test_a_client_that_has_acked_nothing_yet_is_behind() -> None:
    status = parse_control_plane(
        json.dumps(
            {
                "serving_version": "3",
                "clients": [
                    {
                        "node": "n",
                        "kind": "other",
                        "protocol": "sotw",
                        "types": [{"type": "clusters", "acked": None}],
                    }
                ],
            }
        )
    )
    (client,) = status.clients
    assert client.behind("3")
    assert not client.nacks
    assert client.connected_seconds is None


def test_parse_stats_reads_counters_and_skips_the_rest() -> None:
    body = json.dumps({"stats": [*_counters(FIRST), HISTOGRAMS]})
    sample = parse_stats(body, at=5.0)
    assert sample.at == 5.0
    assert sample.counters == {
        "agent_broken": UpstreamCounters(completed=3, errors_5xx=3),
        "agent_flights_canary": UpstreamCounters(completed=2, errors_5xx=2),
        "agent_weather": UpstreamCounters(completed=100, errors_5xx=0),
        "provider_demo-openai": UpstreamCounters(completed=0, errors_5xx=0),
    }


def test_parse_clusters_counts_hosts_envoy_takes_out_of_rotation() -> None:
    health = parse_clusters(json.dumps(CLUSTERS))
    assert {name: (h.healthy, h.total) for name, h in health.items()} == {
        "agent_broken": (1, 2),
        "agent_weather": (1, 1),
        "agent_flights_canary": (1, 1),
        "provider_demo-openai": (0, 1),
    }
    draining = _cluster("agent_x", _host("10.0.0.1", 80, {"eds_health_status": "DRAINING"}))
    unknown = _cluster("agent_y", _host("10.0.0.2", 80, {"eds_health_status": "UNKNOWN"}))
    health = parse_clusters(json.dumps({"cluster_statuses": [draining, unknown]}))
    assert (health["agent_x"].healthy, health["agent_y"].healthy) == (0, 1)


def test_a_counter_that_went_down_gives_no_rate() -> None:
    first = StatsSample(0.0, {"agent_a": UpstreamCounters(50, 5)})
    second = StatsSample(1.0, {"agent_a": UpstreamCounters(3, 0)})
    (cluster,) = traffic(first, second, {})
    assert (cluster.requests_per_second, cluster.error_ratio) == (None, None)


def test_parse_decisions_without_type_lines() -> None:
    text = (
        'meshroute_routing_decisions_total{gateway="llm",target="gpt-4o",reason="model"} 4\n'
        'something_else_total{gateway="llm"} 9\n'
    )
    status = parse_decisions(text)
    assert [(d.gateway, d.target, d.reason, d.count) for d in status.decisions] == [
        ("llm", "gpt-4o", "model", 4.0)
    ]


def test_long_node_ids_and_many_types_stay_within_100_columns() -> None:
    types = [
        {"type": name, "acked": "123456", "nacked": None, "error": None}
        for name in ("listeners", "routes", "clusters", "secrets", "routing_tables")
    ]
    client = {
        "node": "a-very-long-node-identifier-from-some-pod-7d9f8c6b5-x2x9k",
        "kind": "ext-proc",
        "protocol": "delta",
        "connected_seconds": 400000,
        "types": types,
    }
    cp = parse_control_plane(json.dumps({"serving_version": "123456", "clients": [client]}))
    envoy = EnvoyStatus(
        "LIVE",
        "1.40.0",
        1.0,
        [ClusterTraffic("agent_" + "x" * 60, 12345.678, 0.0125, 12345, 154, 3, 4)],
    )
    text = render(
        Status(
            Section("http://cp", cp),
            Section("http://admin", envoy),
            Section("http://m", SidecarStatus([])),
        )
    )
    assert all(len(line) <= 100 for line in text.splitlines()), text
    assert "a-very-long-node...d-7d9f8c6b5-x2x9k" in text
    assert "4d15h" in text
    assert "routing_tables=123456" in text  # wrapped onto a line of its own, not split
    assert re.search(
        r"agent_x{12}\.\.\.x{19} +12345\.7 +1\.2% +3/4 +some endpoints unhealthy", text
    )


@pytest.mark.parametrize(
    ("ratio", "text"), [(None, "-"), (0.0, "0%"), (0.025, "2.5%"), (1.0, "100%"), (1 / 3, "33.3%")]
)
def test_format_ratio(ratio: float | None, text: str) -> None:
    assert format_ratio(ratio) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0.4, "0s"), (59.9, "59s"), (185.2, "3m05s"), (3725, "1h02m"), (90000, "1d01h")],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text
