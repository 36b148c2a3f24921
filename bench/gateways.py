"""Every meshroute path against Envoy straight to the same upstream, in one run.

One command starts, on loopback: a canned upstream (an Envoy answering a chat
completion itself, so it never limits anything), a plain Envoy proxy to it (the
baseline), `meshroute up` with a model gateway and two agent gateways of 10 agents,
a stand-in routing model answering in a fixed time, and LiteLLM's proxy (one worker)
on the same upstream, installed into its own virtualenv (bench/.venv-litellm; never a
project dependency). Then, at concurrency 1 and 32, req/s and p50/p99 of:

* direct: the plain Envoy proxy;
* model gateway, fast path: a model named as its provider names it (Envoy alone);
* ext_proc floor: the plain proxy asking, for each request, a Python ext_proc server
  that decides nothing (bench/bare_ext_proc.py): the floor under the two paths below,
  what Envoy plus any Python ext_proc costs on this machine before any of our work;
* model gateway, alias path: an alias (the sidecar decides and rewrites the body);
* agent gateway, embedded router: the sidecar picks among 10 agents;
* agent gateway, orchestrator: the sidecar asks the routing model (decision cache off);
* routing model alone: the stand-in model asked directly with the sidecar's own
  prompt, so what the orchestrator path adds beyond the model shows;
* LiteLLM proxy.

Each as a ratio to direct. The machine is shared and noisy, so every path is measured
`--rounds` times, interleaved (each round goes through every path), and each figure is
the median over the rounds. Load comes from wrk when installed (`apt-get install wrk`),
else from bench/load.py. Results also go to bench/results/gateways.json.

    .venv/bin/python -m bench.gateways [--seconds 5] [--rounds 3] [--model-ms 50]
        [--ext-proc-workers N] [--no-litellm]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.common import machine_line, run_bench, write_results
from bench.load import post_request, run_load, run_wrk, wrk_path
from bench.upstream import start_envoy
from meshroute.ext_proc.orchestrator import Route, build_prompt, routing_request
from tests.support.configs import provider_yaml
from tests.support.processes import ManagedProcess, free_port, port_open
from tests.support.stack import UpStack

LITELLM_VENV = Path(__file__).resolve().parent / ".venv-litellm"
KEY = "sk-bench-not-a-secret"
"""LiteLLM's proxy refuses to start without a master key; its clients send it."""
CHAT = "/v1/chat/completions"
AGENTS = {
    "weather": "Weather forecasts, rain, temperature and storms for any city.",
    "flights": "Flight status, delays, gates and airline bookings.",
    "hotels": "Hotel rooms, prices, availability and reservations.",
    "trains": "Train timetables, platforms and rail tickets.",
    "cars": "Car rental, pick-up and drop-off, insurance for rented cars.",
    "currency": "Currency exchange rates and money conversion.",
    "news": "Latest news headlines and current events.",
    "sports": "Sports scores, fixtures and league tables.",
    "recipes": "Cooking recipes, ingredients and meal ideas.",
    "health": "Health questions, symptoms and medicines.",
}
QUESTION = "flights: is flight UA 901 delayed at the gate?"
"""The embedded router and the stand-in model both pick `flights` for it."""
ROUTING_MODEL = "plano"
ORCHESTRATOR_ROW = "agent gateway, orchestrator"
FLOOR_ROW = "ext_proc floor (Python, no work)"
MODEL_ALONE_ROW = "routing model alone"


@dataclass(frozen=True)
class Measured:
    path: str
    concurrency: int
    requests: int
    throughput: float
    p50_ms: float
    p99_ms: float
    errors: int


@dataclass(frozen=True)
class Target:
    name: str
    port: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def chat_body(text: str, model: str = "any") -> bytes:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": text}]}).encode()


def routing_model_body() -> bytes:
    """What the sidecar sends the routing model for QUESTION (see OrchestratorClient)."""
    routes = [Route(name, description) for name, description in AGENTS.items()]
    prompt = build_prompt(routes, [{"role": "user", "content": QUESTION}])
    return json.dumps(routing_request(ROUTING_MODEL, prompt)).encode()


def start_bare_ext_proc(port: int) -> ManagedProcess:
    """bench/bare_ext_proc.py, the do-nothing ext_proc server under the floor row."""
    argv = [sys.executable, "-m", "bench.bare_ext_proc", "--port", str(port)]
    server = ManagedProcess("bare ext_proc", argv)
    server.wait_until(lambda: port_open(port), "the bare ext_proc server listening")
    return server


