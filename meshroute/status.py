"""`meshroute status`: one look at a running meshroute, from the outside.

It reads three HTTP endpoints a deployment already has, so it needs no access to
the processes or to Kubernetes: the control plane's `/status` (which xDS clients are
connected, what each ACKed or NACKed), Envoy's admin endpoint (server state, traffic
and endpoint health of the agent and provider clusters) and the routing sidecar's
Prometheus metrics (its decisions). A source that cannot be read gets its reason in
its own section and makes the exit code 1; the others are still shown, because a
half-broken system is exactly when this command is run.

Fetching (`collect`) is kept apart from parsing and rendering, which are pure
functions over the dataclasses below, so they are tested on canned data.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import math
import os
import re
import socket
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import aiohttp
import pydantic
from prometheus_client.parser import text_string_to_metric_families

from meshroute.control_plane.translate.names import agent_cluster, provider_cluster

TIMEOUT_SECONDS = 2.0
WIDTH = 100

# The clusters worth watching are the ones the control plane generates for agents
# (and their variants) and providers; the static xDS/ext_proc/admin ones are not.
UPSTREAM_PREFIXES = (agent_cluster(""), provider_cluster(""))

# The sidecar's counter of routing decisions, as a sample name (with `_total`).
DECISIONS_SAMPLE = "meshroute_routing_decisions_total"

T = TypeVar("T")

# ------------------------------------------------------------------------ data


@dataclass(frozen=True)
class TypeState:
    """One resource type as one xDS client last answered it (None: not yet)."""

    type: str
    acked: str | None = None
    nacked: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class XdsClient:
    """An Envoy or ext_proc server connected to the control plane."""

    node: str
    kind: str
    protocol: str
    connected_seconds: float | None = None
    types: list[TypeState] = field(default_factory=list)

    def behind(self, serving_version: str | None) -> bool:
        """True when some type has not ACKed the version being served (yet, or ever)."""
        if serving_version is None:
            return False
        return any(state.acked != serving_version for state in self.types)

    @property
    def nacks(self) -> list[TypeState]:
        return [state for state in self.types if state.nacked is not None]


@dataclass(frozen=True)
class ControlPlaneStatus:
    serving_version: str | None
    clients: list[XdsClient] = field(default_factory=list)


@dataclass(frozen=True)
class UpstreamCounters:
    """Envoy's cumulative request counters of one cluster.

    Measured on Envoy 1.40: a request Envoy could not even connect for (its own 503)
    counts in `upstream_rq_5xx` and `upstream_rq_completed` but not in
    `upstream_rq_total`, so a dead agent would show 0 req/s and errors above 100%.
    Rates and error ratios therefore use `completed` (every request that got a status
    code, from the agent or from Envoy) as "all". `upstream_rq_5xx` is created on the
    first 5xx: absent means 0.
    """

    completed: int = 0
    errors_5xx: int = 0


@dataclass(frozen=True)
class StatsSample:
    """Counters per upstream cluster, and when (monotonic seconds) they were read."""

    at: float
    counters: dict[str, UpstreamCounters]


@dataclass(frozen=True)
class EndpointHealth:
    healthy: int
    total: int


@dataclass(frozen=True)
class ClusterTraffic:
    """One upstream cluster over the sampling window (None: cannot be computed)."""

    name: str
    requests_per_second: float | None
    error_ratio: float | None
    completed: int | None
    errors_5xx: int | None
    healthy: int
    endpoints: int


@dataclass(frozen=True)
class EnvoyStatus:
    state: str
    version: str
    window_seconds: float
    clusters: list[ClusterTraffic]


@dataclass(frozen=True)
class Decisions:
    """How many requests the sidecar sent to `target` for `reason`, since it started."""

    gateway: str
    target: str
    reason: str
    count: float


@dataclass(frozen=True)
class SidecarStatus:
    decisions: list[Decisions]

    @property
    def total(self) -> float:
        return sum((decision.count for decision in self.decisions), 0.0)


@dataclass(frozen=True)
class Section(Generic[T]):
    """What one source said (`data`), or why it said nothing (`error`)."""

    url: str
    data: T | None = None
    error: str | None = None


@dataclass(frozen=True)
class Status:
    control_plane: Section[ControlPlaneStatus]
    envoy: Section[EnvoyStatus]
    sidecar: Section[SidecarStatus]

    @property
    def unreachable(self) -> list[str]:
        """The URLs that could not be read."""
        sections = (self.control_plane, self.envoy, self.sidecar)
        return [section.url for section in sections if section.error is not None]

    @property
    def exit_code(self) -> int:
        return 1 if self.unreachable else 0


# ------------------------------------------------------------------------ parsing


class BadAnswer(ValueError):
    """A source answered, but not in the shape we read."""


@functools.cache
def _control_plane_adapter() -> pydantic.TypeAdapter[ControlPlaneStatus]:
    # Built once, on first use: `meshroute status --help` should not pay for it.
    return pydantic.TypeAdapter(ControlPlaneStatus)


def parse_control_plane(body: str) -> ControlPlaneStatus:
    """The control plane's `/status` JSON; unknown fields are ignored (newer servers)."""
    status = _control_plane_adapter().validate_json(body)
    clients = sorted(status.clients, key=lambda client: client.node)
    return dataclasses.replace(status, clients=clients)


