"""Load for the throughput benches: wrk when installed, else a small closed-loop HTTP/1.1
generator (N keep-alive connections, each sending one request after another).

Hand-rolled on asyncio streams because a general client (httpx, aiohttp) would spend
more CPU per request than the servers under test, on a 2-core machine that the
servers share with it. It only understands what the benchmarks need: a fixed
request, responses with a content-length.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    latencies_ms: list[float]
    statuses: dict[int, int]

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms)

    @property
    def p99(self) -> float:
        return statistics.quantiles(self.latencies_ms, n=100)[98]


def post_request(
    host: str, port: int, path: str, body: bytes, headers: Mapping[str, str] | None = None
) -> bytes:
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    head = (
        f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
        f"{extra}content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _connection(
    host: str,
    port: int,
    request: bytes,
    count: int,
    *,
    latencies: list[float],
    statuses: dict[int, int],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for _ in range(count):
            started = time.perf_counter()
            status = await exchange(reader, writer, request)
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    """One request on a keep-alive connection, its response read whole (a
    content-length body, as every gateway path here answers); returns the status."""
    writer.write(request)
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    await reader.readexactly(length)
    return status


async def run_load(
    host: str, port: int, request: bytes, *, connections: int, requests: int
) -> LoadResult:
    """`requests` spread over `connections` concurrent keep-alive connections."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    per_connection = max(requests // connections, 1)
    started = time.perf_counter()
    await asyncio.gather(
        *(
            _connection(host, port, request, per_connection, latencies=latencies, statuses=statuses)
            for _ in range(connections)
        )
    )
    seconds = time.perf_counter() - started
    return LoadResult(len(latencies), seconds, latencies, statuses)


# -------------------------------------------------------------------------------- wrk

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = {body}
"""
WRK_HEADER = "wrk.headers[{name}] = {value}\n"

_WRK_LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_WRK_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_WRK_TOTAL = re.compile(r"^\s+(\d+) requests in", re.M)
_WRK_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass(frozen=True)
class WrkResult:
    """What wrk reports: rate and two percentiles (it keeps no per-request samples)."""

    requests: int
    throughput: float
    p50: float
    p99: float
    non_2xx: int


def wrk_path() -> str | None:
    """wrk, when installed (`apt-get install wrk`): it costs less CPU per request than
    any Python client, which matters when client and servers share two cores."""
    return shutil.which("wrk")


def run_wrk(
    host: str,
    port: int,
    path: str,
    body: bytes,
    *,
    connections: int,
    seconds: float,
    headers: Mapping[str, str] | None = None,
) -> WrkResult:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT.format(body=json.dumps(body.decode())))
        for name, value in (headers or {}).items():
            script.write(WRK_HEADER.format(name=json.dumps(name), value=json.dumps(value)))
    try:
        output = subprocess.run(
            [
                str(wrk_path()),
                f"--connections={connections}",
                "--threads=1",
                f"--duration={max(int(seconds), 1)}s",
                "--latency",
                f"--script={script.name}",
                f"http://{host}:{port}{path}",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
        ).stdout
    finally:
        os.unlink(script.name)
    latencies = {
        percent: float(value) * _UNIT_MS[unit]
        for percent, value, unit in _WRK_LATENCY.findall(output)
    }
    rate, total = _WRK_RATE.search(output), _WRK_TOTAL.search(output)
    if rate is None or total is None or set(latencies) != {"50", "99"}:
        raise RuntimeError(f"cannot read wrk's report:\n{output}")
    non_2xx = _WRK_NON_2XX.search(output)
    return WrkResult(
        requests=int(total.group(1)),
        throughput=float(rate.group(1)),
        p50=latencies["50"],
        p99=latencies["99"],
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )
