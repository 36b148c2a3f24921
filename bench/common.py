"""What every latency bench shares: timed requests, percentiles, machine facts."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from meshroute.envoy_binary import envoy_binary


@dataclass
class Target:
    """One way to reach the agents, and what it measured."""

    name: str
    client: httpx.Client
    samples_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def post(self, url: str, question: str, agent_header: str, agent: str) -> float | None:
        started = time.perf_counter()
        response = self.client.post(url, json={"messages": [{"role": "user", "content": question}]})
        elapsed_ms = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            self.failures.append(f"HTTP {response.status_code}: {response.text[:200]}")
            return None
        if response.headers.get(agent_header) != agent:
            self.failures.append(f"answered by {response.headers.get(agent_header)}, not {agent}")
            return None
        return elapsed_ms


@dataclass(frozen=True)
class Summary:
    p50: float
    p99: float
    mean: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Summary:
        cuts = statistics.quantiles(samples, n=100)
        return cls(p50=cuts[49], p99=cuts[98], mean=statistics.fmean(samples))


def machine() -> dict[str, str]:
    envoy = subprocess.run(
        [envoy_binary(), "--version"], capture_output=True, text=True, check=False
    ).stdout.split("version:")[-1]
    return {
        "cpus": str(os.cpu_count()),
        "python": platform.python_version(),
        "envoy": envoy.strip(),
        "platform": platform.platform(),
    }


def finish(result: Any, table: str, failures: Sequence[str], path: Path) -> int:
    """Print the table and any failures, write the result as JSON; the exit code."""
    print(table)
    for failure in failures:
        print(f"ERROR {failure}", file=sys.stderr)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dataclasses.asdict(result), indent=2) + "\n")
    print(f"results written to {path}")
    return 1 if failures else 0
