"""What every bench shares: the facts of the machine it ran on, and where results go."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from meshroute.envoy_binary import envoy_binary

RESULTS = Path(__file__).resolve().parent / "results"


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


def machine_line() -> str:
    return "machine: " + ", ".join(f"{key} {value}" for key, value in machine().items())


def write_results(name: str, data: Any) -> Path:
    """bench/results/<name>.json, with the machine it was measured on."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **data}, indent=2) + "\n")
    return path


# ------------------------------------------------------------- processes, from /proc


def children(pid: int) -> list[int]:
    """The direct children of `pid` (Linux)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def command(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _status_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return 0.0


def rss_mib(pid: int) -> float:
    """Resident memory now."""
    return _status_mib(pid, "VmRSS:")


def peak_rss_mib(pid: int) -> float:
    """The most resident memory the process has had (VmHWM)."""
    return _status_mib(pid, "VmHWM:")


def run_bench(main: Callable[[], int]) -> int:
    """Run a bench's `main`, turning SIGTERM (a timeout, a Ctrl-C from a supervisor)
    into SystemExit so its `finally` blocks stop every process it started."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    return main()
