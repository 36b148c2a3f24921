"""`meshroute control-plane`: load config, serve it over ADS, reload on SIGHUP."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from pathlib import Path

from meshroute.control_plane.config import ConfigErrors, load_config
from meshroute.control_plane.translate.listeners import ListenerSettings
from meshroute.control_plane.translate.snapshot import translate
from meshroute.control_plane.xds.server import start_xds_server
from meshroute.control_plane.xds.snapshot import SnapshotCache
from meshroute.lifecycle import on_signal, wait_for_stop_signal

log = logging.getLogger("meshroute.control_plane")


class ConfigSource:
    """Config files, loaded into the cache now and again whenever asked."""

    def __init__(
        self, paths: Sequence[Path], cache: SnapshotCache, settings: ListenerSettings
    ) -> None:
        self._paths = list(paths)
        self._cache = cache
        self._settings = settings

    def load(self) -> str:
        """Load, check and install the config; ConfigErrors if it is not valid."""
        resources = translate(load_config(self._paths), self._settings)
        return self._cache.set_resources(resources).version

    def reload(self) -> None:
        """Like load, but a bad config is logged and the last good one keeps serving."""
        previous = self._cache.current.version
        try:
            version = self.load()
        except ConfigErrors as errors:
            log.error("config reload REJECTED, still serving version %s:\n%s", previous, errors)
            return
        if version == previous:
            log.info("config reloaded: no change (version %s)", version)
        else:
            log.info("config reloaded: now serving version %s", version)


async def run_control_plane(
    paths: Sequence[Path], address: str, port: int, settings: ListenerSettings
) -> None:
    cache = SnapshotCache()
    source = ConfigSource(paths, cache, settings)
    version = source.load()  # a bad config at startup is fatal: nothing good to serve
    server, _, bound = await start_xds_server(cache, address, port)
    log.info("serving config version %s over ADS on %s:%d", version, address, bound)
    on_signal(signal.SIGHUP, source.reload)
    try:
        await wait_for_stop_signal()
    finally:
        await server.stop(grace=1)


def serve(paths: Sequence[Path], address: str, port: int, settings: ListenerSettings) -> None:
    asyncio.run(run_control_plane(paths, address, port, settings))
