"""Small local upstream hosts whose misbehaviour a test switches on and off.

Envoy's resilience features (retries, outlier ejection, health checks, load balancing,
canary weights, session affinity, TLS, long streams) only show against hosts that fail,
slow down or stream on cue. Each `Upstream` is one such host: an OpenAI-compatible chat
server, answering like the demo agents (`meshroute.demo.agents`) so expected answers
come from `answer_text`, that stamps `x-upstream: <name>` on every response so a test
can tell which host answered. The test thread changes its behaviour while Envoy talks to
it over real TCP, and reads back what it received.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from aiohttp import web

from meshroute.demo.agents import answer_text, chat_completions, healthz
from tests.support.threaded_server import ThreadedServer

if TYPE_CHECKING:  # only the TLS helpers need trustme; plain upstreams work without it
    import trustme

UPSTREAM_HEADER = "x-upstream"
"""Response header naming the host that answered."""

_POLL_SECONDS = 0.05
"""How often a waiting handler checks whether its server is closing."""


class ReceivedRequest(NamedTuple):
    """One chat request as the host saw it: what Envoy forwarded, after any rewriting."""

    path: str
    headers: dict[str, str]
    """Header names lowercased; a repeated header keeps its last value."""
    body: Any
    """The parsed JSON body, or None when the body was not JSON."""


class _SlowStream(NamedTuple):
    seconds: float
    interval: float


class Upstream:
    """One host: serves chat and health checks, and misbehaves when told to.

    Serves `POST /v1/chat/completions` and `POST /agents/{agent}/v1/chat/completions`
    (the same answer; on the plain path the host answers as agent `name`) and
    `GET /healthz`. It starts serving on construction; `close()` stops it.
    Every setter is safe to call from the test thread while requests are in flight.
    """

    # Behaviour and records, shared by the test thread and the server thread: `_lock`.
    _healthy: bool
    _delay_seconds: float
    _fail_remaining: int
    _fail_next_status: int
    _always_fail_status: int | None
    _slow_stream: _SlowStream | None
    _chat_requests: int
    _health_checks: int
    _requests: list[ReceivedRequest]

    def __init__(
        self,
        name: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        hostname: str = "127.0.0.1",
    ) -> None:
        """`hostname` is the name clients use in `url`; it matters only for TLS, where
        the certificate names it (it must resolve to loopback, as `localhost` does)."""
        self.name = name
        self.hostname = hostname
        self._tls = ssl_context is not None
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._closed = False
        self._reset_state()
        self._server = ThreadedServer(self._make_app(), ssl_context=ssl_context)

    # --- where it listens -------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        """Base URL, `https://<hostname>:<port>` for a TLS host so verification passes."""
        scheme = "https" if self._tls else "http"
        return f"{scheme}://{self.hostname}:{self.port}"

    # --- behaviour switches ------------------------------------------------------------

    def fail_next(self, n: int, status: int = 503) -> None:
        """The next `n` chat requests get `status` and an OpenAI error body; then normal."""
        if n < 0:
            raise ValueError("n must be >= 0")
        with self._lock:
            self._fail_remaining = n
            self._fail_next_status = status

    def always_fail(self, status: int = 503) -> None:
        """Every chat request gets `status` until `recover()`."""
        with self._lock:
            self._always_fail_status = status

    def recover(self) -> None:
        """Stop failing chat requests: cancels both `fail_next` and `always_fail`."""
        with self._lock:
            self._fail_remaining = 0
            self._always_fail_status = None

    @property
    def healthy(self) -> bool:
        """When False, `GET /healthz` answers 503; chat is unaffected."""
        with self._lock:
            return self._healthy

    @healthy.setter
    def healthy(self, value: bool) -> None:
        with self._lock:
            self._healthy = value

    @property
    def delay_seconds(self) -> float:
        """Seconds every chat request waits before it is answered (failures too)."""
        with self._lock:
            return self._delay_seconds

    @delay_seconds.setter
    def delay_seconds(self, value: float) -> None:
        if value < 0:
            raise ValueError("delay_seconds must be >= 0")
        with self._lock:
            self._delay_seconds = value

    def stream_for(self, seconds: float, interval: float) -> None:
        """Streaming chat requests from now on send one chunk every `interval` seconds
        for `seconds` in total, then the final chunk and `data: [DONE]`.

        A long stream is what stream timeouts, draining and idle timeouts act on.
        Non-streaming requests are unaffected; `reset()` restores normal streams.
        """
        if interval <= 0 or seconds < 0:
            raise ValueError("need interval > 0 and seconds >= 0")
        with self._lock:
            self._slow_stream = _SlowStream(seconds, interval)

    def reset(self) -> None:
        """Back to as-started: healthy, no failures, no delay, normal streams, no records.

        Lets one host serve several tests (e.g. behind a module-scoped Envoy).
        """
        with self._lock:
            self._reset_state()

    # --- what it received ----------------------------------------------------------------

    @property
    def chat_requests(self) -> int:
        """Chat requests received, answered or failed."""
        with self._lock:
            return self._chat_requests

    @property
    def health_checks(self) -> int:
        """`GET /healthz` requests received, whatever they were answered."""
        with self._lock:
            return self._health_checks

    @property
    def requests(self) -> list[ReceivedRequest]:
        """A copy of every chat request received, in arrival order (not health checks)."""
        with self._lock:
            return list(self._requests)

    # --- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Stop serving; safe to call twice, so a test may kill a host inside `upstreams()`.

        Waiting handlers (delays, long streams) are told to finish first, so closing
        does not sit out aiohttp's graceful-shutdown timeout.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._closing.set()
        self._server.close()

    def __enter__(self) -> Upstream:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Upstream({self.name!r}, url={self.url!r})"

    # --- the server side (runs on the server's thread) -----------------------------------

    def _reset_state(self) -> None:
        """Initial behaviour and empty records; the caller holds the lock (or is __init__)."""
        self._healthy = True
        self._delay_seconds = 0.0
        self._fail_remaining = 0
        self._fail_next_status = 503
        self._always_fail_status = None
        self._slow_stream = None
        self._chat_requests = 0
        self._health_checks = 0
        self._requests = []

    def _make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/agents/{agent}/v1/chat/completions", self._chat)
        app.router.add_get("/healthz", self._healthz)
        app.on_response_prepare.append(self._stamp)
        return app

    async def _stamp(self, _: web.Request, response: web.StreamResponse) -> None:
        """Name the host on every response, streamed or not, success or error."""
        response.headers[UPSTREAM_HEADER] = self.name

    async def _healthz(self, request: web.Request) -> web.Response:
        with self._lock:
            self._health_checks += 1
            healthy = self._healthy
        if healthy:
            return await healthz(request)
        return web.Response(status=503, text="unhealthy\n")

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await _json_or_none(request)
        delay = self._record(request, body)
        await self._pause(delay)
        status = self._take_failure()
        if status is not None:
            return _error(status, f"upstream {self.name!r} is failing on purpose")
        # The plain OpenAI path has no agent in it: the host answers as itself.
        request.match_info.setdefault("agent", self.name)
        slow = self._slow_stream_for(body)
        if slow is not None:
            return await self._stream_slowly(request, body, slow)
        # Normal answers are exactly the demo agents' (JSON or SSE chunks).
        return await chat_completions(request)

    def _record(self, request: web.Request, body: Any) -> float:
        """Count and keep the request; returns the delay to apply, read at arrival."""
        headers = {name.lower(): value for name, value in request.headers.items()}
        with self._lock:
            self._chat_requests += 1
            self._requests.append(ReceivedRequest(request.path, headers, body))
            return self._delay_seconds

    def _take_failure(self) -> int | None:
        """The status to fail this request with, using up one `fail_next` if pending."""
        with self._lock:
            if self._fail_remaining > 0:
                self._fail_remaining -= 1
                return self._fail_next_status
            return self._always_fail_status

    def _slow_stream_for(self, body: Any) -> _SlowStream | None:
        """The slow-stream plan if this is a well-formed streaming request and one is set."""
        if not (isinstance(body, dict) and body.get("stream")):
            return None
        if not isinstance(body.get("messages"), list):
            return None  # let the demo handler give its 400
        with self._lock:
            return self._slow_stream

    async def _pause(self, seconds: float) -> bool:
        """Wait `seconds` (at least), or less if the server is closing; True if it is."""
        deadline = time.monotonic() + seconds
        while not self._closing.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await asyncio.sleep(min(_POLL_SECONDS, left))
        return True

    async def _stream_slowly(
        self, request: web.Request, body: dict[str, Any], plan: _SlowStream
    ) -> web.StreamResponse:
        """An OpenAI SSE stream of timed chunks: the demo agents' format, stretched."""
        agent = request.match_info["agent"]
        text = answer_text(agent, body["messages"])
        chunk = _ChunkWriter(
            completion_id="chatcmpl-" + hashlib.sha256(text.encode()).hexdigest()[:24],
            model=str(body.get("model") or f"demo-{agent}"),
        )
        response = web.StreamResponse(
            headers={"content-type": "text/event-stream", "cache-control": "no-cache"}
        )
        await response.prepare(request)
        ticks = max(1, round(plan.seconds / plan.interval))
        for tick in range(ticks):
            delta = {"content": f"chunk {tick + 1} of {ticks}. "}
            if tick == 0:
                delta = {"role": "assistant", **delta}
            await response.write(chunk(delta))
            if await self._pause(plan.interval):
                break  # closing: end the stream properly instead of hanging shutdown
        await response.write(chunk({}, finish="stop"))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


