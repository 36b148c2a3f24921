"""An Anthropic Messages client in front of an OpenAI chat-completions provider.

The request goes up as `/v1/chat/completions`; the answer (a `chat.completion`, a stream
of `chat.completion.chunk` events, or an error) comes back as the Anthropic Messages API
would have sent it. Only what both APIs can express is translated; a field with no
OpenAI counterpart is dropped rather than approximated.
"""

from __future__ import annotations

from typing import Any

from meshroute.ext_proc.translators import (
    JSON,
    anthropic_error_type,
    as_count,
    as_dict,
    as_list,
    copy_fields,
    data_url,
    dumps,
    error_in,
    function_call,
    parse_arguments,
    read_error,
    text_of,
    tool_use_block,
)
from meshroute.ext_proc.translators.sse import StreamTranslator

STOP_REASONS: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
"""OpenAI `finish_reason` -> Anthropic `stop_reason`; anything else ends the turn."""

_TOOL_CHOICES: dict[str, str] = {"auto": "auto", "any": "required", "none": "none"}
"""Anthropic `tool_choice.type` -> OpenAI `tool_choice`; `tool` names a function."""

_PARAMETERS = (
    ("max_tokens", "max_completion_tokens"),
    ("temperature", "temperature"),
    ("top_p", "top_p"),
    ("stop_sequences", "stop"),
)
"""Parameters with the same meaning on both sides. OpenAI's `max_tokens` is deprecated
and refused by its reasoning models; `max_completion_tokens` is the current name."""


