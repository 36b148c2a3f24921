"""Reading an OpenAI chat-completions body for routing, and refusing bad ones clearly."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_NESTING = 128
"""How deep a body's arrays and objects may nest. Real chat requests stay far below
(tool schemas are the deepest part); without a fixed limit, how deep a body may go
would depend on the Python stack of whoever parses it next, the sidecar or the agent."""


@dataclass(frozen=True)
class Turn:
    """One message of the conversation, reduced to what routing reads."""

    role: str
    text: str


@dataclass(frozen=True)
class ChatRequest:
    payload: dict[str, Any]
    """The whole request body, for steps that forward it (multi-agent sequences)."""
    turns: list[Turn]


class BadRequest(Exception):
    """The body cannot be routed; the client gets a 400 with `code` and `message`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_chat_request(body: bytes) -> ChatRequest:
    """The conversation in `body`, or BadRequest saying exactly what is wrong."""
    if not body.strip():
        raise BadRequest("empty_body", "the request body is empty; send a JSON chat request")
    try:
        payload = json.loads(body)
    except UnicodeDecodeError:
        raise BadRequest("invalid_json", "the request body is not UTF-8 JSON") from None
    except json.JSONDecodeError as error:
        where = f"line {error.lineno} column {error.colno}"
        raise BadRequest(
            "invalid_json", f"the request body is not valid JSON: {error.msg} at {where}"
        ) from None
    except RecursionError:
        raise BadRequest(
            "invalid_json", f"the request body nests deeper than {MAX_NESTING} levels"
        ) from None
    if not isinstance(payload, dict):
        raise BadRequest("invalid_request", "the request body must be a JSON object")
    if _nests_deeper_than(body, payload, MAX_NESTING):
        raise BadRequest("invalid_json", f"the request body nests deeper than {MAX_NESTING} levels")
    messages = payload.get("messages")
    if messages is None:
        raise BadRequest("missing_messages", "the request has no 'messages'")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("invalid_messages", "'messages' must be a non-empty array")
    turns: list[Turn] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRequest(
                "invalid_messages", f"messages[{index}] must be an object with a string 'role'"
            )
        if not _array_or_absent(message.get("tool_calls")):
            raise BadRequest("invalid_messages", f"messages[{index}].tool_calls must be an array")
        turns.append(Turn(role=message["role"], text=message_text(message.get("content"))))
    if not _array_or_absent(payload.get("tools")):
        raise BadRequest("invalid_request", "'tools' must be an array")
    return ChatRequest(payload=payload, turns=turns)


def _array_or_absent(value: Any) -> bool:
    """Fields the gateway reads as lists (to count tools, to translate tool calls)."""
    return value is None or isinstance(value, list)


def _nests_deeper_than(body: bytes, payload: dict[str, Any], limit: int) -> bool:
    """Whether arrays and objects nest deeper than `limit`. A body with no more
    brackets than that cannot (the usual case: no walk at all); otherwise the walk
    goes level by level, which costs about as much as parsing did."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    level: list[Any] = [payload]
    for _ in range(limit):  # after n rounds, `level` holds what nests n + 1 deep
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, dict | list)
        ]
        if not level:
            return False
    return True


def message_text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of an array."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""