def start_model(port: int, model_ms: float) -> ManagedProcess:
    """The stand-in routing model, answering every request after `model_ms`."""
    argv = ["-m", "tests.support.orchestrator", "--port", str(port), "--delay"]
    model = ManagedProcess("stand-in model", [sys.executable, *argv, str(model_ms / 1000)])
    model.wait_until(lambda: port_open(port), "the stand-in model listening")
    return model


def measure_rounds(paths: list[Target], rounds: int, seconds: float) -> list[list[Measured]]:
    """Every path at concurrency 1 and 32, `rounds` times over, interleaved."""
    measured: list[list[Measured]] = []
    for number in range(1, rounds + 1):
        this_round = []
        for concurrency in (1, 32):
            for path in paths:
                print(f"  round {number}/{rounds}: {path.name}, c={concurrency}", flush=True)
                this_round.append(measure(path, concurrency, seconds))
        measured.append(this_round)
    return measured


def median_rows(rounds: list[list[Measured]]) -> list[Measured]:
    """Each path's median over the rounds (the order of the first round)."""
    out = []
    for first in rounds[0]:
        same = [
            row
            for measured in rounds
            for row in measured
            if (row.path, row.concurrency) == (first.path, first.concurrency)
        ]
        out.append(
            Measured(
                first.path,
                first.concurrency,
                sum(row.requests for row in same),
                statistics.median(row.throughput for row in same),
                statistics.median(row.p50_ms for row in same),
                statistics.median(row.p99_ms for row in same),
                sum(row.errors for row in same),
            )
        )
    return out


def agent_documents(upstream: int, policy: str = "") -> list[str]:
    """The ten AGENTS, each on the canned upstream, with `policy` (a line of spec)."""
    extra = f"\n  {policy}" if policy else ""
    return [
        "apiVersion: meshroute.io/v1alpha1\nkind: Agent\n"
        f"metadata: {{name: {name}}}\nspec:\n  description: {description!r}\n"
        f'  endpoints: ["http://127.0.0.1:{upstream}"]{extra}\n'
        for name, description in AGENTS.items()
    ]


def agent_entries() -> str:
    """A Gateway's `agents` list for AGENTS, the first one the default."""
    return ", ".join(
        f"{{name: {name}, default: true}}" if index == 0 else f"{{name: {name}}}"
        for index, name in enumerate(AGENTS)
    )


def write_config(directory: Path, upstream: int, model_port: int, ports: dict[str, int]) -> None:
    agents = agent_documents(upstream)
    names = agent_entries()
    gateways = textwrap.dedent(
        f"""\
        apiVersion: meshroute.io/v1alpha1
        kind: Gateway
        metadata: {{name: embedded}}
        spec: {{port: {ports["embedded"]}, agents: [{names}]}}
        ---
        apiVersion: meshroute.io/v1alpha1
        kind: Gateway
        metadata: {{name: orchestrated}}
        spec:
          port: {ports["orchestrated"]}
          agents: [{names}]
          router:
            type: orchestrator
            provider: router
            model: {ROUTING_MODEL}
            timeout: 5s
            cache: {{enabled: false}}
        ---
        apiVersion: meshroute.io/v1alpha1
        kind: Gateway
        metadata: {{name: llm}}
        spec:
          type: model
          port: {ports["llm"]}
          defaultModel: bench-model
          modelAliases: {{quick: bench-model}}
        """
    )
    providers = [
        provider_yaml("bench", f"http://127.0.0.1:{upstream}", {"bench-model": "bench-model"}),
        provider_yaml("router", f"http://127.0.0.1:{model_port}", {ROUTING_MODEL: ROUTING_MODEL}),
    ]
    (directory / "bench.yaml").write_text("---\n".join([*agents, *providers, gateways]))


