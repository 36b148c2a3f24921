"""Process plumbing every meshroute command shares: logging, signals, parent death."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import json
import logging
import random
import signal
import sys
from collections.abc import Callable
from contextvars import ContextVar
from typing import Literal

from opentelemetry import trace

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
LogFormat = Literal["text", "json"]

REQUEST_ID: ContextVar[str | None] = ContextVar("meshroute_request_id", default=None)
"""The x-request-id of the request being handled, for log lines about it."""


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    """Text for people, or one JSON object per line for log pipelines; either way
    lines written while a request is handled carry its request and trace ids."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(add_request_context)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter(LOG_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def add_request_context(record: logging.LogRecord) -> bool:
    record.request_id = REQUEST_ID.get()
    span_context = trace.get_current_span().get_span_context()
    record.trace_id = format(span_context.trace_id, "032x") if span_context.is_valid else None
    return True


class TextFormatter(logging.Formatter):
    """The classic line, with the request id at the end when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        return f"{line} [request {request_id}]" if request_id else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request and trace ids."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "trace_id"):
            value = getattr(record, key, None)
            if value:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


async def wait_for_stop_signal() -> signal.Signals:
    """Until SIGINT or SIGTERM arrives; returns which."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[signal.Signals] = loop.create_future()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, _resolve_once, received, signum)
    try:
        return await received
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _resolve_once(future: asyncio.Future[signal.Signals], signum: signal.Signals) -> None:
    if not future.done():
        future.set_result(signum)


def on_signal(signum: signal.Signals, callback: Callable[[], None]) -> None:
    asyncio.get_running_loop().add_signal_handler(signum, callback)


_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[[int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    prctl: Callable[[int, int], int] = ctypes.CDLL(name, use_errno=True).prctl
    return prctl


_prctl = _load_prctl()  # loaded now: the function below runs between fork and exec


def die_with_parent() -> None:
    """preexec_fn for children: the kernel sends SIGTERM if the parent dies, even by SIGKILL.

    Without this, a supervisor killed hard would leave Envoy and the sidecars
    running and holding their ports.
    """
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Backoff:
    """Delays between retries: doubling from `initial` to `maximum`, with jitter."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self._next = initial

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self._next = self.initial
