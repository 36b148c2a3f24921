from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.processes import ManagedProcess, free_port, meshroute_argv, port_open


@pytest.fixture(scope="session")
def demo_agents_port() -> Iterator[int]:
    """`meshroute demo-agents` on a free port, shared by every integration test."""
    port = free_port()
    process = ManagedProcess(
        "demo-agents", meshroute_argv("demo-agents", "--address", "127.0.0.1", "--port", str(port))
    )
    process.wait_until(lambda: port_open(port), "demo agents listening")
    yield port
    process.stop()
