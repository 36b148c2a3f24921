"""Control-plane scale: config size -> load, translate, validate, install, push to 100 streams.

For each size N it writes a realistic config of N Agents, N/5 LLMProviders and the
Gateways in front of them (agent gateways of 50 agents, one model gateway per 50
providers) as YAML files, then measures:

* in this process, each stage of a reload on its own, as the control plane runs it
  when one agent was edited: `load_config` (YAML + pydantic + cross-checks; with the
  files parsed before, so only the edited one is re-parsed), `translate`, Envoy's
  validation (`EnvoyGate.check`, which runs `envoy --mode validate` on what Envoy has
  not accepted yet) and `SnapshotCache.set_resources` (packing and versioning); and
  the first load's, with nothing to reuse (validation: `check_with_envoy`, every
  resource);
* end to end, in a running `meshroute control-plane` with `--streams` ADS clients
  connected (bench/ads_client.py, subscribing like Envoy): an agent's description,
  endpoint and timeout are edited and saved `--edits` times, and the clock runs from
  the save until every stream holds the new clusters and routes. The control plane's
  own log splits that into noticing the save (file events), building the snapshot,
  and the fan-out to the streams.

Goal (from the issue): 1,000 agents + 200 providers translated, validated and pushed
in <= 2 s; 100 streams all holding a change <= 1 s after the save. Timing goals live
here, never in tests.

    make bench    # or: .venv/bin/python -m bench.control_plane_scale [--sizes 100 1000]
    .venv/bin/python -m bench.control_plane_scale --sizes 100 1000 5000  # opt-in: 5,000

Prints a table and writes bench/results/control_plane_scale.json; every process it
starts (the control plane, Envoy validations) is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from bench.ads_client import StreamFleet
from bench.common import machine_line, run_bench, write_results
from meshroute.control_plane.bootstrap import check_with_envoy
from meshroute.control_plane.config import load_config
from meshroute.control_plane.config.loader import ParsedFiles
from meshroute.control_plane.credentials import read_credentials
from meshroute.control_plane.envoy_gate import EnvoyGate
from meshroute.control_plane.translate.deployment import DeploymentSettings, default_ca_bundle
from meshroute.control_plane.translate.snapshot import Resources, translate
from meshroute.control_plane.xds import type_urls
from meshroute.control_plane.xds.snapshot import SnapshotCache
from tests.support.processes import ManagedProcess, free_port, meshroute_argv

RESULTS = Path(__file__).resolve().parent / "results" / "control_plane_scale.json"
DEFAULT_SIZES = (100, 1000)
AGENTS_PER_GATEWAY = 50
PROVIDERS_PER_GATEWAY = 50
KEY_VARIABLE = "MESHROUTE_BENCH_API_KEY"
EDITED_MARK = "edit-marker"

T = TypeVar("T")

# ------------------------------------------------------------------ the config


TOPICS = (
    ("flights", "Flight search, schedules and live status between airports", "Is UA 901 on time?"),
    ("hotels", "Hotel search, availability and booking changes", "A quiet room in Lisbon, May 3"),
    ("weather", "Weather forecasts and severe-weather alerts", "Will it rain in Paris tomorrow?"),
    ("billing", "Invoices, refunds and payment problems", "Why was I charged twice?"),
    ("orders", "Order status, returns and delivery windows", "Where is order 1182?"),
    ("hr", "Leave balances, payroll dates and benefits questions", "How many days off remain?"),
    ("it", "Password resets, laptop issues and VPN access", "My VPN keeps dropping"),
    ("legal", "Contract review requests and NDA templates", "I need an NDA for a vendor"),
)


def _agent(index: int, ca_file: str, edit: int = 0) -> str:
    """One Agent; most are minimal, some carry the policies and shapes users write.
    `edit` moves its description, endpoint port and timeout: a change that reaches the
    routing tables, the clusters and the routes."""
    topic, what, example = TOPICS[index % len(TOPICS)]
    name = f"agent-{index:05d}"
    team = f"team-{index // AGENTS_PER_GATEWAY:03d}"
    port = 8080 + edit
    lines = [
        "apiVersion: meshroute.io/v1alpha1",
        "kind: Agent",
        f"metadata: {{name: {name}, namespace: {team}, labels: {{team: {team}}}}}",
        "spec:",
        f"  description: >-\n    {what}, for {team} ({name}). Answers questions about {topic}"
        f" in plain language and hands off anything else. {EDITED_MARK} {edit}",
        f"  examples: [{example!r}, 'help with {topic} #{index}', '{topic} question {index}']",
    ]
    host = f"{name}.{team}.svc.cluster.local"
    if index % 10 == 3:
        lines += [
            "  variants:",
            f"    - {{name: stable, weight: 90, endpoints: ['http://{host}:{port}']}}",
            f"    - {{name: canary, weight: 10, endpoints: ['http://{name}-c.{team}.svc:{port}']}}",
        ]
    elif index % 25 == 7:
        lines += [
            f"  endpoints: ['https://{name}.agents.example.com:{port}']",
            f"  tls: {{caFile: {ca_file}}}",
        ]
    elif index % 5 == 1:
        address = f"10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256}"
        lines.append(f"  endpoints: ['http://{address}:{port}']")
    else:
        lines.append(f"  endpoints: ['http://{host}:{port}']")
    lines.append(f"  timeout: {30 + edit}s")
    if index % 7 == 2:
        lines += [
            "  retries: {attempts: 3, retryOn: [5xx, reset, connect-failure, 503], "
            "perTryTimeout: 20s}",
            "  outlierDetection: {consecutive5xx: 3, interval: 5s, baseEjectionTime: 15s}",
            "  circuitBreaker: {maxConnections: 512, maxRequests: 512, retryBudget: {percent: 25}}",
        ]
    if index % 13 == 5:
        lines.append("  healthCheck: {path: /healthz, interval: 5s, timeout: 1s}")
    if index % 17 == 11:
        lines.append("  loadBalancing: {policy: RING_HASH, hashOn: {header: x-session-id}}")
    return "\n".join(lines) + "\n"


def _provider(index: int) -> str:
    api = ("openai", "anthropic", "azure-openai")[index % 3]
    name = f"provider-{index:04d}"
    endpoint = (
        f"http://vllm-{index}.ml.svc.cluster.local:8000"
        if index % 4 == 3
        else f"https://api.{name}.example.com"
    )
    auth = "{passthrough: true}" if index % 5 == 4 else f"{{fromEnv: {KEY_VARIABLE}}}"
    lines = [
        "apiVersion: meshroute.io/v1alpha1",
        "kind: LLMProvider",
        f"metadata: {{name: {name}}}",
        "spec:",
        f"  api: {api}",
        f"  endpoint: {endpoint}",
        f"  models: {{m{index}-large: vendor-large-2025-01, m{index}-small: m{index}-small}}",
        f"  auth: {auth}",
        "  timeout: 120s",
    ]
    if api == "azure-openai":
        lines.append("  apiVersion: '2024-10-21'")
    if index % 6 == 1:
        lines.append("  retries: {attempts: 2, retryOn: [429, 503, connect-failure]}")
    return "\n".join(lines) + "\n"


def _agent_gateway(index: int, agents: Sequence[int], port: int) -> str:
    entries = ["    - {name: agent-00000, default: true}"]  # a help desk every gateway shares
    for position, agent in enumerate(agents):
        override = ", description: 'The team desk for this gateway'" if position == 0 else ""
        entries.append(f"    - {{name: agent-{agent:05d}{override}}}")
    router = (
        "  router: {type: orchestrator, provider: provider-0000, model: m0-large, timeout: 2s}"
        if index % 2
        else "  router: {type: embedded, minScore: 0.15}"
    )
    lines = [
        "apiVersion: meshroute.io/v1alpha1",
        "kind: Gateway",
        f"metadata: {{name: agents-{index:03d}}}",
        "spec:",
        "  type: agent",
        f"  port: {port}",
        "  agents:",
        *entries,
        router,
        f"  failureMode: {'open' if index % 3 == 2 else 'closed'}",
        "  maxRequestBytes: 4Mi",
    ]
    return "\n".join(lines) + "\n"


def _model_gateway(index: int, providers: Sequence[int], port: int) -> str:
    first, last = providers[0], providers[-1]
    lines = [
        "apiVersion: meshroute.io/v1alpha1",
        "kind: Gateway",
        f"metadata: {{name: models-{index:03d}}}",
        "spec:",
        "  type: model",
        f"  port: {port}",
        f"  defaultModel: m{first}-small",
        f"  modelAliases: {{fast: m{first}-small, smart: m{last}-large}}",
        "  routingPreferences:",
        f"    - {{name: code, description: writing and reviewing code, models: [m{last}-large]}}",
        "    - {name: chat, description: small talk and short answers, models: [fast]}",
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Layout:
    """A generated config on disk, and the agent the bench edits."""

    directory: Path
    agents: int
    providers: int
    agent_gateways: int
    model_gateways: int
    files: int
    bytes: int
    edited_file: Path
    edited_agent: int
    ca_file: str

    def edit(self, edit: int) -> float:
        """Save edit number `edit` of the edited agent the way editors do (a new file
        renamed over the old); returns time.perf_counter() right after the rename."""
        before = _agent(self.edited_agent, self.ca_file, edit - 1)
        text = self.edited_file.read_text()
        if before not in text:
            raise RuntimeError(f"agent {self.edited_agent} is not at edit {edit - 1}")
        updated = text.replace(before, _agent(self.edited_agent, self.ca_file, edit))
        temporary = self.edited_file.with_name("." + self.edited_file.name + ".swp")
        temporary.write_text(updated)
        os.replace(temporary, self.edited_file)
        return time.perf_counter()


def _chunks(items: Sequence[int], size: int) -> list[list[int]]:
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


def write_config(directory: Path, agents: int, ca_file: str) -> Layout:
    """N agents, N/5 providers, their gateways. One file per team of agents (the agents
    of one agent gateway), one per 50 providers, one for the gateways: how a platform
    team would likely keep them. Every agent gateway also routes to one shared help
    desk agent (its default), so one agent is in every gateway."""
    directory.mkdir(parents=True, exist_ok=True)
    providers = max(1, agents // 5)
    teams = _chunks(range(1, agents), AGENTS_PER_GATEWAY - 1)
    blocks = _chunks(range(providers), PROVIDERS_PER_GATEWAY)
    gateways: list[str] = []
    for team, members in enumerate(teams):
        docs = ([_agent(0, ca_file)] if team == 0 else []) + [_agent(i, ca_file) for i in members]
        (directory / f"agents-{team:03d}.yaml").write_text("---\n".join(docs))
        gateways.append(_agent_gateway(team, members, 20000 + team))
    for block, members in enumerate(blocks):
        text = "---\n".join(_provider(index) for index in members)
        (directory / f"providers-{block:03d}.yaml").write_text(text)
        gateways.append(_model_gateway(block, members, 30000 + block))
    (directory / "gateways.yaml").write_text("---\n".join(gateways))
    middle = len(teams) // 2
    files = sorted(directory.glob("*.yaml"))
    return Layout(
        directory=directory,
        agents=agents,
        providers=providers,
        agent_gateways=len(teams),
        model_gateways=len(blocks),
        files=len(files),
        bytes=sum(file.stat().st_size for file in files),
        edited_file=directory / f"agents-{middle:03d}.yaml",
        edited_agent=teams[middle][-1],
        ca_file=ca_file,
    )


# ------------------------------------------------------------------ stages, in process


@dataclass(frozen=True)
class Stages:
    """Seconds per reload stage (median of the repeats), and what the config became.

    `load`, `validate` and `install_reload` are a reload's: one agent edited, after
    the control plane loaded and Envoy accepted the config before it (the loader
    re-parses only the edited file; the gate asks Envoy only about what changed).
    `load_first` and `validate_first` are the first load's, with nothing to reuse."""

    load: float
    translate: float
    validate: float
    install_first: float
    install_reload: float
    load_first: float
    validate_first: float
    clusters: int
    listeners: int
    routes: int
    route_configs: int
    resource_bytes: dict[str, int]

    @property
    def total(self) -> float:
        return self.load + self.translate + self.validate + self.install_reload

    @property
    def total_first(self) -> float:
        return self.load_first + self.translate + self.validate_first + self.install_first


