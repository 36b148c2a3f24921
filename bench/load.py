"""A small closed-loop HTTP/1.1 load generator: N connections, each sending one request
after another, keep-alive, for a fixed number of requests.

Hand-rolled on asyncio streams because a general client (httpx, aiohttp) would spend
more CPU per request than the servers under test, on a 2-core machine that the
servers share with it. It only understands what the benchmarks need: a fixed
request, responses with a content-length.
"""

from __future__ import annotations

import asyncio
import statistics
import time
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


def post_request(host: str, port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
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
            writer.write(request)
            status_line = await reader.readline()
            status = int(status_line.split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            await reader.readexactly(length)
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


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
