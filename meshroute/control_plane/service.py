"""`meshroute control-plane`: load config, serve it over ADS, follow changes.

Config changes arrive by file (watched) or by SIGHUP. A change that fails any check
(schema, cross-references, or Envoy's own validation of the rendered resources) is
refused with one log line, and the last good snapshot keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from meshroute.control_plane.bootstrap import check_with_envoy
from meshroute.control_plane.config import ConfigErrors, load_config
from meshroute.control_plane.credentials import MissingCredentials, read_credentials
from meshroute.control_plane.translate.deployment import DeploymentSettings
from meshroute.control_plane.translate.snapshot import Resources, translate
from meshroute.control_plane.watch import Fingerprint, fingerprint, watch
from meshroute.control_plane.xds import type_urls
from meshroute.control_plane.xds.server import start_xds_server
from meshroute.control_plane.xds.snapshot import SnapshotCache
from meshroute.envoy_binary import EnvoyNotFound, EnvoyRejected
from meshroute.lifecycle import on_signal, wait_for_stop_signal

log = logging.getLogger("meshroute.control_plane")


class ConfigRejected(Exception):
    """The config cannot be served; the message is one line naming every problem."""


def build_resources(paths: Sequence[Path], settings: DeploymentSettings) -> Resources:
    """Config files -> checked resources, or ConfigRejected saying why not."""
    try:
        config = load_config(paths)
        resources = translate(config, settings, read_credentials(config, settings.secrets_dir))
    except ConfigErrors as errors:
        count = len(errors.errors)
        problems = "; ".join(str(error) for error in errors.errors)
        raise ConfigRejected(f"{count} error{'s' if count != 1 else ''}: {problems}") from None
    except MissingCredentials as missing:
        raise ConfigRejected(f"missing credentials: {missing}") from None
    try:
        check_with_envoy(resources)
    except EnvoyNotFound as missing:
        log.warning("not checking the config with Envoy: %s", missing)
    except EnvoyRejected as rejected:
        detail = " ".join(str(rejected).split())
        raise ConfigRejected(f"Envoy's validation refuses it: {detail}") from None
    return resources


class ConfigSource:
    """Config files, loaded into the cache now and again whenever they change."""

    def __init__(
        self, paths: Sequence[Path], cache: SnapshotCache, settings: DeploymentSettings
    ) -> None:
        self.paths = list(paths)
        self._cache = cache
        self._settings = settings
        self._reloading = asyncio.Lock()
        self.loaded: Fingerprint | None = None

    def load(self) -> str:
        """The first load; ConfigRejected if it cannot be served."""
        self.loaded = fingerprint(self.paths)  # before reading: later edits count as changes
        return self._cache.set_resources(build_resources(self.paths, self._settings)).version

    async def reload(self) -> None:
        """Load again; a bad config is logged and the last good one keeps serving."""
        async with self._reloading:
            before = self._cache.current
            previous = before.version
            started = time.perf_counter()
            try:
                resources = await asyncio.to_thread(build_resources, self.paths, self._settings)
            except ConfigRejected as rejected:
                log.error(
                    "config reload REJECTED, still serving version %s: %s", previous, rejected
                )
                return
            after = self._cache.set_resources(resources)
            elapsed_ms = (time.perf_counter() - started) * 1000
            if after.version == previous:
                log.info("config reloaded: no change (version %s)", previous)
                return
            changed = [
                type_urls.short_name(type_url)
                for type_url in type_urls.PUSH_ORDER
                if after.types[type_url].version != before.types[type_url].version
            ]
            log.info(
                "config reloaded: now serving version %s (changed: %s; checked in %.0f ms)",
                after.version,
                ", ".join(changed),
                elapsed_ms,
            )


async def run_control_plane(
    paths: Sequence[Path],
    address: str,
    port: int,
    settings: DeploymentSettings,
    watch_files: bool = True,
) -> None:
    cache = SnapshotCache()
    source = ConfigSource(paths, cache, settings)
    version = source.load()  # a bad config at startup is fatal: nothing good to serve
    server, _, bound = await start_xds_server(cache, address, port)
    tasks: set[asyncio.Task[None]] = set()

    def reload_now() -> None:
        task = asyncio.create_task(source.reload())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    on_signal(signal.SIGHUP, reload_now)
    stopped = asyncio.create_task(wait_for_stop_signal())
    watcher = (
        asyncio.create_task(watch(source.paths, source.reload, seen=source.loaded))
        if watch_files
        else None
    )
    await asyncio.sleep(0)  # the stop handlers are in place before we say we serve
    log.info("serving config version %s over ADS on %s:%d", version, address, bound)
    try:
        await stopped
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await server.stop(grace=1)


def serve(
    paths: Sequence[Path],
    address: str,
    port: int,
    settings: DeploymentSettings,
    watch_files: bool = True,
) -> None:
    asyncio.run(run_control_plane(paths, address, port, settings, watch_files))
