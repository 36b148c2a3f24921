"""Child processes kept running: started, their output relayed, restarted when they crash.

`meshroute up` runs the whole stack this way, and `meshroute ext-proc --workers N` its
worker processes. A child that exits is started again after a backoff (and the log says
so); one that keeps crashing is broken rather than unlucky, and the supervisor gives up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from meshroute.lifecycle import Backoff, die_with_parent

STOP_TIMEOUT = 10.0
# A child that crashes is started again; one that crashes more than MAX_CRASHES times
# within CRASH_WINDOW_SECONDS is broken, not unlucky, and the supervisor stops.
MAX_CRASHES = 5
CRASH_WINDOW_SECONDS = 60.0
HEALTHY_RUN_SECONDS = 30.0
"""A child that ran this long before crashing starts its backoff afresh."""


def say(line: str) -> None:
    print(line, flush=True)


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None
    process: asyncio.subprocess.Process
    output: asyncio.Task[None] = field(repr=False)
    started_at: float = field(default_factory=time.monotonic)
    crashes: list[float] = field(default_factory=list)
    """When it exited unexpectedly, recently: too many in a window and the supervisor
    gives up."""
    backoff: Backoff = field(default_factory=lambda: Backoff(initial=0.5, maximum=10.0))


class Supervisor:
    def __init__(self) -> None:
        self.children: list[Child] = []
        self._workdir = tempfile.TemporaryDirectory(prefix="meshroute-up-")
        self.workdir = Path(self._workdir.name)
        """Files the children need (Envoy's bootstrap); removed by stop_all."""

    def forward(self, name: str, signum: signal.Signals) -> None:
        """Pass a signal on to one child (SIGHUP to the control plane reloads config)."""
        for child in self.children:
            if child.name == name and child.process.returncode is None:
                child.process.send_signal(signum)

    async def start(
        self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None
    ) -> Child:
        process, output = await _spawn(name, argv, env)
        child = Child(name, argv, env, process, output)
        self.children.append(child)
        return child

    async def restart(self, child: Child) -> float | None:
        """Start a child that exited again, after a backoff; the delay, or None when it
        crashed too often lately to keep trying."""
        now = time.monotonic()
        if now - child.started_at > HEALTHY_RUN_SECONDS:
            child.backoff.reset()  # it had been running fine: a fresh crash, not a loop
        child.crashes = [t for t in child.crashes if now - t < CRASH_WINDOW_SECONDS] + [now]
        if len(child.crashes) > MAX_CRASHES:
            return None
        delay = child.backoff.next_delay()
        with contextlib.suppress(asyncio.CancelledError):
            await child.output
        await asyncio.sleep(delay)
        child.process, child.output = await _spawn(child.name, child.argv, child.env)
        child.started_at = time.monotonic()
        return delay

    async def first_exit(self) -> Child:
        """The first child to exit (waits until one does)."""
        waits = {asyncio.create_task(child.process.wait()): child for child in self.children}
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        return waits[next(iter(done))]

    async def stop_all(self) -> None:
        """Stop children in reverse start order: Envoy first, so it stops taking traffic."""
        for child in reversed(self.children):
            if child.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.terminate()
                try:
                    await asyncio.wait_for(child.process.wait(), STOP_TIMEOUT)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        child.process.kill()
                    await child.process.wait()
            with contextlib.suppress(asyncio.CancelledError):
                await child.output
        self._workdir.cleanup()


async def _spawn(
    name: str, argv: Sequence[str], env: Mapping[str, str] | None
) -> tuple[asyncio.subprocess.Process, asyncio.Task[None]]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        env={**os.environ, **env} if env else None,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches `up`, which stops children in order
        preexec_fn=die_with_parent,
    )
    assert process.stdout is not None
    return process, asyncio.create_task(_relay(name, process.stdout))


async def _relay(name: str, stream: asyncio.StreamReader) -> None:
    """Each child's output, line by line, prefixed with its name."""
    prefix = f"{name:>13} | "
    while line := await stream.readline():
        sys.stdout.write(prefix + line.decode(errors="replace"))
        sys.stdout.flush()


async def keep_running(
    supervisor: Supervisor, stop: asyncio.Task[signal.Signals], who: str = "meshroute up"
) -> int:
    """Until Ctrl-C: a child that exits is started again after a backoff, and said so;
    one that keeps crashing stops everything."""
    while True:
        exited = asyncio.create_task(supervisor.first_exit())
        done, _ = await asyncio.wait({exited, stop}, return_when=asyncio.FIRST_COMPLETED)
        if stop in done:
            exited.cancel()
            say(f"{who}: stopping")
            return 0
        child = exited.result()
        code = child.process.returncode
        restarting = asyncio.create_task(supervisor.restart(child))
        say(f"{who}: {child.name} exited unexpectedly with code {code}; restarting it")
        done, _ = await asyncio.wait({restarting, stop}, return_when=asyncio.FIRST_COMPLETED)
        if stop in done:
            restarting.cancel()
            say(f"{who}: stopping")
            return 0
        delay = restarting.result()
        if delay is None:
            say(
                f"{who}: {child.name} exited {MAX_CRASHES + 1} times within "
                f"{CRASH_WINDOW_SECONDS:.0f} s; stopping everything"
            )
            return 1
        say(f"{who}: {child.name} restarted after {delay:.1f} s")
