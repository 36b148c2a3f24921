"""1,000 requests in flight at once, each waiting on a slow routing model: do they all
complete, how long does it take, and how much memory does it cost?

One run on loopback: a canned upstream Envoy, a stand-in routing model answering every
call after a fixed delay (500 ms), and `meshroute up` with an agent gateway that asks
it (decision cache off, so every request asks). N clients each send one request at the
same moment; the bench reports how many completed with 200, the wall time, latency
percentiles, and the peak resident memory (VmHWM) of the sidecar and of Envoy.

    .venv/bin/python -m bench.concurrency [--requests 1000] [--model-ms 500]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

from bench.common import children, command, machine_line, peak_rss_mib, run_bench, write_results
from bench.gateways import QUESTION, agent_documents, agent_entries, chat_body, start_model
from bench.load import exchange, post_request
from bench.upstream import start_envoy
from tests.support.configs import provider_yaml
from tests.support.processes import ManagedProcess, free_port
from tests.support.stack import UpStack


def write_config(
    directory: Path, upstream: int, model_port: int, gateway_port: int, n: int
) -> None:
    agents = agent_documents(
        upstream, f"circuitBreaker: {{maxRequests: {n * 2}, maxPendingRequests: {n * 2}}}"
    )
    names = agent_entries()
    gateway = textwrap.dedent(
        f"""\
        apiVersion: meshroute.io/v1alpha1
        kind: Gateway
        metadata: {{name: orchestrated}}
        spec:
          port: {gateway_port}
          agents: [{names}]
          router:
            type: orchestrator
            provider: router
            model: plano
            timeout: 30s
            maxConcurrency: {n}
            cache: {{enabled: false}}
        """
    )
    router = provider_yaml("router", f"http://127.0.0.1:{model_port}", {"plano": "plano"})
    (directory / "bench.yaml").write_text("---\n".join([*agents, router, gateway]))


async def one_request(port: int, request: bytes, start: asyncio.Event) -> tuple[int, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await start.wait()
        began = time.perf_counter()
        status = await exchange(reader, writer, request)
        return status, (time.perf_counter() - began) * 1000
    finally:
        writer.close()


async def burst(port: int, request: bytes, n: int) -> tuple[list[tuple[int, float]], float]:
    """N connections opened first, then every request sent at once."""
    start = asyncio.Event()
    tasks = [asyncio.create_task(one_request(port, request, start)) for _ in range(n)]
    await asyncio.sleep(1.0)  # let every connection open before the gun
    began = time.perf_counter()
    start.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    wall = time.perf_counter() - began
    return [r if isinstance(r, tuple) else (0, 0.0) for r in results], wall


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--model-ms", type=float, default=500.0)
    args = parser.parse_args(argv)
    upstream, model_port, gateway_port = free_port(), free_port(), free_port()
    started: list[ManagedProcess] = []
    stack: UpStack | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="meshroute-bench-") as workdir:
            work = Path(workdir)
            started.append(start_envoy("upstream", work, upstream, None))
            started.append(start_model(model_port, args.model_ms))
            config = work / "config"
            config.mkdir()
            write_config(config, upstream, model_port, gateway_port, args.requests)
            stack = UpStack([config], {"orchestrated": gateway_port})
            up_pid = stack.process.process.pid
            sidecar = next(p for p in children(up_pid) if " ext-proc " in command(p))
            envoy = next(p for p in children(up_pid) if command(p).split()[0].endswith("envoy"))
            request = post_request(
                "127.0.0.1", gateway_port, "/v1/chat/completions", chat_body(QUESTION)
            )
            results, wall = asyncio.run(burst(gateway_port, request, args.requests))
            sidecar_mb, envoy_mb = peak_rss_mib(sidecar), peak_rss_mib(envoy)
    finally:
        if stack is not None:
            stack.stop()
        for process in reversed(started):
            process.stop()
    ok = [ms for status, ms in results if status == 200]
    failed = len(results) - len(ok)
    cuts = statistics.quantiles(ok, n=100) if len(ok) > 1 else [0.0] * 99
    model = f"routing model {args.model_ms:g} ms"
    print(f"meshroute concurrency: {args.requests} requests at once, {model}")
    print(f"  completed with 200: {len(ok)} of {len(results)}   wall time {wall:.2f} s")
    print(
        f"  latency p50 {cuts[49]:.0f} ms   p99 {cuts[98]:.0f} ms   max {max(ok, default=0):.0f} ms"
    )
    print(f"  peak RSS: sidecar {sidecar_mb:.0f} MiB, Envoy {envoy_mb:.0f} MiB")
    print(machine_line())
    path = write_results(
        "concurrency",
        {
            "requests": args.requests,
            "model_ms": args.model_ms,
            "completed": len(ok),
            "failed": failed,
            "wall_seconds": wall,
            "p50_ms": cuts[49],
            "p99_ms": cuts[98],
            "sidecar_peak_rss_mib": sidecar_mb,
            "envoy_peak_rss_mib": envoy_mb,
        },
    )
    print(f"results written to {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_bench(main))
