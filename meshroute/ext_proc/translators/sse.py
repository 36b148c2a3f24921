"""Server-sent events: the splitter both stream translators read with, and the writer.

Envoy hands the sidecar a response body in whatever pieces the network produced: an
event may be cut anywhere (even inside a CRLF or a multi-byte character), and one piece
may hold several events. `SSESplitter` buffers the incomplete tail and returns only whole
events. `StreamTranslator` is the loop both directions share: split, translate each event,
join the output, and close the stream properly when the upstream ends.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any

from meshroute.ext_proc.translators import JSON, dumps

SSEEvent = tuple[str, str]
"""(event name, data): the name is "message" when the event has no `event:` field."""

DONE = "[DONE]"
"""OpenAI's end-of-stream marker, sent as the data of the last event."""
DONE_EVENT = f"data: {DONE}\n\n".encode()


class SSESplitter:
    """Incremental parser for a `text/event-stream` body (WHATWG HTML, 9.2.6).

    Lines may end in LF, CRLF or a lone CR; a blank line ends an event; several `data:`
    lines join with LF; comments (`:` lines), `id` and `retry` are ignored, as is an
    event without data. Line endings are normalised to LF as bytes arrive, which only
    requires holding back a trailing CR until we know whether LF follows it.
    """

    __slots__ = ("_buffer", "_held_cr", "_scanned")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._held_cr = False
        self._scanned = 0
        """Where to resume looking for a blank line: the buffer before it has none."""

    def feed(self, data: bytes) -> list[SSEEvent]:
        """The events that `data` completes, in order."""
        if self._held_cr:
            data = b"\r" + data
        self._held_cr = data.endswith(b"\r")
        if self._held_cr:
            data = data[:-1]
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buffer = self._buffer
        buffer += data
        events: list[SSEEvent] = []
        start = 0
        search = max(self._scanned - 1, 0)
        while (end := buffer.find(b"\n\n", search)) != -1:
            _append_event(events, bytes(buffer[start:end]))
            start = search = end + 2
        if start:
            del buffer[:start]
        self._scanned = len(buffer)
        return events

    def flush(self) -> list[SSEEvent]:
        """The last event, if the body ended without the blank line that closes it.

        The specification discards such an event; upstreams that omit the final blank
        line do exist, and losing their last event would lose the end of the answer.
        """
        events: list[SSEEvent] = []
        _append_event(events, bytes(self._buffer))
        self._buffer.clear()
        self._held_cr = False
        self._scanned = 0
        return events


def _append_event(events: list[SSEEvent], block: bytes) -> None:
    """Parse one event's lines; add it to `events` if it carries data."""
    name = "message"
    data: list[str] = []
    for raw in block.decode("utf-8", "replace").split("\n"):
        field, colon, value = raw.partition(":")
        if not field:  # a blank line, or a comment
            continue
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            data.append(value)
        elif field == "event":
            name = value or "message"
    if data:
        events.append((name, "\n".join(data)))


def encode(payload: JSON, event: str | None = None) -> bytes:
    """One server-sent event: Anthropic names its events, OpenAI does not."""
    if event is None:
        return f"data: {dumps(payload)}\n\n".encode()
    return f"event: {event}\ndata: {dumps(payload)}\n\n".encode()


class StreamTranslator(ABC):
    """Feed one API's event stream in, get the other API's event stream out.

    Subclasses translate a decoded event (`_on_event`), write output with `_emit`, and
    say how to end a stream the upstream cut short (`_on_end`). Once `_done` is set the
    translator has written its final event and ignores further input.
    """

    __slots__ = ("_done", "_out", "_splitter")

    def __init__(self) -> None:
        self._splitter = SSESplitter()
        self._out: list[bytes] = []
        self._done = False

    def feed(self, data: bytes) -> bytes:
        """Translated bytes for the events `data` completes (often none)."""
        if self._done:
            return b""  # the stream is over for the client; buffer nothing more
        return self._translate(self._splitter.feed(data))

    def finish(self) -> bytes:
        """The rest of the stream, once the upstream body has ended: the last event if
        it lacked its blank line, then whatever closing events the upstream did not send."""
        out = self._translate(self._splitter.flush())
        if self._done:
            return out
        self._on_end()
        self._done = True
        return out + self._take()

    def _translate(self, events: list[SSEEvent]) -> bytes:
        for name, data in events:
            if self._done:
                break
            if data == DONE:
                self._on_done()
                continue
            try:
                payload: Any = json.loads(data)
            except (ValueError, RecursionError):
                continue  # not an event of the API we translate; nothing to say about it
            if isinstance(payload, dict):
                self._on_event(name, payload)
        return self._take()

    def _take(self) -> bytes:
        if not self._out:
            return b""
        out = b"".join(self._out)
        self._out.clear()
        return out

    def _emit(self, payload: JSON, event: str | None = None) -> None:
        self._out.append(encode(payload, event))

    def _on_done(self) -> None:
        """`data: [DONE]`, the upstream's word that the stream is over: as if it ended."""
        self._on_end()
        self._done = True

    @abstractmethod
    def _on_event(self, name: str, payload: JSON) -> None:
        """Translate one upstream event."""

    @abstractmethod
    def _on_end(self) -> None:
        """The upstream ended without its final events: close the stream for the client."""
