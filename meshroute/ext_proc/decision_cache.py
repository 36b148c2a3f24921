"""A small time-bounded, size-bounded cache of routing decisions.

Chat clients resend the whole conversation with every turn, and retries resend the
same request: asking the routing model again for an identical conversation costs a
model call and gains nothing. Entries expire after `ttl` seconds so a changed model
or config is picked up, and the oldest go first when the cache is full.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class DecisionCache:
    def __init__(
        self, ttl: float, max_entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[float, tuple[str, ...]]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self._ttl > 0 and self._max_entries > 0

    def get(self, key: bytes) -> tuple[str, ...] | None:
        if not self.enabled:
            return None
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, decision = entry
        if expires <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return decision

    def put(self, key: bytes, decision: tuple[str, ...]) -> None:
        if not self.enabled:
            return
        self._entries[key] = (self._clock() + self._ttl, decision)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
