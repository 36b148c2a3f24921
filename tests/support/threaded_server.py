"""An aiohttp application served on a loopback port from a thread of its own.

Stand-ins for what cannot run here (routing models, misbehaving agents) run inside
the test process this way, so a test can change how they behave and read what they
received, while Envoy talks to them over real TCP.
"""

from __future__ import annotations

import asyncio
import ssl
import threading

from aiohttp import web


class ThreadedServer:
    def __init__(self, app: web.Application, *, ssl_context: ssl.SSLContext | None = None) -> None:
        """Start serving `app` now; with `ssl_context` it is served over HTTPS instead."""
        self._app = app
        self._ssl_context = ssl_context
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._runner = web.AppRunner(app, access_log=None)
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)

    async def _start(self) -> int:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._ssl_context)
        await site.start()
        server = site._server  # aiohttp does not expose the bound port otherwise
        assert server is not None
        assert server.sockets
        return int(server.sockets[0].getsockname()[1])

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the app runs on; its state is safe to touch only from there."""
        return self._loop

    @property
    def url(self) -> str:
        scheme = "http" if self._ssl_context is None else "https"
        return f"{scheme}://127.0.0.1:{self.port}"

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
