"""Translation between the OpenAI Chat Completions API and the Anthropic Messages API.

A gateway route may put a client of one API in front of a provider of the other: an
OpenAI SDK talking to an Anthropic-API model, or an Anthropic SDK talking to an
OpenAI-API model. The sidecar then rewrites the request body on the way up and the
response body (whole, or as a stream of server-sent events) on the way down. The modules
here are that rewriting and nothing else: pure functions and small state machines over
dicts and bytes, with no I/O, so they can run on the request path and be tested exhaustively.

- `anthropic_client`: the client speaks Anthropic Messages, the provider OpenAI chat.
- `openai_client`: the client speaks OpenAI chat, the provider Anthropic Messages.
- `sse`: the server-sent-events splitter and writer both stream translators use.

This module holds what both directions need, so each rule lives once: the JSON encoding
we write, each API's tool-call shape, reading tool arguments, reading text out of content
that may be a string or a list of text parts, data: URLs, Anthropic's error types by
HTTP status, and reading an upstream error body of any shape.
"""

from __future__ import annotations

import json
from typing import Any

JSON = dict[str, Any]
"""A decoded JSON object: request, response and event bodies are all this shape."""

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_ERROR_MESSAGE_LIMIT = 2000
"""How much of a non-JSON error body we quote back: enough to diagnose, bounded."""


ANTHROPIC_ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
"""HTTP status <-> Anthropic error type (docs.claude.com/en/api/errors; 402, 503 and
504 as the Anthropic SDK knows them)."""


def anthropic_error_type(status: int) -> str:
    """The Anthropic error type for an HTTP status: other 4xx are invalid requests, as
    Anthropic documents; anything else is an API error."""
    if status in ANTHROPIC_ERROR_TYPES:
        return ANTHROPIC_ERROR_TYPES[status]
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def dumps(value: Any) -> str:
    """Compact JSON, as the APIs themselves send it (and without escaping non-ASCII)."""
    return _ENCODER.encode(value)


def as_dict(value: Any) -> JSON:
    """`value` if it is an object, else an empty one. Bodies come from clients and
    providers: a field of the wrong type is treated as absent, never a crash."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """`value` if it is an array, else an empty one (see `as_dict`)."""
    return value if isinstance(value, list) else []


def as_count(value: Any) -> int:
    """A token count: `value` if it is a whole number, else 0 (see `as_dict`)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def copy_fields(source: JSON, target: JSON, names: tuple[tuple[str, str], ...]) -> None:
    """Copy each (source name, target name) field that is set: the parameters both APIs
    share, sometimes under another name."""
    for ours, theirs in names:
        value = source.get(ours)
        if value is not None:
            target[theirs] = value


def tool_use_block(call_id: Any, name: Any, tool_input: JSON) -> JSON:
    """An Anthropic tool_use content block."""
    return {"type": "tool_use", "id": call_id or "", "name": name or "", "input": tool_input}


def function_call(call_id: Any, name: Any, arguments: str) -> JSON:
    """An OpenAI tool call: a function call whose arguments are a JSON string."""
    function = {"name": name or "", "arguments": arguments}
    return {"id": call_id or "", "type": "function", "function": function}


def parse_arguments(text: Any) -> JSON:
    """Tool-call arguments (a JSON string on the OpenAI side) as a JSON object.

    Anthropic's tool `input` must be an object. Models sometimes emit broken or
    non-object JSON; rather than fail the whole response we keep the text under
    `_raw`, so the caller still sees what the model produced. Arguments that are
    not a string at all are dropped.
    """
    if not text or not isinstance(text, str):
        return {}
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return {"_raw": text}
    return value if isinstance(value, dict) else {"_raw": text}


def text_of(content: Any, separator: str = "\n") -> str:
    """The text in `content`: a string, or the text parts/blocks of a list.

    Both APIs write a text part as `{"type": "text", "text": ...}`, so one reader serves
    system prompts, tool results and message content in either direction.
    """
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return separator.join(
        part["text"]
        for part in content
        if isinstance(part, dict)
        and part.get("type") == "text"
        and isinstance(part.get("text"), str)
    )


def data_url(media_type: str, data: str) -> str:
    """A base64 data: URL, how OpenAI carries inline images."""
    return f"data:{media_type};base64,{data}"


def split_data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a base64 data: URL; None for any other URL."""
    if not url.startswith("data:"):
        return None
    header, comma, data = url[5:].partition(",")
    if not comma or not header.endswith(";base64"):
        return None
    return header[: -len(";base64")].partition(";")[0], data


def read_error(body: bytes, status: int) -> tuple[str | None, str]:
    """(error type, message) from an upstream error body, whatever its shape.

    Proxies and compatible servers do not always send their API's error shape: HTML,
    plain text and empty bodies all happen. The message is never empty.
    """
    try:
        payload = json.loads(body) if body else None
    except (ValueError, RecursionError):
        payload = None
    if isinstance(payload, dict):
        return error_in(payload, status)
    text = body.decode("utf-8", "replace").strip()[:_ERROR_MESSAGE_LIMIT] if body else ""
    return None, _message(text, status)


def error_in(payload: JSON, status: int) -> tuple[str | None, str]:
    """(error type, message) from a decoded error object.

    Both APIs nest `{"type", "message"}` under `error`; compatible servers also send
    `{"error": "text"}`, `{"message": ...}` or `{"detail": ...}`. The type is None when
    the payload does not say.
    """
    error = payload.get("error")
    if isinstance(error, dict):
        kind = error.get("type")
        return (kind if isinstance(kind, str) else None), _message(error.get("message"), status)
    for key in ("message", "detail"):
        if isinstance(payload.get(key), str):
            return None, _message(payload[key], status)
    return None, _message(error, status)


def _message(candidate: Any, status: int) -> str:
    if isinstance(candidate, str) and candidate:
        return candidate
    return f"the upstream provider answered HTTP {status}"
