"""The control plane's HTTP health endpoints, for Kubernetes probes.

`/healthz` answers 200 while the process serves; `/readyz` answers 200 once a config
has been loaded and ADS is serving it (503 before), with the version it serves.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web


async def start_health_server(
    address: str, port: int, serving_version: Callable[[], str | None]
) -> web.AppRunner:
    """Serve the endpoints on address:port; the caller cleans the runner up."""

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        version = serving_version()
        if version is None:
            return web.Response(status=503, text="no config served yet\n")
        return web.Response(text=f"serving config version {version}\n")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, address, port).start()
    return runner
