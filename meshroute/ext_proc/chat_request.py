"""Reading an OpenAI chat-completions body for routing, and refusing bad ones clearly."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


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
        raise BadRequest("invalid_json", "the request body nests too deeply") from None
    if not isinstance(payload, dict):
        raise BadRequest("invalid_request", "the request body must be a JSON object")
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
        turns.append(Turn(role=message["role"], text=message_text(message.get("content"))))
    return ChatRequest(payload=payload, turns=turns)


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
