"""From saving a config file to the new agent answering: how long, and what moves.

`meshroute up` runs the quickstart (with client pinning on, so a request can name
the new agent); ten times, a new agent file is saved and the gateway rewritten to
list it, and the clock runs from the save until a request pinned to the new agent
is answered by it. The control plane's log says which xDS resource types changed.

    .venv/bin/python -m bench.reload_latency [--edits 10]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from bench.common import run_bench
from tests.support.configs import agent_yaml, quickstart_config
from tests.support.processes import ManagedProcess, free_port, meshroute_argv, port_open
from tests.support.stack import UpStack

POLL_SECONDS = 0.01
LAST_AGENT = "    - {name: currency}"


def routable(client: httpx.Client, url: str, agent: str) -> bool:
    response = client.post(
        url,
        json={"messages": [{"role": "user", "content": "hi"}]},
        headers={"x-meshroute-agent": agent},
    )
    return response.status_code == 200 and response.headers.get("x-demo-agent") == agent


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=10)
    args = parser.parse_args(argv)
    demo_port, gateway_port = free_port(), free_port()
    demo = ManagedProcess("demo-agents", meshroute_argv("demo-agents", "--port", str(demo_port)))
    stack: UpStack | None = None
    latencies: list[float] = []
    changed: list[str] = []
    try:
        demo.wait_until(lambda: port_open(demo_port), "demo agents listening")
        with tempfile.TemporaryDirectory(prefix="meshroute-bench-") as workdir:
            config = quickstart_config(Path(workdir), gateway_port, demo_port)
            gateway_file = config / "gateway.yaml"
            gateway = gateway_file.read_text() + "  allowClientPinning: true\n"
            gateway_file.write_text(gateway)
            stack = UpStack([config], {"travel": gateway_port})
            listed = LAST_AGENT
            with httpx.Client(timeout=10) as client:
                for edit in range(args.edits):
                    agent = f"extra-{edit}"
                    mark = len(stack.process.lines)
                    endpoint = f"http://127.0.0.1:{demo_port}"
                    (config / f"{agent}.yaml").write_text(
                        agent_yaml(agent, f"Agent {edit}", endpoint)
                    )
                    listed += f"\n    - {{name: {agent}}}"
                    gateway_file.write_text(gateway.replace(LAST_AGENT, listed))
                    saved = time.perf_counter()
                    while not routable(client, stack.url("travel"), agent):
                        time.sleep(POLL_SECONDS)
                    latencies.append(time.perf_counter() - saved)
                    line = stack.process.wait_for_line(r"config reloaded: now serving", start=mark)
                    changed.append(re.sub(r".*\(changed: ([^;]*);.*", r"\1", line))
    finally:
        if stack is not None:
            stack.stop()
        demo.stop()
    cuts = statistics.quantiles(latencies, n=10)
    print(f"save-to-routable over {len(latencies)} edits (each: a new agent file, gateway edited):")
    print(
        f"  p50 {statistics.median(latencies) * 1000:.0f} ms, p90 {cuts[8] * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms"
    )
    print(f"  xDS types pushed per change: {sorted(set(changed))}")
    return 0


if __name__ == "__main__":
    sys.exit(run_bench(main))