def _timed(call: Callable[[], T], repeats: int) -> tuple[T, float]:
    """The result of the first call, and the median wall time of `repeats` calls."""
    times: list[float] = []
    results: list[T] = []
    for _ in range(repeats):
        gc.collect()  # a collection started by the previous stage's garbage is not ours
        started = time.perf_counter()
        results.append(call())
        times.append(time.perf_counter() - started)
    return results[0], statistics.median(times)


def measure_stages(layout: Layout, settings: DeploymentSettings, repeats: int) -> Stages:
    paths = [layout.directory]
    config, load_first = _timed(lambda: load_config(paths), repeats)
    credentials = read_credentials(config, settings.secrets_dir)
    resources, translate_time = _timed(lambda: translate(config, settings, credentials), repeats)
    _, validate_first = _timed(lambda: check_with_envoy(resources), repeats)
    _, install_first = _timed(lambda: SnapshotCache().set_resources(resources), repeats)
    edited = _edited_resources(layout, settings)
    install_reload = statistics.median(_install_reload(resources, edited) for _ in range(repeats))
    return Stages(
        load=_load_reload(layout, repeats),
        translate=translate_time,
        validate=_validate_reload(resources, edited, repeats),
        install_first=install_first,
        install_reload=install_reload,
        load_first=load_first,
        validate_first=validate_first,
        clusters=len(resources.clusters),
        listeners=len(resources.listeners),
        routes=sum(len(vh.routes) for rc in resources.routes for vh in rc.virtual_hosts),
        route_configs=len(resources.routes),
        resource_bytes={
            "clusters": sum(item.ByteSize() for item in resources.clusters),
            "listeners": sum(item.ByteSize() for item in resources.listeners),
            "routes": sum(item.ByteSize() for item in resources.routes),
            "routing_tables": sum(item.ByteSize() for item in resources.routing_tables),
        },
    )


