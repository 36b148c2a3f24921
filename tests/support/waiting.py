"""Waiting for something that happens asynchronously, without guessing how long."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from tests.support.processes import READY_TIMEOUT

T = TypeVar("T")


def eventually(probe: Callable[[], T | None], what: str, timeout: float = READY_TIMEOUT) -> T:
    """The first truthy result of `probe`, polled until `timeout` (a generous bound
    for a stuck condition, never a measure of speed)."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.05)
