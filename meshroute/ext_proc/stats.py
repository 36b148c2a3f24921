"""What the sidecar counts about its decisions, per gateway, for this process."""

from __future__ import annotations

import logging
from collections import Counter

log = logging.getLogger("meshroute.ext_proc")


class RoutingStats:
    """Counts of decisions and fallbacks, per gateway, for this process."""

    def __init__(self) -> None:
        self.decisions: Counter[tuple[str, str]] = Counter()
        """(gateway, reason) -> requests."""
        self.fallbacks: Counter[tuple[str, str]] = Counter()
        """(gateway, cause) -> requests that fell back to the default target."""

    def count(self, gateway: str, reason: str, cause: str | None, detail: str, serves: str) -> None:
        self.decisions[(gateway, reason)] += 1
        if cause is not None:
            self.fallbacks[(gateway, cause)] += 1
            log.warning(
                "gateway %s: routing model failed (%s: %s); %s serves",
                gateway,
                cause,
                detail,
                serves,
            )