@contextlib.contextmanager
def _copy(layout: Layout) -> Iterator[Layout]:
    """The config in a scratch directory, to edit without touching the measured one."""
    with tempfile.TemporaryDirectory(prefix="meshroute-bench-edit-") as copy:
        for file in layout.directory.glob("*.yaml"):
            (Path(copy) / file.name).write_text(file.read_text())
        yield dataclasses.replace(
            layout, directory=Path(copy), edited_file=Path(copy) / layout.edited_file.name
        )


def _edited_resources(layout: Layout, settings: DeploymentSettings) -> Resources:
    """The resources after one edit of the agent, without touching the files."""
    with _copy(layout) as moved:
        moved.edit(1)
        config = load_config([moved.directory])
    return translate(config, settings, read_credentials(config, settings.secrets_dir))


def _load_reload(layout: Layout, repeats: int) -> float:
    """A reload's load: every file parsed before, one of them since edited."""
    times = []
    with _copy(layout) as moved:
        for edit in range(1, repeats + 1):
            parsed = ParsedFiles()
            load_config([moved.directory], parsed)
            moved.edit(edit)
            gc.collect()
            started = time.perf_counter()
            load_config([moved.directory], parsed)
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def _validate_reload(resources: Resources, edited: Resources, repeats: int) -> float:
    """A reload's validation: Envoy accepted `resources`; `edited` differs in one
    agent (and back again, alternately)."""
    gate = EnvoyGate()
    gate.check(resources)
    times = []
    for step in range(repeats):
        gc.collect()
        started = time.perf_counter()
        report = gate.check(edited if step % 2 == 0 else resources)
        times.append(time.perf_counter() - started)
        if report.checked_clusters + report.checked_listeners == 0:
            raise RuntimeError("the edit changed nothing Envoy checks")
    return statistics.median(times)


