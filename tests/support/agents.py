"""The demo agents, in the test process, recording every request they receive."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from meshroute.demo.agents import make_app
from tests.support.threaded_server import ThreadedServer


@dataclass
class RecordingAgents:
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """(agent, request body) in arrival order."""
    headers: list[dict[str, str]] = field(default_factory=list)
    """Each of those requests' headers (lower-case names), in the same order."""
    server: ThreadedServer | None = None

    def start(self) -> RecordingAgents:
        @web.middleware
        async def record(request: web.Request, handler: Any) -> web.StreamResponse:
            if "agent" in request.match_info:
                body = await request.read()
                self.headers.append({k.lower(): v for k, v in request.headers.items()})
                try:
                    self.received.append((request.match_info["agent"], json.loads(body)))
                except json.JSONDecodeError:
                    self.received.append((request.match_info["agent"], {"_raw": body.decode()}))
            response: web.StreamResponse = await handler(request)
            return response

        app = make_app()
        app.middlewares.append(record)
        self.server = ThreadedServer(app)
        return self

    @property
    def endpoint(self) -> str:
        assert self.server is not None
        return self.server.url

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