def measure(path: Target, concurrency: int, seconds: float) -> Measured:
    if wrk_path():
        for duration in (1, seconds):  # the first second warms up
            result = run_wrk(
                "127.0.0.1",
                path.port,
                CHAT,
                path.body,
                connections=concurrency,
                seconds=duration,
                headers=path.headers,
            )
        return Measured(
            path.name,
            concurrency,
            result.requests,
            result.throughput,
            result.p50,
            result.p99,
            result.non_2xx,
        )
    request = post_request("127.0.0.1", path.port, CHAT, path.body, path.headers)
    asyncio.run(run_load("127.0.0.1", path.port, request, connections=concurrency, requests=200))
    count = max(int(seconds * (300 if concurrency == 1 else 1500)), concurrency)
    loaded = asyncio.run(
        run_load("127.0.0.1", path.port, request, connections=concurrency, requests=count)
    )
    errors = sum(n for status, n in loaded.statuses.items() if status != 200)
    return Measured(
        path.name,
        concurrency,
        loaded.requests,
        loaded.throughput,
        loaded.p50,
        loaded.p99,
        errors,
    )


def litellm(upstream: int, workdir: Path) -> tuple[ManagedProcess | None, int, str]:
    """LiteLLM's proxy on the upstream, installing it first if needed; (process, port,
    why not) — process None when it could not be had."""
    binary = LITELLM_VENV / "bin" / "litellm"
    if not binary.exists():
        print("installing LiteLLM's proxy into bench/.venv-litellm (once)...", flush=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
            subprocess.run(
                [str(LITELLM_VENV / "bin" / "pip"), "install", "--quiet", "litellm[proxy]"],
                check=True,
                timeout=1800,
            )
        except (subprocess.SubprocessError, OSError) as error:
            return None, 0, f"could not install LiteLLM: {error}"
    config = workdir / "litellm.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            model_list:
              - model_name: bench-model
                litellm_params:
                  model: openai/bench-model
                  api_base: http://127.0.0.1:{upstream}/v1
                  api_key: unused
            """
        )
    )
    port = free_port()
    process = ManagedProcess(
        "litellm",
        [str(binary), "--config", str(config), "--port", str(port), "--num_workers", "1"],
        env={"LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False", "LITELLM_MASTER_KEY": KEY},
    )
    try:
        process.wait_until(lambda: port_open(port), "LiteLLM listening")
    except AssertionError as error:
        process.stop()
        return None, 0, f"LiteLLM did not start: {error}"
    return process, port, ""


def table(rows: list[Measured]) -> list[str]:
    lines = []
    for concurrency in sorted({row.concurrency for row in rows}):
        at = [row for row in rows if row.concurrency == concurrency]
        direct = next(row for row in at if row.path == "direct")
        alone = next((row for row in at if row.path == MODEL_ALONE_ROW), None)
        lines.append(f"concurrency {concurrency}:")
        lines.append(
            f"{'path':<34}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'vs direct':>11}{'+p50 ms':>9}"
        )
        for row in at:
            added = row.p50_ms - direct.p50_ms
            note = ""
            if row.path == ORCHESTRATOR_ROW and alone is not None:
                note = f"   ({added - alone.p50_ms:+.2f} ms beyond the model alone)"
            if row.errors:
                note += f"   {row.errors} non-2xx!"
            lines.append(
                f"{row.path:<34}{row.throughput:>9.0f}{row.p50_ms:>9.2f}{row.p99_ms:>9.2f}"
                f"{row.throughput / direct.throughput:>10.2f}x{added:>+9.2f}{note}"
            )
    return lines


def goals(rows: list[Measured]) -> list[str]:
    """The issue's goals, each met or missed, from this run's numbers."""

    def at(path: str, concurrency: int) -> Measured | None:
        return next(
            (r for r in rows if r.path.startswith(path) and r.concurrency == concurrency), None
        )

    lines = []
    for concurrency in (1, 32):
        direct = at("direct", concurrency)
        assert direct is not None
        fast = at("model gateway, fast path", concurrency)
        if fast:
            ratio = fast.throughput / direct.throughput
            lines.append(
                f"c={concurrency} fast path >= 0.80x direct: {ratio:.2f}x {_met(ratio >= 0.8)}"
            )
        floor = at(FLOOR_ROW, concurrency)
        if floor:
            ratio = floor.throughput / direct.throughput
            added = floor.p50_ms - direct.p50_ms
            lines.append(
                f"c={concurrency} (for scale, not a goal) a Python ext_proc doing nothing: "
                f"{ratio:.2f}x direct, {added:+.2f} ms p50"
            )
        for name in ("model gateway, alias path", "agent gateway, embedded router"):
            row = at(name, concurrency)
            if row:
                ratio = row.throughput / direct.throughput
                lines.append(
                    f"c={concurrency} {name} >= 0.50x direct: {ratio:.2f}x {_met(ratio >= 0.5)}"
                )
                if concurrency == 1:
                    added = row.p50_ms - direct.p50_ms
                    lines.append(
                        f"c=1 {name} adds <= 0.50 ms p50: {added:+.2f} {_met(added <= 0.5)}"
                    )
    orchestrated, alone, direct = at(ORCHESTRATOR_ROW, 1), at(MODEL_ALONE_ROW, 1), at("direct", 1)
    if orchestrated and alone and direct:
        beyond = orchestrated.p50_ms - direct.p50_ms - alone.p50_ms
        verdict = _met(beyond <= 1)
        lines.append(
            f"c=1 orchestrator path adds <= 1 ms beyond the model: {beyond:+.2f} {verdict}"
        )
    peer = at("LiteLLM proxy", 32)
    for name in ("model gateway, fast path", "model gateway, alias path"):
        ours = at(name, 32)
        if peer and ours:
            ratio = ours.throughput / peer.throughput
            lines.append(
                f"c=32 {name} vs LiteLLM throughput (aim 20x): {ratio:.1f}x {_met(ratio >= 20)}"
            )
    return lines


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per path and concurrency")
    parser.add_argument("--model-ms", type=float, default=50.0, help="the routing model's time")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repeats; medians")
    parser.add_argument(
        "--ext-proc-workers", type=int, default=0, help="as `meshroute up` (0: from the CPUs)"
    )
    parser.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM row")
    args = parser.parse_args(argv)
    upstream, direct_port, model_port = free_port(), free_port(), free_port()
    bare_port, floor_port = free_port(), free_port()
    ports = {"embedded": free_port(), "orchestrated": free_port(), "llm": free_port()}
    started: list[ManagedProcess] = []
    stack: UpStack | None = None
    rounds: list[list[Measured]] = []
    skipped = ""
    try:
        with tempfile.TemporaryDirectory(prefix="meshroute-bench-") as workdir:
            work = Path(workdir)
            started.append(start_envoy("upstream", work, upstream, None))
            started.append(start_envoy("direct", work, direct_port, upstream))
            started.append(start_bare_ext_proc(bare_port))
            started.append(start_envoy("floor", work, floor_port, upstream, ext_proc=bare_port))
            started.append(start_model(model_port, args.model_ms))
            config = work / "config"
            config.mkdir()
            write_config(config, upstream, model_port, ports)
            stack = UpStack([config], ports, ext_proc_workers=args.ext_proc_workers)
            paths = [
                Target("direct", direct_port, chat_body(QUESTION, "bench-model")),
                Target(
                    "model gateway, fast path", ports["llm"], chat_body(QUESTION, "bench-model")
                ),
                Target(FLOOR_ROW, floor_port, chat_body(QUESTION, "bench-model")),
                Target("model gateway, alias path", ports["llm"], chat_body(QUESTION, "quick")),
                Target("agent gateway, embedded router", ports["embedded"], chat_body(QUESTION)),
                Target(ORCHESTRATOR_ROW, ports["orchestrated"], chat_body(QUESTION)),
                Target(MODEL_ALONE_ROW, model_port, routing_model_body()),
            ]
            if not args.no_litellm:
                process, port, skipped = litellm(upstream, work)
                if process is not None:
                    started.append(process)
                    paths.append(
                        Target(
                            "LiteLLM proxy",
                            port,
                            chat_body(QUESTION, "bench-model"),
                            {"authorization": f"Bearer {KEY}"},
                        )
                    )
            rounds = measure_rounds(paths, args.rounds, args.seconds)
    finally:
        if stack is not None:
            stack.stop()
        for process in reversed(started):
            process.stop()
    rows = median_rows(rounds)
    load = "wrk" if wrk_path() else "bench/load.py"
    print(
        f"meshroute gateways vs Envoy straight to the same upstream ({load}, one run, "
        f"median of {args.rounds} interleaved rounds of {args.seconds:g} s)"
    )
    print("\n".join(table(rows)))
    if skipped:
        print(f"LiteLLM row skipped: {skipped}")
    print("goals:")
    print("\n".join("  " + line for line in goals(rows)))
    print(machine_line())
    path = write_results(
        "gateways",
        {
            "load": load,
            "model_ms": args.model_ms,
            "rounds": args.rounds,
            "ext_proc_workers": args.ext_proc_workers,
            "rows": [asdict(row) for row in rows],
        },
    )
    print(f"results written to {path}")
    return 1 if any(row.errors for row in rows) else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(run_bench(main))
