"""The control plane's HTTP side: probes for Kubernetes, metrics, and who is connected.

`/healthz` answers 200 while the process serves; `/readyz` answers 200 once a config
has been loaded and ADS is serving it (503 before), with the version it serves.
`/metrics` is Prometheus text; `/status` is JSON for `meshroute status`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from meshroute.control_plane.metrics import ControlPlaneMetrics


async def start_health_server(
    address: str,
    port: int,
    serving_version: Callable[[], str | None],
    metrics: ControlPlaneMetrics,
    clients: Callable[[], list[dict[str, Any]]],
) -> web.AppRunner:
    """Serve the endpoints on address:port; the caller cleans the runner up."""

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        version = serving_version()
        if version is None:
            return web.Response(status=503, text="no config served yet\n")
        return web.Response(text=f"serving config version {version}\n")

    async def prometheus(_: web.Request) -> web.Response:
        return web.Response(
            body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def status(_: web.Request) -> web.Response:
        return web.json_response({"serving_version": serving_version(), "clients": clients()})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", prometheus)
    app.router.add_get("/status", status)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, address, port).start()
    return runner
