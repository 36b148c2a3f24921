"""What does routing by a model cost beyond the model itself?

Three ways to the same agent, interleaved in one run: straight to the agent; through
a gateway whose embedded router decides; through a gateway that asks a routing model
(a stand-in answering in a fixed time, default 50 ms, with the decision cache off so
every request asks it). The orchestrator path's overhead is its latency minus the
direct latency minus the model's own fixed time.

    .venv/bin/python -m bench.orchestrator_latency [--requests N] [--model-ms 50]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from bench.common import Summary, Target, finish, machine
from meshroute.ext_proc.orchestrator import Route, build_prompt
from tests.support.configs import QUICKSTART, provider_yaml
from tests.support.processes import ManagedProcess, free_port, meshroute_argv, port_open
from tests.support.stack import UpStack

RESULTS = Path(__file__).resolve().parent / "results" / "orchestrator_latency.json"
# The stand-in model picks the agent whose name the message mentions.
QUESTIONS = (
    ("weather: will it rain in Paris tomorrow?", "weather"),
    ("flights: is UA 901 from Denver on time?", "flights"),
    ("currency: how many euros is 250 dollars?", "currency"),
)


def write_config(directory: Path, agents_url: str, model_port: int, ports: dict[str, int]) -> None:
    for source in QUICKSTART.glob("*.yaml"):
        text = source.read_text().replace("http://127.0.0.1:9100", agents_url)
        text = text.replace("port: 8001", f"port: {ports['travel']}")
        (directory / source.name).write_text(text)
    (directory / "orchestrated.yaml").write_text(
        provider_yaml("router", f"http://127.0.0.1:{model_port}", {"plano": "stand-in"})
        + "---\n"
        + textwrap.dedent(
            f"""\
            apiVersion: meshroute.io/v1alpha1
            kind: Gateway
            metadata: {{name: orchestrated}}
            spec:
              port: {ports["orchestrated"]}
              agents: [{{name: weather, default: true}}, {{name: flights}}, {{name: currency}}]
              router:
                type: orchestrator
                provider: router
                model: plano
                timeout: 5s
                cache: {{enabled: false}}
            """
        )
    )


@dataclasses.dataclass(frozen=True)
class Result:
    requests: int
    model_ms: float
    direct: Summary
    model: Summary
    """A routing prompt sent straight to the model: its own latency, as a client sees it."""
    embedded: Summary
    orchestrated: Summary
    failures: list[str]
    machine: dict[str, str]

    def table(self) -> str:
        def row(name: str, values: Sequence[str]) -> str:
            return f"{name:<36}" + "".join(f"{value:>10}" for value in values)

        def cells(summary: Summary) -> list[str]:
            return [f"{summary.p50:.2f}", f"{summary.p99:.2f}", f"{summary.mean:.2f}"]

        def minus(a: Summary, *others: Summary) -> list[str]:
            return [
                f"{a.p50 - sum(o.p50 for o in others):+.2f}",
                f"{a.p99 - sum(o.p99 for o in others):+.2f}",
                f"{a.mean - sum(o.mean for o in others):+.2f}",
            ]

        return "\n".join(
            [
                f"meshroute orchestrator latency: {self.requests} sequential requests per "
                f"target, interleaved, one run; routing model answers in {self.model_ms:g} ms",
                row("target", ["p50 ms", "p99 ms", "mean ms"]),
                row("direct to agent", cells(self.direct)),
                row("direct to routing model", cells(self.model)),
                row("embedded router gateway", cells(self.embedded)),
                row("orchestrator gateway", cells(self.orchestrated)),
                row("embedded path adds", minus(self.embedded, self.direct)),
                row(
                    "orchestrator path adds, beyond model",
                    minus(self.orchestrated, self.direct, self.model),
                ),
                "machine: " + ", ".join(f"{k} {v}" for k, v in self.machine.items()),
            ]
        )


def measure(
    stack: UpStack, *, agents_url: str, model_url: str, requests: int, warmup: int, model_ms: float
) -> Result:
    clients = [httpx.Client(timeout=30) for _ in range(4)]
    direct, model, embedded, orchestrated = (
        Target(name, client)
        for name, client in zip(
            ("direct", "model", "embedded", "orchestrated"), clients, strict=True
        )
    )
    try:
        for index in range(warmup + requests):
            question, agent = QUESTIONS[index % len(QUESTIONS)]
            samples = (
                _ask_model(model, model_url, question, agent),
                direct.post(
                    f"{agents_url}/agents/{agent}/v1/chat/completions",
                    question,
                    "x-demo-agent",
                    agent,
                ),
                embedded.post(stack.url("travel"), question, "x-meshroute-agent", agent),
                orchestrated.post(stack.url("orchestrated"), question, "x-meshroute-agent", agent),
            )
            if index >= warmup:
                targets = (model, direct, embedded, orchestrated)
                for target, sample in zip(targets, samples, strict=True):
                    if sample is not None:
                        target.samples_ms.append(sample)
    finally:
        for client in clients:
            client.close()
    return Result(
        requests=requests,
        model_ms=model_ms,
        direct=Summary.of(direct.samples_ms),
        model=Summary.of(model.samples_ms),
        embedded=Summary.of(embedded.samples_ms),
        orchestrated=Summary.of(orchestrated.samples_ms),
        failures=[
            f"{t.name}: {f}" for t in (model, direct, embedded, orchestrated) for f in t.failures
        ],
        machine=machine(),
    )


def _ask_model(model: Target, url: str, question: str, agent: str) -> float | None:
    """The routing prompt the sidecar would send, straight to the model."""
    routes = [Route(name, f"the {name} agent") for name in ("weather", "flights", "currency")]
    prompt = build_prompt(routes, [{"role": "user", "content": question}])
    body = {
        "model": "stand-in",
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
    }
    started = time.perf_counter()
    response = model.client.post(url, json=body)
    elapsed_ms = (time.perf_counter() - started) * 1000
    if response.status_code != 200 or agent not in response.text:
        model.failures.append(f"HTTP {response.status_code}: {response.text[:200]}")
        return None
    return elapsed_ms


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="measured requests per target")
    parser.add_argument("--warmup", type=int, default=30, help="unmeasured requests first")
    parser.add_argument("--model-ms", type=float, default=50.0, help="the model's fixed latency")
    args = parser.parse_args(argv)
    if args.requests < 2 or args.warmup < 0:
        parser.error("--requests must be at least 2 and --warmup at least 0")

    # The agents and the model run as processes of their own, as they would for real.
    agents_port, model_port = free_port(), free_port()
    agents_url = f"http://127.0.0.1:{agents_port}"
    agents = ManagedProcess(
        "demo-agents", meshroute_argv("demo-agents", "--port", str(agents_port))
    )
    model = ManagedProcess(
        "stand-in model",
        [
            sys.executable,
            "-m",
            "tests.support.orchestrator",
            "--port",
            str(model_port),
            "--delay",
            str(args.model_ms / 1000),
        ],
    )
    stack: UpStack | None = None
    try:
        agents.wait_until(lambda: port_open(agents_port), "demo agents listening")
        model.wait_until(lambda: port_open(model_port), "stand-in model listening")
        with tempfile.TemporaryDirectory(prefix="meshroute-bench-") as workdir:
            ports = {"travel": free_port(), "orchestrated": free_port()}
            write_config(Path(workdir), agents_url, model_port, ports)
            stack = UpStack([Path(workdir)], ports)
            model_url = f"http://127.0.0.1:{model_port}/v1/chat/completions"
            result = measure(
                stack,
                agents_url=agents_url,
                model_url=model_url,
                requests=args.requests,
                warmup=args.warmup,
                model_ms=args.model_ms,
            )
    finally:
        if stack is not None:
            stack.stop()
        model.stop()
        agents.stop()
    return finish(result, result.table(), result.failures, RESULTS)


if __name__ == "__main__":
    sys.exit(main())