def _stats_pattern() -> str:
    """The filter (RE2 in Envoy, re here) selecting the upstream counters we read."""
    prefixes = "|".join(re.escape(prefix) for prefix in UPSTREAM_PREFIXES)
    return rf"^cluster\.((?:{prefixes})[^.]*)\.upstream_rq_(completed|5xx)$"


_STAT_NAME = re.compile(_stats_pattern())


def parse_stats(body: str, at: float) -> StatsSample:
    """Envoy's `/stats?format=json`: `{"stats": [{"name", "value"}, {"histograms"}...]}`."""
    document = json.loads(body)
    if not isinstance(document, dict) or not isinstance(document.get("stats"), list):
        raise BadAnswer('no "stats" list in /stats?format=json')
    found: dict[str, dict[str, int]] = {}
    for stat in document["stats"]:
        if not isinstance(stat, dict) or not isinstance(stat.get("name"), str):
            continue  # the histograms entry, when not filtered out
        match = _STAT_NAME.match(stat["name"])
        if match is None or not isinstance(stat.get("value"), int):
            continue
        found.setdefault(match.group(1), {})[match.group(2)] = stat["value"]
    counters = {
        name: UpstreamCounters(values.get("completed", 0), values.get("5xx", 0))
        for name, values in found.items()
    }
    return StatsSample(at, counters)


# Flags in Envoy's HostHealthStatus that take a host out of normal rotation (Envoy
# itself calls such a host unhealthy or degraded). proto3 JSON omits false ones.
_FAILED_FLAGS = (
    "failed_active_health_check",
    "failed_outlier_check",
    "failed_active_degraded_check",
    "active_hc_timeout",
)
_GOOD_EDS_STATUSES = ("HEALTHY", "UNKNOWN")


def _host_healthy(health: Mapping[str, Any]) -> bool:
    if any(health.get(flag) is True for flag in _FAILED_FLAGS):
        return False
    return health.get("eds_health_status", "UNKNOWN") in _GOOD_EDS_STATUSES


def is_upstream(cluster: str) -> bool:
    return cluster.startswith(UPSTREAM_PREFIXES)


def parse_clusters(body: str) -> dict[str, EndpointHealth]:
    """Envoy's `/clusters?format=json`: endpoint health of the upstream clusters."""
    document = json.loads(body)
    statuses = document.get("cluster_statuses", []) if isinstance(document, dict) else None
    if not isinstance(statuses, list):
        raise BadAnswer('no "cluster_statuses" list in /clusters?format=json')
    health: dict[str, EndpointHealth] = {}
    for cluster in statuses:
        name = cluster.get("name") if isinstance(cluster, dict) else None
        if not isinstance(name, str) or not is_upstream(name):
            continue
        hosts = [host.get("health_status", {}) for host in cluster.get("host_statuses", [])]
        health[name] = EndpointHealth(sum(map(_host_healthy, hosts)), len(hosts))
    return health


def parse_server_info(body: str) -> tuple[str, str]:
    """Envoy's state (LIVE, DRAINING, PRE_INITIALIZING, INITIALIZING) and its version.

    `version` reads `<sha>/1.40.0/Clean/RELEASE/BoringSSL`; the number is what people
    want to see.
    """
    document = json.loads(body)
    if not isinstance(document, dict) or not isinstance(document.get("state"), str):
        raise BadAnswer('no "state" in /server_info')
    version = str(document.get("version", "?"))
    parts = version.split("/")
    return document["state"], parts[1] if len(parts) > 1 else version


