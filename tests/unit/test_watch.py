"""Noticing config changes however they are made: in place, by rename, by symlink swap."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from meshroute.control_plane.watch import fingerprint, watch


def test_every_kind_of_save_changes_the_fingerprint(tmp_path: Path) -> None:
    config = tmp_path / "agents.yaml"
    config.write_text("a: 1\n")
    before = fingerprint([tmp_path])

    config.write_text("a: 2\n")  # in place, different size
    in_place = fingerprint([tmp_path])
    assert in_place != before

    replacement = tmp_path / ".agents.yaml.swp"
    replacement.write_text("a: 2\n")  # same size as before: only the inode differs
    os.replace(replacement, config)
    renamed = fingerprint([tmp_path])
    assert renamed != in_place

    (tmp_path / "more.yml").write_text("b: 1\n")
    assert fingerprint([tmp_path]) != renamed


def test_a_configmap_style_symlink_swap_changes_the_fingerprint(tmp_path: Path) -> None:
    # Kubernetes mounts a ConfigMap as files that link through `..data`, a symlink
    # to a timestamped directory, and updates by pointing `..data` at a new one.
    mount = tmp_path / "mount"
    mount.mkdir()
    for version, text in (("v1", "a: 1\n"), ("v2", "a: 2\n")):
        (mount / f"..{version}").mkdir()
        (mount / f"..{version}" / "agents.yaml").write_text(text)
    (mount / "..data").symlink_to("..v1")
    (mount / "agents.yaml").symlink_to("..data/agents.yaml")
    before = fingerprint([mount])

    (mount / "..data_tmp").symlink_to("..v2")
    os.replace(mount / "..data_tmp", mount / "..data")
    assert fingerprint([mount]) != before


def test_hidden_and_other_files_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "agents.yaml").write_text("a: 1\n")
    before = fingerprint([tmp_path])
    (tmp_path / ".agents.yaml.swp").write_text("junk")
    (tmp_path / "notes.txt").write_text("junk")
    assert fingerprint([tmp_path]) == before


async def test_a_burst_of_writes_reloads_once(tmp_path: Path) -> None:
    config = tmp_path / "agents.yaml"
    config.write_text("a: 0\n")
    reloads = 0
    changed = asyncio.Event()

    async def on_change() -> None:
        nonlocal reloads
        reloads += 1
        changed.set()

    watcher = asyncio.create_task(
        watch([tmp_path], on_change, seen=fingerprint([tmp_path]), interval=0.05, settle=0.5)
    )
    try:
        for value in range(1, 6):  # five writes, closer together than the settle time
            config.write_text(f"a: {value}{' ' * value}\n")
            await asyncio.sleep(0.02)
        await changed.wait()
        assert reloads == 1
    finally:
        watcher.cancel()


async def saves_until_noticed(save: Callable[[int], None], changed: asyncio.Event) -> None:
    """Save again and again until the watcher says so: saves made before its watch is
    in place are not seen (the test's timeout bounds the wait, not a guess)."""
    for version in itertools.count(1):
        save(version)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), 0.25)
            return


async def stop(watcher: asyncio.Task[None]) -> None:
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher


def noticing() -> tuple[asyncio.Event, Callable[[], Awaitable[None]]]:
    changed = asyncio.Event()

    async def on_change() -> None:
        changed.set()

    return changed, on_change


async def test_an_editors_rename_over_save_is_told_by_file_events(tmp_path: Path) -> None:
    config = tmp_path / "agents.yaml"
    config.write_text("a: 0\n")
    changed, on_change = noticing()

    def save(version: int) -> None:
        replacement = tmp_path / ".agents.yaml.swp"
        replacement.write_text(f"a: {version}\n")
        os.replace(replacement, config)

    # Polling once an hour: only an event can tell the watcher in time.
    watcher = asyncio.create_task(watch([tmp_path], on_change, interval=3600, settle=0.01))
    try:
        await saves_until_noticed(save, changed)
    finally:
        await stop(watcher)


async def test_a_configmap_symlink_swap_is_told_by_file_events(tmp_path: Path) -> None:
    mount = tmp_path / "mount"
    mount.mkdir()
    (mount / "..v0").mkdir()
    (mount / "..v0" / "agents.yaml").write_text("a: 0\n")
    (mount / "..data").symlink_to("..v0")
    (mount / "agents.yaml").symlink_to("..data/agents.yaml")
    changed, on_change = noticing()

    def swap(version: int) -> None:
        (mount / f"..v{version}").mkdir()
        (mount / f"..v{version}" / "agents.yaml").write_text(f"a: {version}\n")
        (mount / "..data_tmp").symlink_to(f"..v{version}")
        os.replace(mount / "..data_tmp", mount / "..data")

    # The file named on the command line, as a ConfigMap mount is often given.
    watcher = asyncio.create_task(
        watch([mount / "agents.yaml"], on_change, interval=3600, settle=0.01)
    )
    try:
        await saves_until_noticed(swap, changed)
    finally:
        await stop(watcher)


async def test_polling_carries_on_where_events_cannot_be_had(tmp_path: Path) -> None:
    missing = tmp_path / "later"  # nothing to watch yet: events fail, polling goes on
    changed, on_change = noticing()

    def create(version: int) -> None:
        missing.mkdir(exist_ok=True)
        (missing / "agents.yaml").write_text(f"a: {version}\n")

    watcher = asyncio.create_task(watch([missing], on_change, interval=0.05, settle=0.01))
    try:
        await saves_until_noticed(create, changed)
    finally:
        await stop(watcher)
