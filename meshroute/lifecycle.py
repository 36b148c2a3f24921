"""Process plumbing every meshroute command shares: logging, signals, parent death."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import signal
import sys
from collections.abc import Callable

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=sys.stderr, force=True)


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
