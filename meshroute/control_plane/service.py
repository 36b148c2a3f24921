"""`meshroute control-plane`: keep a snapshot of the config current, serve it over ADS.

Where the config comes from is a feed: files (`FileFeed`, below) or the Kubernetes
API (`k8s.feed.KubernetesFeed`). Either way the xDS port opens only once there is a
first snapshot to serve, and `/readyz` says so for Kubernetes probes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from meshroute.control_plane.config import ConfigErrors, load_config
from meshroute.control_plane.config.loader import ParsedFiles
from meshroute.control_plane.credentials import MissingCredentials, read_credentials
from meshroute.control_plane.envoy_gate import envoy_refusal
from meshroute.control_plane.health import start_health_server
from meshroute.control_plane.metrics import ControlPlaneMetrics, ReloadOutcome
from meshroute.control_plane.translate.deployment import DeploymentSettings
from meshroute.control_plane.translate.snapshot import Resources, translate
from meshroute.control_plane.watch import fingerprint, watch
from meshroute.control_plane.xds import type_urls
from meshroute.control_plane.xds.server import AggregatedDiscoveryService, start_xds_server
from meshroute.control_plane.xds.snapshot import Snapshot, SnapshotCache
from meshroute.lifecycle import on_signal, wait_for_stop_signal
from meshroute.xds_tls import XdsServerTls

log = logging.getLogger("meshroute.control_plane")


class ConfigRejected(Exception):
    """The config cannot be served; the message is one line naming every problem."""


class ConfigFeed(Protocol):
    """Where the config comes from."""

    async def run(self, cache: SnapshotCache, metrics: ControlPlaneMetrics) -> None:
        """Put the config into `cache`, and again whenever it changes, until cancelled;
        report each change with `report_snapshot` (and refusals to `metrics`).
        Raising ends the control plane (e.g. ConfigRejected at startup)."""


def build_resources(
    paths: Sequence[Path], settings: DeploymentSettings, parsed: ParsedFiles | None = None
) -> Resources:
    """Config files -> checked resources, or ConfigRejected saying why not. `parsed`:
    what unchanged files parsed into last time (a reload re-parses only edited files)."""
    try:
        config = load_config(paths, parsed)
        resources = translate(config, settings, read_credentials(config, settings.secrets_dir))
    except ConfigErrors as errors:
        count = len(errors.errors)
        problems = "; ".join(str(error) for error in errors.errors)
        raise ConfigRejected(f"{count} error{'s' if count != 1 else ''}: {problems}") from None
    except MissingCredentials as missing:
        raise ConfigRejected(f"missing credentials: {missing}") from None
    refusal = envoy_refusal(resources)
    if refusal is not None:
        raise ConfigRejected(f"Envoy's validation refuses it: {refusal}")
    return resources


def report_snapshot(
    before: Snapshot | None,
    after: Snapshot,
    started: float,
    metrics: ControlPlaneMetrics,
    outcome: ReloadOutcome = "accepted",
) -> None:
    """One log line per reload: the version now served, and what it pushes; and the
    same in metrics."""
    elapsed_ms = (time.perf_counter() - started) * 1000
    metrics.served(after.version)
    if before is None:
        log.info("config loaded: version %s (checked in %.0f ms)", after.version, elapsed_ms)
        return
    if after.version == before.version:
        metrics.reloaded("unchanged")
        log.info("config reloaded: no change (version %s)", after.version)
        return
    metrics.reloaded(outcome)
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


class FileFeed:
    """Config files, loaded now and again whenever they change (or on SIGHUP).

    All or nothing: a reload that fails any check is refused with one log line, and
    the last good snapshot keeps serving. A bad config at startup is fatal, since
    there is nothing good to serve.
    """

    def __init__(
        self, paths: Sequence[Path], settings: DeploymentSettings, watch_files: bool = True
    ) -> None:
        self.paths = list(paths)
        self._settings = settings
        self._watch_files = watch_files
        self._reloading = asyncio.Lock()
        self._parsed = ParsedFiles()

    async def run(self, cache: SnapshotCache, metrics: ControlPlaneMetrics) -> None:
        loaded = fingerprint(self.paths)  # before reading: later edits count as changes
        started = time.perf_counter()
        resources = await asyncio.to_thread(
            build_resources, self.paths, self._settings, self._parsed
        )
        report_snapshot(None, cache.set_resources(resources), started, metrics)
        reloads: set[asyncio.Task[None]] = set()

        def reload_now() -> None:
            task = asyncio.create_task(self.reload(cache, metrics))
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        on_signal(signal.SIGHUP, reload_now)
        if self._watch_files:
            await watch(self.paths, lambda: self.reload(cache, metrics), seen=loaded)
        else:
            await asyncio.Event().wait()  # SIGHUP only

    async def reload(self, cache: SnapshotCache, metrics: ControlPlaneMetrics) -> None:
        async with self._reloading:
            before = cache.current
            started = time.perf_counter()
            try:
                resources = await asyncio.to_thread(
                    build_resources, self.paths, self._settings, self._parsed
                )
            except ConfigRejected as rejected:
                metrics.reloaded("rejected")
                log.error(
                    "config reload REJECTED, still serving version %s: %s",
                    before.version,
                    rejected,
                )
                return
            report_snapshot(before, cache.set_resources(resources), started, metrics)


async def run_control_plane(
    feed: ConfigFeed,
    address: str,
    port: int,
    health: tuple[str, int] | None = None,
    tls: XdsServerTls | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT. `health`: where /healthz and /readyz answer;
    `tls`: serve ADS over TLS (mutual, with a client CA) rather than plaintext."""
    cache = SnapshotCache()
    metrics = ControlPlaneMetrics()
    service = AggregatedDiscoveryService(cache, metrics)
    first_snapshot = cache.watch()
    health_runner = (
        await start_health_server(*health, lambda: cache.served_version, metrics, service.status)
        if health
        else None
    )
    following = asyncio.create_task(feed.run(cache, metrics))
    stopped = asyncio.create_task(wait_for_stop_signal())
    first = asyncio.create_task(first_snapshot.wait())
    server = None
    try:
        await asyncio.wait({following, stopped, first}, return_when=asyncio.FIRST_COMPLETED)
        cache.unwatch(first_snapshot)
        if following.done():
            following.result()  # the feed gave up: say why
            return
        if stopped.done():
            return
        server, _, bound = await start_xds_server(cache, address, port, service, tls)
        version = cache.served_version
        log.info(
            "serving config version %s over ADS on %s:%d (%s)",
            version,
            address,
            bound,
            _transport(tls),
        )
        await asyncio.wait({following, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if following.done():
            following.result()
    finally:
        for task in (following, stopped, first):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if server is not None:
            await server.stop(grace=1)
        if health_runner is not None:
            await health_runner.cleanup()


def _transport(tls: XdsServerTls | None) -> str:
    """How clients must connect, for the startup line: an operator checking why a
    client cannot connect reads it first."""
    if tls is None:
        return "plaintext"
    if tls.requires_client_certificates:
        return f"mutual TLS: clients need a certificate signed by {tls.client_ca_file}"
    return "TLS; clients are not asked for certificates"


def serve(
    feed: ConfigFeed,
    address: str,
    port: int,
    health: tuple[str, int] | None,
    tls: XdsServerTls | None = None,
) -> None:
    asyncio.run(run_control_plane(feed, address, port, health, tls))