class _ChunkWriter:
    """Encodes `chat.completion.chunk` SSE events as meshroute.demo.agents does.

    That module builds them in a closure it does not expose, so the few lines are
    repeated here rather than edited there.
    """

    def __init__(self, completion_id: str, model: str) -> None:
        self._id = completion_id
        self._model = model
        self._created = int(time.time())

    def __call__(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return f"data: {json.dumps(chunk)}\n\n".encode()


async def _json_or_none(request: web.Request) -> Any:
    """The body as JSON, or None; aiohttp caches the bytes, so handlers can read again."""
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _error(status: int, message: str) -> web.Response:
    """An OpenAI-style error body, so clients parse failures as they would the real API."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return web.json_response(
        {"error": {"type": kind, "message": message, "code": status}}, status=status
    )


def tls_upstream(name: str, ca: trustme.CA, hostname: str = "localhost") -> Upstream:
    """An `Upstream` served over HTTPS with a certificate for `hostname` issued by `ca`.

    Envoy verifying it needs the CA (see `write_ca_pem`) and to expect `hostname`
    (SNI / subject alt name); it connects to 127.0.0.1, which is where it listens.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(hostname).configure_cert(context)
    return Upstream(name, ssl_context=context, hostname=hostname)


def write_ca_pem(ca: trustme.CA, path: str | Path) -> Path:
    """Write `ca`'s certificate as PEM to `path`: the file Envoy's `caFile` names."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ca.cert_pem.write_to_path(str(path))
    return path


@contextlib.contextmanager
def upstreams(*names: str) -> Iterator[list[Upstream]]:
    """Start one plain `Upstream` per name; all are closed on exit, even after an error
    (also when one fails to start), so no server thread outlives its test."""
    with contextlib.ExitStack() as stack:
        hosts: list[Upstream] = []
        for name in names:
            host = Upstream(name)
            stack.callback(host.close)
            hosts.append(host)
        yield hosts