def request_to_openai(body: JSON, model_id: str) -> JSON:
    """An Anthropic `/v1/messages` body as an OpenAI `/v1/chat/completions` body for
    the provider's `model_id`."""
    messages: list[JSON] = []
    system = text_of(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for message in as_list(body.get("messages")):
        if isinstance(message, dict):
            _add_message(messages, message)
    out: JSON = {"model": model_id, "messages": messages}
    copy_fields(body, out, _PARAMETERS)
    _add_tools(out, body)
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        out["user"] = metadata["user_id"]
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def _add_message(messages: list[JSON], message: JSON) -> None:
    role = message.get("role")
    content = message.get("content")
    if role == "assistant":
        messages.append(_assistant_message(content))
    elif role == "user":
        _add_user_turn(messages, content)


def _assistant_message(content: Any) -> JSON:
    """Text blocks become the content, tool_use blocks the tool calls; thinking has no
    chat-completions form and is dropped."""
    if not isinstance(content, list):
        return {"role": "assistant", "content": content if isinstance(content, str) else None}
    calls = [
        function_call(block.get("id"), block.get("name"), dumps(block.get("input") or {}))
        for block in content
        if isinstance(block, dict) and block.get("type") == "tool_use"
    ]
    message: JSON = {"role": "assistant", "content": text_of(content, "") or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _add_user_turn(messages: list[JSON], content: Any) -> None:
    """tool_result blocks become `tool` messages, which OpenAI needs right after the
    assistant's tool calls; the rest of the turn follows as one user message."""
    if isinstance(content, str):
        messages.append({"role": "user", "content": content})
        return
    parts: list[JSON] = []
    for block in content if isinstance(content, list) else ():
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "tool_result":
            messages.append(_tool_message(block, parts))
        elif kind == "text":
            parts.append({"type": "text", "text": block.get("text", "")})
        elif kind == "image":
            _add_image(parts, block)
    if len(parts) == 1 and parts[0]["type"] == "text":
        messages.append({"role": "user", "content": parts[0]["text"]})
    elif parts:
        messages.append({"role": "user", "content": parts})


def _tool_message(block: JSON, parts: list[JSON]) -> JSON:
    """A tool result; its images (a tool message can only hold text) go to `parts`, the
    user message that follows."""
    content = block.get("content")
    if isinstance(content, list):
        for item in content:
            if isinstance(item, dict) and item.get("type") == "image":
                _add_image(parts, item)
    return {"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text_of(content)}


def _add_image(parts: list[JSON], block: JSON) -> None:
    source = block.get("source")
    if not isinstance(source, dict):
        return
    if source.get("type") == "base64":
        url = data_url(source.get("media_type", ""), source.get("data", ""))
    elif source.get("type") == "url":
        url = source.get("url", "")
    else:
        return  # a Files API id means nothing to an OpenAI provider
    parts.append({"type": "image_url", "image_url": {"url": url}})


def _add_tools(out: JSON, body: JSON) -> None:
    """Client tools become functions. Server tools (web search, code execution: a
    versioned `type`) run only on Anthropic's side, so they are not offered."""
    tools = [
        {
            "type": "function",
            "function": _without_none(
                name=tool.get("name"),
                description=tool.get("description"),
                parameters=tool.get("input_schema"),
            ),
        }
        for tool in as_list(body.get("tools"))
        if isinstance(tool, dict) and tool.get("type", "custom") == "custom"
    ]
    if not tools:
        return  # and without tools, a tool choice means nothing (OpenAI refuses one)
    out["tools"] = tools
    choice = body.get("tool_choice")
    if not isinstance(choice, dict):
        return
    kind = choice.get("type")
    if kind == "tool":
        out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    elif kind in _TOOL_CHOICES:
        out["tool_choice"] = _TOOL_CHOICES[kind]
    if choice.get("disable_parallel_tool_use"):
        out["parallel_tool_calls"] = False


def _without_none(**fields: Any) -> JSON:
    return {key: value for key, value in fields.items() if value is not None}


def response_from_openai(body: JSON, model: str) -> JSON:
    """A `chat.completion` as an Anthropic `message`; `model` is the name the client
    asked for, not the provider's."""
    choice = _first_choice(body)
    message = as_dict(choice.get("message"))
    content: list[JSON] = []
    refused = bool(message.get("refusal")) and not message.get("content")
    text = message.get("refusal") if refused else message.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    for call in as_list(message.get("tool_calls")):
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            tool_input = parse_arguments(function.get("arguments"))
            content.append(tool_use_block(call.get("id"), function.get("name"), tool_input))
    finish = "content_filter" if refused else choice.get("finish_reason")
    called_tools = bool(content) and content[-1]["type"] == "tool_use"
    stop_reason, stop_sequence = stop_from_openai(
        finish, choice.get("stop_reason"), called_tools=called_tools
    )
    return {
        "id": body.get("id") or "",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage_from_openai(body.get("usage")),
    }


def _first_choice(body: JSON) -> JSON:
    """The first choice: we never ask for more than one (`n` is not translated)."""
    choices = body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return {}


def stop_from_openai(
    finish: Any, matched: Any = None, *, called_tools: bool = False
) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) for an OpenAI finish reason.

    OpenAI does not say which stop sequence matched; vLLM does, in the choice's
    `stop_reason`, and then we can too. Some providers finish with "stop" after
    calling tools: the client must still see `tool_use` to run them.
    """
    if finish == "stop" and isinstance(matched, str) and matched:
        return "stop_sequence", matched
    reason = STOP_REASONS.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"
    if reason == "end_turn" and called_tools:
        return "tool_use", None
    return reason, None


def usage_from_openai(usage: Any) -> JSON:
    """OpenAI usage as Anthropic's. Anthropic counts cache reads apart from
    `input_tokens`; OpenAI includes them in `prompt_tokens`."""
    if not isinstance(usage, dict):
        return {"input_tokens": 0, "output_tokens": 0}
    prompt = as_count(usage.get("prompt_tokens"))
    cached = as_count(as_dict(usage.get("prompt_tokens_details")).get("cached_tokens"))
    out: JSON = {
        "input_tokens": max(prompt - cached, 0),
        "output_tokens": as_count(usage.get("completion_tokens")),
    }
    if cached:
        out["cache_read_input_tokens"] = cached
    return out


def error_from_openai(status: int, body: bytes) -> JSON:
    """An upstream error (OpenAI's shape, or anything else) in Anthropic's shape. The
    type follows the status, as Anthropic's own does; the message is the upstream's."""
    _, message = read_error(body, status)
    return {"type": "error", "error": {"type": anthropic_error_type(status), "message": message}}


class StreamToAnthropic(StreamTranslator):
    """OpenAI `chat.completion.chunk` events in, Anthropic Messages stream events out.

    OpenAI streams deltas of one message; Anthropic streams numbered content blocks,
    each opened, filled and closed in turn. Text becomes a text block, each tool call
    (told apart by its `index`) a tool_use block whose arguments stream as
    `input_json_delta`. OpenAI reports usage in a last chunk after the finish reason,
    so `message_delta` waits for `[DONE]` (or the end of the body) to carry it.
    """

    __slots__ = (
        "_blocks",
        "_finish",
        "_matched",
        "_model",
        "_open",
        "_refused",
        "_tool_blocks",
        "_usage",
    )

    def __init__(self, model: str) -> None:
        """`model` is the name the client asked for, reported in `message_start`."""
        super().__init__()
        self._model = model
        self._blocks = -1
        """How many content blocks have been started; -1 before `message_start`."""
        self._open: int | str | None = None
        """The open block: "text", an OpenAI tool-call index, or None."""
        self._tool_blocks: dict[int, int] = {}
        """OpenAI tool-call index -> our content block index."""
        self._finish: str | None = None
        self._matched: str | None = None
        """The stop sequence that ended the message, when the upstream says (vLLM)."""
        self._refused = False
        self._usage: JSON = {"input_tokens": 0, "output_tokens": 0}

    def _on_event(self, name: str, payload: JSON) -> None:
        if payload.get("error") is not None:
            self._fail(payload)
            return
        if isinstance(payload.get("usage"), dict):
            self._usage = usage_from_openai(payload["usage"])
        choice = _first_choice(payload)
        if not choice:
            return  # usage only, or Azure's prompt_filter_results (with an empty id)
        if self._blocks < 0:
            self._start(payload.get("id"))
        self._on_choice(choice)

    def _start(self, message_id: Any) -> None:
        self._blocks = 0
        message: JSON = {
            "id": message_id or "",
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        self._emit({"type": "message_start", "message": message}, "message_start")

    def _on_choice(self, choice: JSON) -> None:
        delta = as_dict(choice.get("delta"))
        text = delta.get("content")
        if not text and delta.get("refusal"):
            text = delta["refusal"]
            self._refused = True
        if isinstance(text, str) and text:
            self._text(text)
        for call in as_list(delta.get("tool_calls")):
            if isinstance(call, dict):
                self._tool_call(call)
        finish = choice.get("finish_reason")
        if isinstance(finish, str) and finish:
            self._close_block()
            self._finish = "content_filter" if self._refused else finish
            matched = choice.get("stop_reason")
            if isinstance(matched, str):
                self._matched = matched

    def _text(self, text: str) -> None:
        if self._open != "text":
            self._start_block("text", {"type": "text", "text": ""})
        self._delta(self._blocks - 1, {"type": "text_delta", "text": text})

    def _tool_call(self, call: JSON) -> None:
        position = call.get("index")
        if not isinstance(position, int):
            position = len(self._tool_blocks)
        function = as_dict(call.get("function"))
        if position not in self._tool_blocks:
            block = tool_use_block(call.get("id"), function.get("name"), {})
            self._start_block(position, block)
            self._tool_blocks[position] = self._blocks - 1
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            partial = {"type": "input_json_delta", "partial_json": arguments}
            self._delta(self._tool_blocks[position], partial)

    def _start_block(self, key: int | str, block: JSON) -> None:
        self._close_block()
        start = {"type": "content_block_start", "index": self._blocks, "content_block": block}
        self._emit(start, "content_block_start")
        self._open = key
        self._blocks += 1

    def _delta(self, index: int, delta: JSON) -> None:
        self._emit(
            {"type": "content_block_delta", "index": index, "delta": delta}, "content_block_delta"
        )

    def _close_block(self) -> None:
        if self._open is not None:
            self._emit(
                {"type": "content_block_stop", "index": self._blocks - 1}, "content_block_stop"
            )
            self._open = None

    def _on_done(self) -> None:
        """`[DONE]`: the upstream says the message is complete, finish reason or not."""
        if self._blocks < 0:
            self._fail({})
        else:
            self._close_message()
        self._done = True

    def _on_end(self) -> None:
        """The body ended without `[DONE]`: complete if a finish reason came, else cut."""
        if self._finish is None:
            self._fail({})
        else:
            self._close_message()

    def _close_message(self) -> None:
        self._close_block()
        reason, matched = stop_from_openai(
            self._finish, self._matched, called_tools=bool(self._tool_blocks)
        )
        delta = {"stop_reason": reason, "stop_sequence": matched}
        self._emit({"type": "message_delta", "delta": delta, "usage": self._usage}, "message_delta")
        self._emit({"type": "message_stop"}, "message_stop")

    def _fail(self, payload: JSON) -> None:
        """An `error` event: the upstream reported one mid-stream, or its stream ended
        before saying the message was complete. Closing it as if complete would hand the
        client a silently truncated answer; Anthropic SDKs raise on this event instead."""
        self._close_block()
        if payload:
            error = payload.get("error")
            code = error.get("code") if isinstance(error, dict) else None
            status = code if isinstance(code, int) else 500
            message = error_in(payload, status)[1]
        else:
            status, message = 500, "the upstream stream ended before the message was complete"
        body = {"type": anthropic_error_type(status), "message": message}
        self._emit({"type": "error", "error": body}, "error")
        self._done = True