def traffic(
    first: StatsSample, second: StatsSample, health: Mapping[str, EndpointHealth]
) -> list[ClusterTraffic]:
    """Per upstream cluster: rate and 5xx ratio between two samples, and endpoint health.

    A counter that went down (Envoy restarted in between) gives no rate rather than a
    negative one.
    """
    window = second.at - first.at
    names = sorted(set(health) | set(first.counters) | set(second.counters))
    clusters = []
    for name in names:
        before = first.counters.get(name, UpstreamCounters())
        after = second.counters.get(name, UpstreamCounters())
        completed = after.completed - before.completed
        errors = after.errors_5xx - before.errors_5xx
        valid = window > 0 and completed >= 0 and errors >= 0
        endpoints = health.get(name, EndpointHealth(0, 0))
        clusters.append(
            ClusterTraffic(
                name=name,
                requests_per_second=completed / window if valid else None,
                error_ratio=errors / completed if valid and completed > 0 else None,
                completed=completed if valid else None,
                errors_5xx=errors if valid else None,
                healthy=endpoints.healthy,
                endpoints=endpoints.total,
            )
        )
    return clusters


def parse_decisions(text: str) -> SidecarStatus:
    """The sidecar's Prometheus text: decisions per (gateway, target, reason).

    Matched by sample name, so it reads the counter whether or not the exposition
    declares its `# TYPE` (the family is then named with `_total`).
    """
    counts: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name != DECISIONS_SAMPLE:
                continue
            labels = sample.labels
            key = (labels.get("gateway", ""), labels.get("target", ""), labels.get("reason", ""))
            counts[key] = counts.get(key, 0.0) + float(sample.value)
    return SidecarStatus([Decisions(*key, count) for key, count in sorted(counts.items())])


# ------------------------------------------------------------------------ fetching


class Unreachable(Exception):
    """A source could not be read; the message says why, in a few words."""


def _os_reason(error: OSError) -> str:
    """Says "Connection refused", not asyncio's "Connect call failed ('127.0.0.1', 1)"."""
    if isinstance(error, socket.gaierror):
        return error.strerror or str(error)
    if error.errno:
        return os.strerror(error.errno)
    return str(error) or type(error).__name__


async def _get(
    session: aiohttp.ClientSession, url: str, params: Mapping[str, str] | None = None
) -> str:
    """The body of a 200 answer; anything else raises Unreachable with the reason."""
    try:
        async with session.get(url, params=params) as response:
            body = await response.text()
            if response.status != 200:
                raise Unreachable(f"HTTP {response.status} {response.reason} from {url}")
            return body
    except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError):
        raise Unreachable(f"not an http(s) URL: {url}") from None
    except aiohttp.ClientConnectorError as error:
        raise Unreachable(
            f"cannot connect to {error.host}:{error.port}: {_os_reason(error.os_error)}"
        ) from None
    except TimeoutError:
        raise Unreachable(f"no answer within {session.timeout.total:g}s from {url}") from None
    except aiohttp.ClientError as error:
        detail = str(error)
        raise Unreachable(f"{type(error).__name__}: {detail}" if detail else repr(error)) from None


def _join(base: str, path: str) -> str:
    return base.rstrip("/") + path


async def read_control_plane(session: aiohttp.ClientSession, base: str) -> ControlPlaneStatus:
    return parse_control_plane(await _get(session, _join(base, "/status")))


async def _sample(session: aiohttp.ClientSession, base: str) -> StatsSample:
    params = {"format": "json", "type": "Counters", "filter": _stats_pattern()}
    body = await _get(session, _join(base, "/stats"), params)
    return parse_stats(body, time.monotonic())


async def read_envoy(session: aiohttp.ClientSession, base: str, interval: float) -> EnvoyStatus:
    """State, endpoint health and two counter samples `interval` seconds apart."""
    info, clusters, first = await asyncio.gather(
        _get(session, _join(base, "/server_info")),
        _get(session, _join(base, "/clusters"), {"format": "json"}),
        _sample(session, base),
    )
    await asyncio.sleep(interval)
    second = await _sample(session, base)
    state, version = parse_server_info(info)
    window = second.at - first.at
    return EnvoyStatus(state, version, window, traffic(first, second, parse_clusters(clusters)))


async def read_sidecar(session: aiohttp.ClientSession, url: str) -> SidecarStatus:
    return parse_decisions(await _get(session, url))


async def _section(url: str, read: Awaitable[T]) -> Section[T]:
    """Run one source's reader; any failure becomes the section's reason, not a traceback."""
    try:
        return Section(url, data=await read)
    except Unreachable as error:
        return Section(url, error=str(error))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        # Bad JSON, a shape we do not know, unparsable Prometheus text.
        return Section(url, error=f"unexpected answer: {shorten(_describe(error), 160)}")
    except Exception as error:  # anything else: still one section's problem, not the run's
        return Section(url, error=shorten(f"{type(error).__name__}: {error}", 160))


