"""Several sidecar processes, for more than one core's worth of routing.

Python runs one thread of Python at a time, so one sidecar process decides on one
core. `meshroute ext-proc --workers N` runs N worker processes on consecutive ports
(PORT, PORT+1, ...), each a whole sidecar with its own xDS subscription; Envoy lists
them as the endpoints of its ext_proc cluster and sends each request's stream to the
least busy (LEAST_REQUEST). This process supervises them (a crashed worker is started
again) and serves their metrics as one: each worker writes its counters to files in a
shared directory (prometheus_client's multiprocess mode), read back together here.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from meshroute.lifecycle import wait_for_stop_signal
from meshroute.supervisor import Supervisor, keep_running

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def default_workers() -> int:
    """One worker per two CPUs this process may use (Envoy and the rest need the
    others), at least one."""
    return max(1, len(os.sched_getaffinity(0)) // 2)


async def run_workers(
    count: int,
    *,
    address: str,
    port: int,
    xds_target: str,
    node_id: str,
    metrics_endpoint: tuple[str, int] | None,
    worker_flags: list[str],
) -> int:
    """Run `count` workers until SIGTERM/SIGINT; 1 if one kept crashing."""
    metrics_dir = tempfile.mkdtemp(prefix="meshroute-ext-proc-metrics-")
    supervisor = Supervisor()
    runner: web.AppRunner | None = None
    try:
        for index in range(count):
            await supervisor.start(
                f"ext-proc-{index}",
                [
                    sys.executable,
                    "-m",
                    "meshroute",
                    "ext-proc",
                    "--workers=1",
                    f"--address={address}",
                    f"--port={port + index}",
                    f"--xds-address={xds_target}",
                    f"--node-id={node_id}-{index}",
                    "--metrics-port=0",
                    *worker_flags,
                ],
                env={MULTIPROCESS_VARIABLE: metrics_dir},
            )
        if metrics_endpoint is not None:
            runner = await _serve_metrics(metrics_dir, *metrics_endpoint)
        stop = asyncio.create_task(wait_for_stop_signal())
        return await keep_running(supervisor, stop, who="meshroute ext-proc")
    finally:
        await supervisor.stop_all()
        if runner is not None:
            await runner.cleanup()
        shutil.rmtree(metrics_dir, ignore_errors=True)


async def _serve_metrics(directory: str, address: str, port: int) -> web.AppRunner:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]

    async def exposition(_: web.Request) -> web.Response:
        body = await asyncio.to_thread(generate_latest, registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", exposition)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, address, port).start()
    return runner
