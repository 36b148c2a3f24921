"""Soak: ten minutes of mixed traffic through `meshroute up`, with upstream failures
injected and two config reloads on the way. Does anything leak, slow down or break?

One run on loopback: two upstream hosts (tests/support/upstreams.py) serving three
agents and one LLM provider, a stand-in routing model (20 ms), and `meshroute up` with
three gateways: embedded router, orchestrator (decision cache off, so every request
asks the model) and a model gateway (fast path and alias). Clients on keep-alive
connections cycle through the five paths. On the way:

* every 30 s, host `a1` fails its next 20 requests with 503 (retries on the other
  host should hide them); at 40% and 70% of the run it fails everything for 15 s
  (outlier ejection should take it out, then back);
* at one third and two thirds of the run, the config is edited (an agent's
  description) and the bench waits for `up` to serve the new version.

Every 10 s the resident memory of each process of the stack is sampled. The report
is one line per minute: requests, non-200 answers, p50 and p99, memory per process;
how memory grew from the end of the first minute (warm) to the end; the non-200
answers by gateway and status; and Envoy's retry and ejection counters over the
agent clusters, which say why an injected failure got through (a retry refused by
the cluster's retry circuit breaker counts as `upstream_rq_retry_overflow`).

    .venv/bin/python -m bench.soak [--minutes 10] [--connections 8]

Not part of `make bench` (it takes the minutes it is given); results also go to
bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import children, command, machine_line, rss_mib, run_bench, write_results
from bench.gateways import chat_body, start_model
from bench.load import exchange, post_request
from tests.support.configs import agent_yaml, documents, gateway_yaml, provider_yaml
from tests.support.metrics import envoy_stats
from tests.support.processes import ManagedProcess, free_port
from tests.support.stack import UpStack
from tests.support.upstreams import Upstream

AGENTS = {
    "weather": "Weather forecasts, rain, temperature and storms for any city.",
    "flights": "Flight status, delays, gates and airline bookings.",
    "currency": "Currency exchange rates and money conversion.",
}
QUESTIONS = [
    "weather: will it rain in Paris tomorrow?",
    "flights: is flight UA 901 delayed at the gate?",
    "currency: how many yen for 200 euros?",
]
"""Each names its agent, so the stand-in routing model picks it too."""
RETRIES = "retries: {attempts: 3, retryOn: [5xx, reset, connect-failure]}"
OUTLIERS = "outlierDetection: {consecutive5xx: 5, interval: 1s, baseEjectionTime: 5s}"
SAMPLE_SECONDS = 10.0
AGENT_UPSTREAM_STATS = (
    r"^cluster\.agent_[a-z0-9-]+\."
    r"(upstream_rq_retry\w*|outlier_detection\.ejections_enforced_total)$"
)
"""What Envoy did about the injected failures, per agent cluster: retries and ejections."""
CHAT = "/v1/chat/completions"


@dataclass
class Minute:
    """What one minute of the run saw."""

    minute: int
    requests: int = 0
    non_200: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    rss_mib: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, object]:
        cuts = statistics.quantiles(self.latencies_ms, n=100) if len(self.latencies_ms) > 1 else []
        return {
            "minute": self.minute,
            "requests": self.requests,
            "non_200": self.non_200,
            "p50_ms": round(cuts[49], 2) if cuts else None,
            "p99_ms": round(cuts[98], 2) if cuts else None,
            "rss_mib": {name: round(value, 1) for name, value in self.rss_mib.items()},
        }


def write_config(path: Path, hosts: list[Upstream], model_port: int, ports: dict[str, int]) -> None:
    """The whole config, as one file the reloads edit."""
    endpoints = ", ".join(f'"{host.url}"' for host in hosts)
    agents = [
        agent_yaml(name, description, hosts[0].url).replace(
            f'endpoints: ["{hosts[0].url}"]', f"endpoints: [{endpoints}]\n  {RETRIES}\n  {OUTLIERS}"
        )
        for name, description in AGENTS.items()
    ]
    provider = provider_yaml("upstream", hosts[1].url, {"soak-model": "soak-model"})
    names = list(AGENTS)
    orchestrated = gateway_yaml(
        "orchestrated",
        ports["orchestrated"],
        names,
        names[0],
        "router: {type: orchestrator, provider: router, model: plano, cache: {enabled: false}}",
    )
    model_gateway = (
        "apiVersion: meshroute.io/v1alpha1\nkind: Gateway\nmetadata: {name: llm}\n"
        f"spec: {{type: model, port: {ports['llm']}, defaultModel: soak-model, "
        "modelAliases: {quick: soak-model}}\n"
    )
    path.write_text(
        documents(
            *agents,
            provider,
            provider_yaml("router", f"http://127.0.0.1:{model_port}", {"plano": "plano"}),
            gateway_yaml("embedded", ports["embedded"], names, names[0]),
            orchestrated,
            model_gateway,
        )
    )


def requests_to_send(ports: dict[str, int]) -> list[tuple[int, bytes]]:
    """(port, raw HTTP request) for every path, cycled through by each connection."""
    out = []
    for question in QUESTIONS:
        out.append((ports["embedded"], chat_body(question)))
        out.append((ports["orchestrated"], chat_body(question)))
    out.append((ports["llm"], chat_body(QUESTIONS[0], "soak-model")))
    out.append((ports["llm"], chat_body(QUESTIONS[1], "quick")))
    return [(port, post_request("127.0.0.1", port, CHAT, body)) for port, body in out]


class Soak:
    def __init__(self, seconds: float, minutes: list[Minute], stack: UpStack) -> None:
        self.started = time.monotonic()
        self.deadline = self.started + seconds
        self.minutes = minutes
        self.stack = stack
        self.reload_seconds: list[float] = []
        self.failures: Counter[tuple[str, int]] = Counter()
        """Non-200 answers by gateway and status, so the report can say where they arose."""
        self._gateway_at = {port: name for name, port in stack.gateway_ports.items()}

    def minute(self) -> Minute:
        index = int((time.monotonic() - self.started) // 60)
        while len(self.minutes) <= index:
            self.minutes.append(Minute(len(self.minutes) + 1))
        return self.minutes[index]

    async def client(self, offset: int, sends: list[tuple[int, bytes]]) -> None:
        connections: dict[int, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
        turn = offset
        try:
            while time.monotonic() < self.deadline:
                port, request = sends[turn % len(sends)]
                turn += 1
                if port not in connections:
                    connections[port] = await asyncio.open_connection("127.0.0.1", port)
                reader, writer = connections[port]
                began = time.perf_counter()
                try:
                    status = await exchange(reader, writer, request)
                except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                    status = 0  # the connection broke: counted, and a new one opened
                    connections.pop(port)[1].close()
                record = self.minute()
                record.requests += 1
                record.latencies_ms.append((time.perf_counter() - began) * 1000)
                if status != 200:
                    record.non_200[status] = record.non_200.get(status, 0) + 1
                    self.failures[self._gateway_at[port], status] += 1
        finally:
            for _, writer in connections.values():
                writer.close()

    async def inject_failures(self, flaky: Upstream, seconds: float) -> None:
        outages = {round(seconds * 0.4), round(seconds * 0.7)}
        elapsed = 0
        while time.monotonic() < self.deadline:
            await asyncio.sleep(1)
            elapsed += 1
            if elapsed % 30 == 0:
                flaky.fail_next(20)
            if elapsed in outages:
                flaky.always_fail()
            if elapsed - 15 in outages:
                flaky.recover()

    async def reload(self, config: Path, seconds: float) -> None:
        """Two edits; how long each took from save to served."""
        for number, at in enumerate((seconds / 3, 2 * seconds / 3), start=1):
            await asyncio.sleep(max(self.started + at - time.monotonic(), 0))
            self.reload_seconds.append(await asyncio.to_thread(self._edit, config, number))

    def _edit(self, config: Path, number: int) -> float:
        """Change an agent's description; seconds from the save until `up` serves it."""
        seen = len(self.stack.process.lines)
        text = re.sub(r"any city( \(\d+\))?\.", f"any city ({number}).", config.read_text())
        config.write_text(text)
        saved = time.monotonic()
        self.stack.process.wait_for_line("now serving version", start=seen)
        return time.monotonic() - saved

    async def sample_memory(self, pids: dict[str, int]) -> None:
        while time.monotonic() < self.deadline:
            record = self.minute()
            record.rss_mib = {name: rss_mib(pid) for name, pid in pids.items()}
            await asyncio.sleep(SAMPLE_SECONDS)


