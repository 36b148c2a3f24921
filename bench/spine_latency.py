"""How much latency does the gateway add? p50/p99 through it vs. straight to the agent.

Chat requests go through the agent gateway (Envoy + the ext_proc routing sidecar)
and, interleaved with them, straight to the demo agent the gateway picked for the
same question, in one run, so both sets share the machine and the moment. Timing
goals live here in bench/, never in tests: milliseconds asserted in a test fail on a
busy machine without anything being wrong.

    make bench            # or: .venv/bin/python -m bench.spine_latency [--requests N]

It starts the demo agents and `meshroute up` on free loopback ports (with the test
suite's own helpers, so there is one way to run a stack), prints a table and writes
bench/results/spine_latency.json. Everything it starts is stopped on exit.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.common import Summary, Target, finish, machine
from tests.support.configs import quickstart_config
from tests.support.processes import ManagedProcess, free_port, meshroute_argv, port_open
from tests.support.stack import UpStack

RESULTS = Path(__file__).resolve().parent / "results" / "spine_latency.json"
QUESTIONS = (
    "Will it rain in Paris tomorrow?",
    "Is there a direct flight from Boston to Lisbon on Friday?",
    "How many euros is 250 US dollars?",
    "Do I need an umbrella in London this weekend?",
    "Is UA 901 from Denver on time?",
    "What's the exchange rate from yen to pounds today?",
)


@dataclass(frozen=True)
class Result:
    requests: int
    direct: Summary
    gateway: Summary
    failures: list[str]
    routing: dict[str, str]
    machine: dict[str, str]

    def table(self) -> str:
        def row(name: str, p50: str, p99: str, mean: str) -> str:
            return f"{name:<28}{p50:>9}{p99:>9}{mean:>10}"

        added = Summary(
            *(g - d for g, d in zip(_fields(self.gateway), _fields(self.direct), strict=True))
        )
        ratio = [g / d for g, d in zip(_fields(self.gateway), _fields(self.direct), strict=True)]
        return "\n".join(
            [
                f"meshroute spine latency: {self.requests} sequential requests per target "
                "(concurrency 1), interleaved, one run",
                row("target", "p50 ms", "p99 ms", "mean ms"),
                row("direct to demo agent", *(f"{v:.2f}" for v in _fields(self.direct))),
                row("through meshroute gateway", *(f"{v:.2f}" for v in _fields(self.gateway))),
                row("added by gateway", *(f"{v:+.2f}" for v in _fields(added))),
                row("ratio (gateway / direct)", *(f"{v:.1f}x" for v in ratio)),
                "machine: " + ", ".join(f"{key} {value}" for key, value in self.machine.items()),
            ]
        )


def _fields(summary: Summary) -> tuple[float, float, float]:
    return (summary.p50, summary.p99, summary.mean)


def measure(gateway_url: str, demo_port: int, requests: int, warmup: int) -> Result:
    with httpx.Client(timeout=30) as gateway_client, httpx.Client(timeout=30) as direct_client:
        gateway = Target("gateway", gateway_client)
        direct = Target("direct", direct_client)
        # The agent the gateway picks for each question; direct requests go to the same one.
        chosen = {}
        for question in QUESTIONS:
            reply = gateway_client.post(
                gateway_url, json={"messages": [{"role": "user", "content": question}]}
            )
            reply.raise_for_status()
            chosen[question] = reply.headers["x-meshroute-agent"]
        for index in range(warmup + requests):
            question = QUESTIONS[index % len(QUESTIONS)]
            agent = chosen[question]
            direct_url = f"http://127.0.0.1:{demo_port}/agents/{agent}/v1/chat/completions"
            through = gateway.post(gateway_url, question, "x-meshroute-agent", agent)
            straight = direct.post(direct_url, question, "x-demo-agent", agent)
            if index >= warmup:
                if through is not None:
                    gateway.samples_ms.append(through)
                if straight is not None:
                    direct.samples_ms.append(straight)
    return Result(
        requests=requests,
        direct=Summary.of(direct.samples_ms),
        gateway=Summary.of(gateway.samples_ms),
        failures=[f"{t.name}: {f}" for t in (direct, gateway) for f in t.failures],
        routing=chosen,
        machine=machine(),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="measured requests per target")
    parser.add_argument("--warmup", type=int, default=50, help="unmeasured requests first")
    args = parser.parse_args(argv)
    if args.requests < 2 or args.warmup < 0:
        parser.error("--requests must be at least 2 and --warmup at least 0")

    demo_port, gateway_port = free_port(), free_port()
    demo = ManagedProcess("demo-agents", meshroute_argv("demo-agents", "--port", str(demo_port)))
    stack: UpStack | None = None
    try:
        demo.wait_until(lambda: port_open(demo_port), "demo agents listening")
        with tempfile.TemporaryDirectory(prefix="meshroute-bench-") as workdir:
            config = quickstart_config(Path(workdir), gateway_port, demo_port)
            stack = UpStack([config], {"travel": gateway_port})
            result = measure(stack.url("travel"), demo_port, args.requests, args.warmup)
    finally:
        if stack is not None:
            stack.stop()
        demo.stop()
    return finish(result, result.table(), result.failures, RESULTS)


if __name__ == "__main__":
    sys.exit(main())