def _install_reload(resources: Resources, edited: Resources) -> float:
    """A reload's install: the cache already holds `resources`; `edited` differs in one
    agent."""
    cache = SnapshotCache()
    cache.set_resources(resources)
    gc.collect()
    started = time.perf_counter()
    cache.set_resources(edited)
    return time.perf_counter() - started


# ------------------------------------------------------------------ live, with streams

RELOADED = re.compile(
    r"config reloaded: now serving version (\d+) \(changed: ([^;]*); checked in (\d+) ms\)"
)
NOTICED = re.compile(r"config files changed; reloading")
LOG_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3}) ")


@dataclass(frozen=True)
class Edit:
    """One save, as the streams and the control plane's log saw it (seconds)."""

    noticed: float
    """Save -> the control plane noticed the change (file events, settled)."""
    built: float
    """Its own "checked in": load, translate, validate, install."""
    first_stream: float
    all_streams: list[float]
    """Save -> each stream holding the new clusters and routes."""
    changed: str


@dataclass(frozen=True)
class Live:
    streams: int
    startup: float
    """Control plane start -> every stream holding clusters, listeners and routes."""
    edits: list[Edit]
    rss_mb: float
    peak_rss_mb: float
    response_bytes: dict[str, int]
    """The size of one stream's latest response of each type."""

    def save_to_all(self) -> list[float]:
        return [latency for edit in self.edits for latency in edit.all_streams]