def stack_processes(stack: UpStack) -> dict[str, int]:
    """The processes of `meshroute up`, by role."""
    up = stack.process.process.pid
    pids = {"up": up}
    for pid in children(up):
        line = command(pid)
        role = next(
            (name for name in ("control-plane", "ext-proc") if f" {name} " in line), "envoy"
        )
        pids[role] = pid
    return pids


async def run(args: argparse.Namespace, stack: UpStack, config: Path, flaky: Upstream) -> Soak:
    seconds = args.minutes * 60
    soak = Soak(seconds, [], stack)
    sends = requests_to_send(stack.gateway_ports)
    await asyncio.gather(
        *(soak.client(index, sends) for index in range(args.connections)),
        soak.inject_failures(flaky, seconds),
        soak.reload(config, seconds),
        soak.sample_memory(stack_processes(stack)),
    )
    return soak


def upstream_handling(stats: dict[str, int]) -> dict[str, int]:
    """The agent clusters' retry and ejection counters, summed over the clusters."""
    totals: Counter[str] = Counter()
    for name, value in stats.items():
        totals[name.split(".", 2)[2]] += value
    return dict(sorted(totals.items()))


def report(soak: Soak, upstream: dict[str, int]) -> dict[str, object]:
    minutes = soak.minutes
    # The last requests in flight at the deadline land in a minute of their own: fold
    # them into the one before, which has the memory samples.
    if len(minutes) > 1 and not minutes[-1].rss_mib:
        tail = minutes.pop()
        minutes[-1].requests += tail.requests
        minutes[-1].latencies_ms += tail.latencies_ms
        for status, count in tail.non_200.items():
            minutes[-1].non_200[status] = minutes[-1].non_200.get(status, 0) + count
    print(f"{'min':>4}{'requests':>10}{'non-200':>9}{'p50 ms':>9}{'p99 ms':>9}   RSS MiB")
    for record in minutes:
        summary = record.summary()
        errors = sum(record.non_200.values())
        memory = "  ".join(f"{name} {value:.0f}" for name, value in record.rss_mib.items())
        print(
            f"{record.minute:>4}{record.requests:>10}{errors:>9}"
            f"{summary['p50_ms'] or 0:>9.2f}{summary['p99_ms'] or 0:>9.2f}   {memory}"
        )
    warm, last = minutes[0].rss_mib, minutes[-1].rss_mib
    growth = {name: round(last[name] - warm[name], 1) for name in warm if name in last}
    total = sum(record.requests for record in minutes)
    failed = sum(sum(record.non_200.values()) for record in minutes)
    print(f"requests {total}, non-200 {failed} ({100 * failed / max(total, 1):.3f}%)")
    grew = ", ".join(f"{name} {mib:+.1f}" for name, mib in growth.items())
    print(f"memory growth after minute 1 (MiB): {grew}")
    where = ", ".join(
        f"{gateway} {status}: {count}" for (gateway, status), count in sorted(soak.failures.items())
    )
    print(f"non-200 by gateway and status: {where or 'none'}")
    print("agent clusters: " + ", ".join(f"{name} {value}" for name, value in upstream.items()))
    reloads = soak.reload_seconds
    print("reloads, save to served (s): " + ", ".join(f"{value:.2f}" for value in reloads))
    return {
        "minutes": [record.summary() for record in minutes],
        "requests": total,
        "non_200": failed,
        "non_200_by_gateway": {
            f"{gateway} {status}": count for (gateway, status), count in soak.failures.items()
        },
        "agent_clusters": upstream,
        "memory_growth_mib": growth,
        "reload_seconds": reloads,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--model-ms", type=float, default=20.0)
    args = parser.parse_args(argv)
    hosts = [Upstream("a1"), Upstream("a2")]
    model_port = free_port()
    ports = {"embedded": free_port(), "orchestrated": free_port(), "llm": free_port()}
    model: ManagedProcess | None = None
    stack: UpStack | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="meshroute-soak-") as workdir:
            model = start_model(model_port, args.model_ms)
            config = Path(workdir) / "config"
            config.mkdir()
            write_config(config / "soak.yaml", hosts, model_port, ports)
            stack = UpStack([config], ports)
            soak = asyncio.run(run(args, stack, config / "soak.yaml", hosts[0]))
            upstream = upstream_handling(envoy_stats(stack.admin, AGENT_UPSTREAM_STATS))
    finally:
        if stack is not None:
            stack.stop()
        if model is not None:
            model.stop()
        for host in hosts:
            host.close()
    print(f"meshroute soak: {args.minutes:g} min, {args.connections} connections, 5 paths")
    results = report(soak, upstream)
    print(machine_line())
    print(f"results written to {write_results('soak', {**vars(args), **results})}")
    return 0


if __name__ == "__main__":
    sys.exit(run_bench(main))
