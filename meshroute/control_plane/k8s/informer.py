"""A local copy of one resource type, kept current by list-then-watch.

The protocol, as client-go's reflector speaks it: list once and remember the list's
resourceVersion; watch from there, moving the remembered version forward with every
event and bookmark; when a watch ends (the server closes it after its timeout, or
the connection drops) watch again from the remembered version, so nothing is missed
and nothing is listed twice. Only when the server says that version is gone (410,
history compacted) is everything listed again, replacing the copy wholesale, so
objects deleted meanwhile disappear too. Failures back off exponentially, with
jitter, so a restarting API server is not stampeded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from meshroute.control_plane.k8s.api import GONE, KubeApiError, ResourceClient, WatchEvent
from meshroute.lifecycle import Backoff

log = logging.getLogger("meshroute.control_plane.kubernetes")

WATCH_TIMEOUT_SECONDS = 300


class Informer:
    """The objects of one kind in one namespace, by name, as of `resource_version`."""

    def __init__(
        self,
        resource: ResourceClient,
        on_change: Callable[[], None],
        backoff: Backoff | None = None,
        watch_timeout: int = WATCH_TIMEOUT_SECONDS,
    ) -> None:
        self.resource = resource
        self.objects: dict[str, dict[str, Any]] = {}
        self.synced = asyncio.Event()
        """Set once the first list has arrived."""
        self.resource_version: str | None = None
        """Where the next watch starts; None means list first."""
        self._on_change = on_change
        self._backoff = backoff or Backoff()
        self._watch_timeout = watch_timeout

    async def run(self) -> None:
        """Keep `objects` current until cancelled."""
        while True:
            try:
                if self.resource_version is None:
                    await self._list()
                if not await self._watch():
                    # Ended before telling us anything: do not spin on a server that
                    # closes watches at once.
                    await asyncio.sleep(self._backoff.next_delay())
            except KubeApiError as error:
                if error.status == GONE:
                    log.info("%s: %s; listing again", self.resource.describe(), error)
                    self.resource_version = None
                    continue
                delay = self._backoff.next_delay()
                log.warning("%s: %s; retrying in %.1f s", self.resource.describe(), error, delay)
                await asyncio.sleep(delay)
            except Exception:  # a bug or a surprise must not stop the watch for good
                delay = self._backoff.next_delay()
                log.exception(
                    "%s: unexpected failure; listing again in %.1f s",
                    self.resource.describe(),
                    delay,
                )
                self.resource_version = None
                await asyncio.sleep(delay)

    async def _list(self) -> None:
        items, version = await self.resource.list()
        self.objects = {item["metadata"]["name"]: item for item in items}
        self.resource_version = version
        self._backoff.reset()
        log.debug("%s: listed %d at version %s", self.resource.describe(), len(items), version)
        self.synced.set()
        self._on_change()

    async def _watch(self) -> bool:
        """One watch, until the server ends it; True if any event came."""
        assert self.resource_version is not None
        received = False
        async for event in self.resource.watch(self.resource_version, self._watch_timeout):
            received = True
            self._backoff.reset()
            self._apply(event)
        return received

    def _apply(self, event: WatchEvent) -> None:
        if event.resource_version:
            self.resource_version = event.resource_version
        if event.type == "BOOKMARK":
            return
        name = event.object.get("metadata", {}).get("name")
        if not name:
            return
        if event.type == "DELETED":
            self.objects.pop(name, None)
        else:
            self.objects[name] = event.object
        self._on_change()