def _log_time(line: str) -> float | None:
    found = LOG_TIME.match(line)
    if found is None:
        return None
    return datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def _rss_mb(pid: int) -> tuple[float, float]:
    """VmRSS and VmHWM (the peak) of `pid`, in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


@contextlib.contextmanager
def control_plane(layout: Layout, ca_file: str) -> Iterator[tuple[ManagedProcess, int]]:
    port = free_port()
    argv = meshroute_argv(
        "control-plane",
        str(layout.directory),
        "--address",
        "127.0.0.1",
        "--port",
        str(port),
        "--health-port",
        "0",
        "--ca-bundle",
        ca_file,
        "--internal-port",
        str(free_port()),
    )
    process = ManagedProcess("control-plane", argv, env={KEY_VARIABLE: "sk-bench"})
    try:
        yield process, port
    finally:
        process.stop()


async def measure_live(layout: Layout, ca_file: str, streams: int, edits: int) -> Live:
    with control_plane(layout, ca_file) as (process, port):
        started = time.perf_counter()
        await asyncio.to_thread(process.wait_for_line, r"serving config version", 900)
        fleet = StreamFleet(f"127.0.0.1:{port}", streams)
        fleet.start()
        try:
            await fleet.until(
                "every stream synced", lambda: all(s.synced for s in fleet.streams), 900
            )
            startup = time.perf_counter() - started
            results = [
                await _one_edit(layout, process, fleet, edit) for edit in range(1, edits + 1)
            ]
            rss, peak = _rss_mb(process.process.pid)
            sample = fleet.streams[0].latest
            sizes = {type_urls.short_name(url): got.size for url, got in sample.items()}
        finally:
            await fleet.stop()
    return Live(streams, startup, results, rss, peak, sizes)


async def _one_edit(layout: Layout, process: ManagedProcess, fleet: StreamFleet, edit: int) -> Edit:
    await asyncio.sleep(1.0)  # let the previous push settle; and let the watcher rest
    before = [
        (stream, stream.holds(type_urls.CLUSTER), stream.holds(type_urls.ROUTE))
        for stream in fleet.streams
    ]
    mark = len(process.lines)
    saved_wall = time.time()
    saved = layout.edit(edit)
    await fleet.until(
        f"edit {edit} reaching every stream",
        lambda: all(
            stream.holds(type_urls.CLUSTER) != clusters and stream.holds(type_urls.ROUTE) != routes
            for stream, clusters, routes in before
        ),
        120,
    )
    latencies = [
        max(stream.latest[type_urls.CLUSTER].at, stream.latest[type_urls.ROUTE].at) - saved
        for stream in fleet.streams
    ]
    reloaded = await asyncio.to_thread(process.wait_for_line, RELOADED.pattern, 60, mark)
    noticed_line = await asyncio.to_thread(process.wait_for_line, NOTICED.pattern, 60, mark)
    match = RELOADED.search(reloaded)
    assert match is not None
    noticed_at = _log_time(noticed_line)
    return Edit(
        noticed=(noticed_at - saved_wall) if noticed_at is not None else float("nan"),
        built=int(match.group(3)) / 1000,
        first_stream=min(latencies),
        all_streams=latencies,
        changed=match.group(2),
    )


# ------------------------------------------------------------------ results


@dataclass(frozen=True)
class SizeResult:
    agents: int
    providers: int
    agent_gateways: int
    model_gateways: int
    config_files: int
    config_bytes: int
    stages: Stages
    live: Live | None


@dataclass
class Result:
    sizes: list[SizeResult] = field(default_factory=list)
    goal: str = (
        "1,000 agents + 200 providers: translate, validate and push <= 2 s; "
        "100 streams hold a change <= 1 s after the save"
    )

    def table(self) -> str:
        lines = [
            "control-plane scale: stages of one reload (one agent edited), in process "
            "(median; seconds); first: the first load's load, validate and total",
            f"{'agents':>7}{'provs':>6}{'gws':>5}{'clusters':>9}{'routes':>8}"
            f"{'load':>8}{'transl':>8}{'valid':>8}{'install':>8}{'total':>8}"
            f"{'1st ld':>8}{'1st val':>8}{'1st tot':>8}",
        ]
        for size in self.sizes:
            st = size.stages
            lines.append(
                f"{size.agents:>7}{size.providers:>6}{size.agent_gateways + size.model_gateways:>5}"
                f"{st.clusters:>9}{st.routes:>8}{st.load:>8.3f}{st.translate:>8.3f}"
                f"{st.validate:>8.3f}{st.install_reload:>8.3f}{st.total:>8.3f}"
                f"{st.load_first:>8.3f}{st.validate_first:>8.3f}{st.total_first:>8.3f}"
            )
        live = [size for size in self.sizes if size.live is not None]
        if live:
            streams = live[0].live.streams if live[0].live else 0
            lines += [
                "",
                f"live: `meshroute control-plane` + {streams} ADS streams; save -> every stream "
                "holds the new clusters and routes (seconds; p50/max over streams and edits)",
                f"{'agents':>7}{'noticed':>9}{'built':>8}{'first':>8}{'all p50':>9}"
                f"{'all max':>9}{'fan-out':>9}{'startup':>9}{'RSS MB':>8}{'peak':>7}"
                f"{'CDS kB':>8}{'RDS kB':>8}",
            ]
            for size in live:
                assert size.live is not None
                run = size.live
                everything = run.save_to_all()
                noticed = statistics.median(edit.noticed for edit in run.edits)
                built = statistics.median(edit.built for edit in run.edits)
                first = statistics.median(edit.first_stream for edit in run.edits)
                fan_out = statistics.median(
                    max(edit.all_streams) - edit.noticed - edit.built for edit in run.edits
                )
                lines.append(
                    f"{size.agents:>7}{noticed:>9.3f}{built:>8.3f}{first:>8.3f}"
                    f"{statistics.median(everything):>9.3f}{max(everything):>9.3f}"
                    f"{fan_out:>9.3f}{run.startup:>9.1f}{run.rss_mb:>8.0f}{run.peak_rss_mb:>7.0f}"
                    f"{run.response_bytes.get('clusters', 0) / 1000:>8.0f}"
                    f"{run.response_bytes.get('routes', 0) / 1000:>8.0f}"
                )
            lines.append(
                "noticed: save -> the control plane's watcher saw it (file events, then 0.05 s "
                "for writes to settle); built: its own 'checked in'; fan-out: the rest, to the "
                "last stream"
            )
        lines.append(f"goal: {self.goal}")
        lines.append(machine_line())
        return "\n".join(lines)


def measure_size(agents: int, ca_file: str, repeats: int, streams: int, edits: int) -> SizeResult:
    settings = DeploymentSettings(ca_bundle=ca_file)
    with tempfile.TemporaryDirectory(prefix="meshroute-scale-") as workdir:
        layout = write_config(Path(workdir), agents, ca_file)
        print(
            f"{agents} agents, {layout.providers} providers, "
            f"{layout.agent_gateways}+{layout.model_gateways} gateways: measuring stages...",
            flush=True,
        )
        stages = measure_stages(layout, settings, repeats)
        live = None
        if streams:
            print(f"  ...and live, with {streams} ADS streams", flush=True)
            live = asyncio.run(measure_live(layout, ca_file, streams, edits))
        return SizeResult(
            agents=agents,
            providers=layout.providers,
            agent_gateways=layout.agent_gateways,
            model_gateways=layout.model_gateways,
            config_files=layout.files,
            config_bytes=layout.bytes,
            stages=stages,
            live=live,
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="5,000 agents is opt-in (--sizes 100 1000 5000): about N more minutes here.",
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=list(DEFAULT_SIZES),
        help="numbers of agents (providers: a fifth of it); default %(default)s",
    )
    parser.add_argument("--streams", type=int, default=100, help="ADS streams (0: stages only)")
    parser.add_argument("--edits", type=int, default=5, help="saves measured per size")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each in-process stage")
    parser.add_argument(
        "--ca-bundle",
        default=None,
        help="CA bundle for the https agents and providers (default: the system's)",
    )
    args = parser.parse_args(argv)
    if min(args.sizes) < 2 or args.streams < 0 or args.edits < 1 or args.repeats < 1:
        parser.error("sizes >= 2, streams >= 0, edits >= 1, repeats >= 1")
    ca_file = args.ca_bundle or default_ca_bundle()
    os.environ[KEY_VARIABLE] = "sk-bench"  # read by read_credentials, in process
    result = Result()
    for agents in args.sizes:
        result.sizes.append(measure_size(agents, ca_file, args.repeats, args.streams, args.edits))
    print(result.table())
    path = write_results("control_plane_scale", dataclasses.asdict(result))
    print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_bench(main))
