"""Noticing config changes however they are made: in place, by rename, by symlink swap."""

from __future__ import annotations

import asyncio
import os
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
