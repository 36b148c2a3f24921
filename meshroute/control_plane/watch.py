"""Noticing config file changes, the way editors and Kubernetes make them.

Editors save by writing a temporary file and renaming it over the old one; a
Kubernetes ConfigMap volume swaps a `..data` symlink to a new directory. Both
defeat watches on the old inode. What decides whether the config changed is
therefore what each path resolves to now (name, inode, size, mtime: `fingerprint`),
compared with what was last loaded; a few stat calls.

When to look is told by the kernel: `watchfiles` (inotify on Linux) reports any
change in the directories that hold the config (the directory itself, or a file's
parent, where renames and `..data` swaps happen), non-recursively, as the loader
reads them. It answers within milliseconds where polling alone waited for the next
tick. Polling stays as the fallback, for what events do not reach (a symlink to a
file in another directory edited in place, filesystems without inotify, a watch
that failed), every `interval` seconds.

Changes are reported once they have settled (no further change for `settle`
seconds: watchfiles reports a burst of events once it has paused that long, and a
change found by polling is looked at again after that long), so a save that touches
several files reloads once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import watchfiles

from meshroute.control_plane.config.loader import YAML_SUFFIXES

log = logging.getLogger("meshroute.control_plane")

POLL_INTERVAL = 0.25
"""The fallback: stat calls are cheap, and a missed event still reloads soon."""
SETTLE_TIME = 0.05
"""Quiet time before a change counts. Event-driven, this need not cover the time
between polls (0.2 s when polling alone decided); it covers one save's writes."""
RETRY_EVENTS = 5.0
"""Seconds before watching for events again after it failed (e.g. no directory yet)."""

Fingerprint = tuple[tuple[str, int, int, int] | tuple[str], ...]


def fingerprint(paths: Sequence[Path]) -> Fingerprint:
    """What the config looks like on disk, cheaply: changes when any file does."""
    entries: list[tuple[str, int, int, int] | tuple[str]] = []
    for path in paths:
        files = sorted(_yaml_files(path)) if path.is_dir() else [path]
        for file in files:
            try:
                stat = os.stat(file)  # follows symlinks: a ConfigMap swap changes the inode
            except OSError:
                entries.append((str(file),))
                continue
            entries.append((str(file), stat.st_ino, stat.st_size, stat.st_mtime_ns))
    return tuple(entries)


def _yaml_files(directory: Path) -> list[Path]:
    try:
        children = list(directory.iterdir())
    except OSError:
        return []
    return [
        child
        for child in children
        if child.suffix in YAML_SUFFIXES and not child.name.startswith(".")
    ]


async def watch(
    paths: Sequence[Path],
    on_change: Callable[[], Awaitable[None]],
    *,
    seen: Fingerprint | None = None,
    interval: float = POLL_INTERVAL,
    settle: float = SETTLE_TIME,
    events: bool = True,
) -> None:
    """Call `on_change` after each settled change under `paths`, until cancelled.

    `seen` is how the files looked when they were last loaded: a change made between
    that load and this call is still noticed. `events`: look when the kernel says
    something changed, not only every `interval` seconds.
    """
    if seen is None:
        seen = fingerprint(paths)
    nudged = asyncio.Event()
    notifier = asyncio.create_task(_notify(paths, nudged, settle, interval)) if events else None
    try:
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11, a cancel that lands as
            # wait_for times out can come out as TimeoutError, which this loop would
            # swallow, and the watch would never stop (seen under load).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await nudged.wait()
            told = nudged.is_set()  # by events, which come once writes paused for `settle`
            nudged.clear()
            current = fingerprint(paths)
            if current == seen:
                continue
            while not told:  # found by polling: wait until writing stops
                await asyncio.sleep(settle)
                settled = fingerprint(paths)
                if settled == current:
                    break
                current = settled
            seen = current
            log.info("config files changed; reloading")
            await on_change()
    finally:
        if notifier is not None:
            notifier.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await notifier


def watched_directories(paths: Sequence[Path]) -> list[Path]:
    """Where a change to `paths` shows as an event: a directory itself, and a file's
    parent (an editor's rename and a ConfigMap's `..data` swap happen there)."""
    directories = {path if path.is_dir() else path.parent for path in paths}
    return sorted(directory for directory in directories if directory.is_dir())


async def _notify(
    paths: Sequence[Path], nudged: asyncio.Event, settle: float, interval: float
) -> None:
    """Set `nudged` whenever something changes in the directories holding `paths`.

    Every event counts (no filter): the fingerprint decides what matters. Should
    watching fail, polling carries on alone, and watching is tried again later."""
    step_ms = max(1, int(settle * 1000))
    said = False
    while True:
        directories = watched_directories(paths)
        try:
            if directories:
                async for _ in watchfiles.awatch(
                    *directories, watch_filter=None, recursive=False, step=step_ms
                ):
                    nudged.set()
        except Exception as error:  # whatever went wrong, polling covers it
            if not said:
                log.warning(
                    "cannot watch %s for changes (%s); polling every %.2g s instead",
                    ", ".join(map(str, directories)),
                    error,
                    interval,
                )
                said = True
        await asyncio.sleep(RETRY_EVENTS)  # a directory may appear, or be recreated