def _describe(error: Exception) -> str:
    """pydantic's own text spans lines and ends in a link; the field and problem suffice."""
    if isinstance(error, pydantic.ValidationError):
        problems = error.errors(include_url=False, include_input=False)
        return "; ".join(
            f"{'.'.join(map(str, problem['loc'])) or 'body'}: {problem['msg']}"
            for problem in problems[:3]
        )
    return str(error) or type(error).__name__


async def collect(
    control_plane: str,
    admin: str,
    ext_proc_metrics: str,
    interval: float,
    request_timeout: float = TIMEOUT_SECONDS,
) -> Status:
    """Read all three sources concurrently; each fails on its own."""
    client_timeout = aiohttp.ClientTimeout(total=request_timeout)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        cp, envoy, sidecar = await asyncio.gather(
            _section(control_plane, read_control_plane(session, control_plane)),
            _section(admin, read_envoy(session, admin, interval)),
            _section(ext_proc_metrics, read_sidecar(session, ext_proc_metrics)),
        )
    return Status(cp, envoy, sidecar)


# ------------------------------------------------------------------------ rendering


def shorten(text: str, width: int) -> str:
    """`text` on one line, cut to `width` characters with "..." when longer."""
    line = " ".join(text.split())
    if len(line) <= width:
        return line
    return line[: max(width - 3, 0)] + "..."


def _shorten_middle(text: str, width: int) -> str:
    """Names that differ at the end (pod hash, pid, variant): keep both ends."""
    if len(text) <= width:
        return text
    head = (width - 3) // 2
    return text[:head] + "..." + text[len(text) - (width - 3 - head) :]


def format_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_ratio(value: float | None) -> str:
    """0%, 2.5%, 100%: one decimal, none when it is .0."""
    if value is None:
        return "-"
    text = f"{value * 100:.1f}"
    return text.removesuffix(".0") + "%"


def format_duration(seconds: float | None) -> str:
    """12s, 3m05s, 2h01m, 3d04h."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-"
    whole = int(seconds)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def format_count(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[int]:
    return [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]


def _row(cells: Sequence[str], widths: Sequence[int], right: frozenset[int]) -> str:
    padded = [
        cell.rjust(width) if i in right else cell.ljust(width)
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
    ]
    return ("  " + "  ".join(padded)).rstrip()


def _table(
    header: Sequence[str], rows: Sequence[Sequence[str]], right: frozenset[int] = frozenset()
) -> list[str]:
    widths = _columns(header, rows)
    return [_row(row, widths, right) for row in [header, *rows]]


def _title(name: str, section: Section[Any], summary: str = "", width: int = WIDTH) -> list[str]:
    """The section's first line, wrapped rather than cut: a reason is worth reading whole."""
    if section.error is not None:
        line = f"{name} ({section.url}): unreachable: {section.error}"
    else:
        line = f"{name} ({section.url}){': ' + summary if summary else ''}"
    return textwrap.wrap(line, width, subsequent_indent="    ", break_on_hyphens=False)


def _client_state(client: XdsClient, serving_version: str | None) -> str:
    flags = []
    if client.behind(serving_version):
        flags.append("behind")
    if client.nacks:
        flags.append("NACK")
    return " ".join(flags) or "ok"


def render_control_plane(section: Section[ControlPlaneStatus], width: int = WIDTH) -> list[str]:
    status = section.data
    if status is None:
        return _title("Control plane", section, width=width)
    serving = status.serving_version
    count = len(status.clients)
    summary = (
        f"serving version {serving}" if serving is not None else "no config served yet"
    ) + f", {count} xDS client{'s' if count != 1 else ''}"
    lines = _title("Control plane", section, summary, width)
    if not status.clients:
        return lines
    header = ["NODE", "KIND", "XDS", "UP", "STATE"]
    rows = [
        [
            _shorten_middle(client.node, 36),
            client.kind,
            client.protocol,
            format_duration(client.connected_seconds),
            _client_state(client, serving),
        ]
        for client in status.clients
    ]
    widths = _columns(header, rows)
    prefix = 2 + sum(widths) + 2 * len(widths)  # the indent, each column and its gap
    acked_width = max(width - prefix, 24)
    lines.append(_row(header, widths, frozenset()).ljust(prefix) + "ACKED")
    for client, row in zip(status.clients, rows, strict=True):
        acked = [f"{state.type}={state.acked or '-'}" for state in client.types]
        wrapped = _wrap_tokens(acked, acked_width) or ["-"]
        lines.append(_row(row, widths, frozenset()).ljust(prefix) + wrapped[0])
        lines.extend(" " * prefix + more for more in wrapped[1:])
        for state in client.nacks:
            detail = f"NACK {state.type} version {state.nacked}: {state.error or '(no detail)'}"
            lines.append("      " + shorten(detail, width - 6))
    return lines


