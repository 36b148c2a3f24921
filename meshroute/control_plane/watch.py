"""Noticing config file changes, the way editors and Kubernetes make them.

Editors save by writing a temporary file and renaming it over the old one; a
Kubernetes ConfigMap volume swaps a `..data` symlink to a new directory. Both
defeat watches on the old inode. Polling what each path resolves to (name, inode,
size, mtime) catches every one of them, costs a few stat calls a second, and needs
no platform API. Changes are reported once they have settled, so a save that
touches several files reloads once.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from meshroute.control_plane.config.loader import YAML_SUFFIXES

log = logging.getLogger("meshroute.control_plane")

POLL_INTERVAL = 0.25
SETTLE_TIME = 0.2

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
    seen: Fingerprint | None = None,
    interval: float = POLL_INTERVAL,
    settle: float = SETTLE_TIME,
) -> None:
    """Call `on_change` after each settled change under `paths`, until cancelled.

    `seen` is how the files looked when they were last loaded: a change made between
    that load and this call is still noticed.
    """
    if seen is None:
        seen = fingerprint(paths)
    while True:
        await asyncio.sleep(interval)
        current = fingerprint(paths)
        if current == seen:
            continue
        while True:  # wait until writing stops
            await asyncio.sleep(settle)
            settled = fingerprint(paths)
            if settled == current:
                break
            current = settled
        seen = current
        log.info("config files changed; reloading")
        await on_change()