def _wrap_tokens(tokens: Sequence[str], width: int) -> list[str]:
    """Tokens joined by spaces, a new line where the next would pass `width`; a token
    is never split, even one with a space in it."""
    lines: list[str] = []
    for token in tokens:
        if lines and len(lines[-1]) + 1 + len(token) <= width:
            lines[-1] += " " + token
        else:
            lines.append(token)
    return lines


def _health_note(cluster: ClusterTraffic) -> str:
    if cluster.endpoints == 0:
        return "no endpoints"
    if cluster.healthy == 0:
        return "no healthy endpoint"
    if cluster.healthy < cluster.endpoints:
        return "some endpoints unhealthy"
    return ""


def render_envoy(section: Section[EnvoyStatus]) -> list[str]:
    status = section.data
    if status is None:
        return _title("Envoy", section)
    summary = f"{status.state}, Envoy {status.version}, rates over {status.window_seconds:.1f}s"
    lines = _title("Envoy", section, summary)
    if not status.clusters:
        lines.append(f"  no upstream clusters ({', '.join(p + '*' for p in UPSTREAM_PREFIXES)})")
        return lines
    rows = [
        [
            _shorten_middle(cluster.name, 40),
            format_rate(cluster.requests_per_second),
            format_ratio(cluster.error_ratio),
            f"{cluster.healthy}/{cluster.endpoints}",
            _health_note(cluster),
        ]
        for cluster in status.clusters
    ]
    header = ["CLUSTER", "REQ/S", "5XX", "HEALTHY", ""]
    lines.extend(_table(header, rows, right=frozenset({1, 2, 3})))
    return lines


def render_sidecar(section: Section[SidecarStatus]) -> list[str]:
    status = section.data
    if status is None:
        return _title("Routing sidecar", section)
    total = format_count(status.total)
    lines = _title("Routing sidecar", section, f"{total} routing decisions since it started")
    rows = [
        [
            *(_shorten_middle(text, 28) for text in (decision.gateway, decision.target)),
            _shorten_middle(decision.reason, 20),
            format_count(decision.count),
        ]
        for decision in status.decisions
    ]
    if rows:
        lines.extend(_table(["GATEWAY", "TARGET", "REASON", "DECISIONS"], rows, frozenset({3})))
    return lines


def render(status: Status, width: int = WIDTH) -> str:
    """The terminal view: one section per source, blank lines between them."""
    sections = [
        render_control_plane(status.control_plane, width),
        render_envoy(status.envoy),
        render_sidecar(status.sidecar),
    ]
    return "\n\n".join("\n".join(lines) for lines in sections) + "\n"


def _section_json(section: Section[T], data: Callable[[T], dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "url": section.url,
        "reachable": section.error is None,
        "error": section.error,
    }
    if section.data is not None:
        out.update(data(section.data))
    return out


def _control_plane_json(status: ControlPlaneStatus) -> dict[str, Any]:
    return {
        "serving_version": status.serving_version,
        "clients": [
            {
                **dataclasses.asdict(client),
                "behind": client.behind(status.serving_version),
                "nack": bool(client.nacks),
            }
            for client in status.clients
        ],
    }


def _sidecar_json(status: SidecarStatus) -> dict[str, Any]:
    return {**dataclasses.asdict(status), "total": status.total}


def to_json(status: Status) -> dict[str, Any]:
    """The same data as `render`, for scripts: flags computed, nothing formatted."""
    return {
        "ok": status.exit_code == 0,
        "control_plane": _section_json(status.control_plane, _control_plane_json),
        "envoy": _section_json(status.envoy, dataclasses.asdict),
        "sidecar": _section_json(status.sidecar, _sidecar_json),
    }


# ------------------------------------------------------------------------ command


def run_status(
    control_plane: str, admin: str, ext_proc_metrics: str, interval: float, as_json: bool
) -> int:
    """`meshroute status`: print the view; 1 when any source was unreachable, else 0."""
    if not math.isfinite(interval) or interval <= 0:
        print("error: --interval must be a positive number of seconds", file=sys.stderr)
        return 2
    status = asyncio.run(collect(control_plane, admin, ext_proc_metrics, interval))
    if as_json:
        print(json.dumps(to_json(status), indent=2))
    else:
        sys.stdout.write(render(status))
    return status.exit_code
