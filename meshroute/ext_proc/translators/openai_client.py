"""An OpenAI chat-completions client in front of an Anthropic Messages provider.

The mirror image of `anthropic_client`: the request goes up as `/v1/messages`; the
answer (a `message`, a stream of Messages events, or an error) comes back as the OpenAI
Chat Completions API would have sent it. Only what both APIs can express is translated;
a field with no Anthropic counterpart is dropped rather than approximated.
"""

from __future__ import annotations

import time
from typing import Any

from meshroute.ext_proc.translators import (
    ANTHROPIC_ERROR_TYPES,
    JSON,
    as_count,
    as_dict,
    as_list,
    copy_fields,
    dumps,
    error_in,
    function_call,
    parse_arguments,
    read_error,
    split_data_url,
    text_of,
    tool_use_block,
)
from meshroute.ext_proc.translators.sse import DONE_EVENT, StreamTranslator

DEFAULT_MAX_TOKENS = 4096
"""Anthropic requires `max_tokens`; OpenAI lets the client leave it out."""

FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
"""Anthropic `stop_reason` -> OpenAI `finish_reason`; anything else is "stop"."""

ERROR_TYPES: dict[int, str] = {
    401: "authentication_error",
    403: "permission_error",
    429: "rate_limit_error",
}
"""HTTP status -> OpenAI error `type`. Other 4xx are `invalid_request_error`, 5xx (and
Anthropic's 529) `server_error`. The `code` carries Anthropic's own error type."""

_STATUS_OF: dict[str, int] = {kind: status for status, kind in ANTHROPIC_ERROR_TYPES.items()}
"""Anthropic error type -> HTTP status, for errors that arrive inside a stream."""

_TOOL_CHOICES: dict[str, str] = {"auto": "auto", "required": "any", "none": "none"}
"""OpenAI `tool_choice` string -> Anthropic `tool_choice.type`."""

_PARAMETERS = (("temperature", "temperature"), ("top_p", "top_p"))
"""Parameters with the same name and meaning on both sides."""


def request_to_anthropic(body: JSON, model_id: str) -> JSON:
    """An OpenAI `/v1/chat/completions` body as an Anthropic `/v1/messages` body for the
    provider's `model_id`."""
    system: list[JSON] = []
    messages: list[JSON] = []
    for message in as_list(body.get("messages")):
        if isinstance(message, dict):
            _add_message(system, messages, message)
    out: JSON = {"model": model_id, "max_tokens": _max_tokens(body), "messages": messages}
    if system:
        out["system"] = system[0]["text"] if len(system) == 1 else system
    copy_fields(body, out, _PARAMETERS)
    stop = body.get("stop")
    if stop and isinstance(stop, str | list):
        out["stop_sequences"] = [stop] if isinstance(stop, str) else stop
    _add_tools(out, body)
    if isinstance(body.get("user"), str):
        out["metadata"] = {"user_id": body["user"]}
    if body.get("stream"):
        out["stream"] = True
    return out


def _max_tokens(body: JSON) -> Any:
    for name in ("max_completion_tokens", "max_tokens"):
        if body.get(name) is not None:
            return body[name]
    return DEFAULT_MAX_TOKENS


def _add_message(system: list[JSON], messages: list[JSON], message: JSON) -> None:
    """System and developer messages, wherever they are, join the top-level `system`
    (Anthropic has no other place for instructions)."""
    role = message.get("role")
    content = message.get("content")
    if role in ("system", "developer"):
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if isinstance(parts, list):
            system.extend(block for block in _part_blocks(parts) if block["type"] == "text")
    elif role == "user":
        _append(messages, "user", _blocks(content))
    elif role == "assistant":
        _append(messages, "assistant", _assistant_blocks(message))
    elif role == "tool":
        result: JSON = {"type": "tool_result", "tool_use_id": message.get("tool_call_id")}
        blocks = _blocks(content)
        if blocks:
            result["content"] = blocks
        _append(messages, "user", [result])


def _append(messages: list[JSON], role: str, content: str | list[JSON]) -> None:
    """Add a turn, merging it into the previous one of the same role. This is how the
    tool results of one assistant turn become one user message, as Anthropic wants, and
    how a user message after tool results joins them."""
    if not content:
        return  # Anthropic refuses empty content
    if messages and messages[-1]["role"] == role:
        previous = messages[-1]
        if isinstance(previous["content"], str):
            previous["content"] = [{"type": "text", "text": previous["content"]}]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        previous["content"].extend(content)
    else:
        messages.append({"role": role, "content": content})


def _blocks(content: Any) -> str | list[JSON]:
    """User (or tool) content: a string stays one, a list of parts becomes blocks."""
    if isinstance(content, list):
        return _part_blocks(content)
    return content if isinstance(content, str) else ""


def _part_blocks(parts: list[Any]) -> list[JSON]:
    """Text and image parts as blocks. Empty text is dropped (Anthropic refuses empty
    text blocks), as are audio and file parts, which Anthropic cannot take as such."""
    blocks: list[JSON] = []
    for part in parts:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text" and part.get("text"):
            blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image(part.get("image_url")))
    return blocks


def _image(image: Any) -> JSON:
    """An image_url part as an image block: a base64 data: URL inline, anything else as
    a URL for the provider to fetch."""
    url = image.get("url", "") if isinstance(image, dict) else str(image or "")
    inline = split_data_url(url)
    if inline is None:
        return {"type": "image", "source": {"type": "url", "url": url}}
    media_type, data = inline
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _assistant_blocks(message: JSON) -> str | list[JSON]:
    text = text_of(message.get("content"), "")
    calls = as_list(message.get("tool_calls"))
    if not calls:
        return text
    blocks: list[JSON] = [{"type": "text", "text": text}] if text else []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            arguments = function.get("arguments")
            tool_input = parse_arguments(arguments if isinstance(arguments, str) else "")
            blocks.append(tool_use_block(call.get("id"), function.get("name"), tool_input))
    return blocks


def _add_tools(out: JSON, body: JSON) -> None:
    """Function tools become client tools (Anthropic requires an input schema; a
    function without parameters takes an empty object). Custom (free-text) tools have
    no Anthropic form and are not offered."""
    tools: list[JSON] = []
    for tool in as_list(body.get("tools")):
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and tool.get("type") == "function":
            schema = function.get("parameters") or {"type": "object", "properties": {}}
            entry: JSON = {"name": function.get("name"), "input_schema": schema}
            if function.get("description"):
                entry["description"] = function["description"]
            tools.append(entry)
    if not tools:
        return  # and without tools, a tool choice means nothing
    out["tools"] = tools
    choice = _tool_choice(body.get("tool_choice"))
    if body.get("parallel_tool_calls") is False:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    if choice:
        out["tool_choice"] = choice


def _tool_choice(choice: Any) -> JSON | None:
    if isinstance(choice, str):
        kind = _TOOL_CHOICES.get(choice)
        return {"type": kind} if kind else None
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        return {"type": "tool", "name": choice["function"].get("name")}
    return None


def response_from_anthropic(body: JSON, model: str, *, created: int | None = None) -> JSON:
    """An Anthropic `message` as a `chat.completion`; `model` is the name the client
    asked for. Anthropic has no creation time: `created` defaults to now."""
    texts: list[str] = []
    calls: list[JSON] = []
    for block in as_list(body.get("content")):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            calls.append(_tool_call(block, dumps(block.get("input") or {})))
    text = "".join(texts)
    message: JSON = {"role": "assistant", "content": text if text or not calls else None}
    if calls:
        message["tool_calls"] = calls
    choice = {
        "index": 0,
        "message": message,
        "finish_reason": finish_reason(body.get("stop_reason")),
        "logprobs": None,
    }
    return {
        "id": body.get("id") or "",
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": [choice],
        "usage": usage_from_anthropic(body.get("usage")),
    }


def _tool_call(block: JSON, arguments: str) -> JSON:
    """The OpenAI tool call (or, in a stream, its first delta) for a tool_use block."""
    return function_call(block.get("id"), block.get("name"), arguments)


def finish_reason(stop_reason: Any) -> str:
    """The OpenAI finish reason for an Anthropic stop reason."""
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def usage_from_anthropic(usage: Any) -> JSON:
    """Anthropic usage as OpenAI's: prompt tokens include cache reads and writes, which
    Anthropic counts apart from `input_tokens`; cache reads are also `cached_tokens`."""
    usage = as_dict(usage)
    cached = as_count(usage.get("cache_read_input_tokens"))
    prompt = (
        as_count(usage.get("input_tokens"))
        + cached
        + as_count(usage.get("cache_creation_input_tokens"))
    )
    completion = as_count(usage.get("output_tokens"))
    out: JSON = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached:
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    return out


def error_from_anthropic(status: int, body: bytes) -> JSON:
    """An upstream error (Anthropic's shape, or anything else) in OpenAI's shape."""
    return openai_error(status, *read_error(body, status))


def openai_error(status: int, kind: str | None, message: str) -> JSON:
    """OpenAI's error body: `type` from the status, `code` the upstream's error type."""
    if status in ERROR_TYPES:
        category = ERROR_TYPES[status]
    else:
        category = "invalid_request_error" if 400 <= status < 500 else "server_error"
    return {"error": {"message": message, "type": category, "param": None, "code": kind}}


def _block_index(payload: JSON) -> int:
    """A stream event's content block index (-1 if it has none that is a number)."""
    index = payload.get("index")
    return index if isinstance(index, int) else -1


class StreamToOpenAI(StreamTranslator):
    """Anthropic Messages stream events in, OpenAI `chat.completion.chunk` events out.

    Text deltas become content deltas; each tool_use block becomes a tool call with the
    next `index`, its `input_json_delta`s the call's argument fragments. Thinking and
    server-tool blocks have no chat-completions form and are skipped. `message_stop`
    ends the stream: the finish-reason chunk, the usage chunk if the client asked for
    one, then `[DONE]`.
    """

    __slots__ = ("_base", "_finish", "_include_usage", "_tools", "_usage")

    def __init__(
        self, model: str, include_usage: bool = False, *, created: int | None = None
    ) -> None:
        """`model` is the name the client asked for; `include_usage` is the client's
        `stream_options.include_usage`; `created` defaults to now."""
        super().__init__()
        self._include_usage = include_usage
        self._base: JSON = {
            "id": "",
            "object": "chat.completion.chunk",
            "created": int(time.time()) if created is None else created,
            "model": model,
        }
        """The fields every chunk repeats; the id arrives with `message_start`."""
        self._tools: dict[int, int] = {}
        """Anthropic content block index -> OpenAI tool-call index."""
        self._usage: JSON = {}
        self._finish: str | None = None

    def _on_event(self, name: str, payload: JSON) -> None:
        kind = payload.get("type", name)
        if kind == "content_block_delta":
            self._on_delta(payload)
        elif kind == "content_block_start":
            self._on_block(payload)
        elif kind == "message_start":
            self._on_start(as_dict(payload.get("message")))
        elif kind == "message_delta":
            delta = as_dict(payload.get("delta"))
            self._finish = finish_reason(delta.get("stop_reason"))
            self._record_usage(payload.get("usage"))
        elif kind == "message_stop":
            self._close()
        elif kind == "error":
            self._fail(payload)

    def _on_start(self, message: JSON) -> None:
        self._base["id"] = message.get("id") or ""
        self._record_usage(message.get("usage"))
        self._chunk({"role": "assistant", "content": ""})

    def _on_block(self, payload: JSON) -> None:
        block = as_dict(payload.get("content_block"))
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            self._chunk({"content": block["text"]})
        elif kind == "tool_use":
            position = len(self._tools)
            self._tools[_block_index(payload)] = position
            call = _tool_call(block, dumps(block["input"]) if block.get("input") else "")
            call["index"] = position
            self._chunk({"tool_calls": [call]})

    def _on_delta(self, payload: JSON) -> None:
        delta = as_dict(payload.get("delta"))
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            self._chunk({"content": delta["text"]})
        elif kind == "input_json_delta" and delta.get("partial_json"):
            position = self._tools.get(_block_index(payload))
            if position is not None:
                fragment = {"index": position, "function": {"arguments": delta["partial_json"]}}
                self._chunk({"tool_calls": [fragment]})

    def _record_usage(self, usage: Any) -> None:
        """Anthropic usage counts are cumulative: a later value replaces an earlier one."""
        if isinstance(usage, dict):
            self._usage.update((key, value) for key, value in usage.items() if value is not None)

    def _chunk(self, delta: JSON, finish: str | None = None) -> None:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        self._emit({**self._base, "choices": [choice]})

    def _close(self) -> None:
        self._chunk({}, self._finish or "stop")
        if self._include_usage:
            self._emit({**self._base, "choices": [], "usage": usage_from_anthropic(self._usage)})
        self._out.append(DONE_EVENT)
        self._done = True

    def _on_end(self) -> None:
        """The body ended without `message_stop`: complete if `message_delta` said how
        the message ends, else cut short, which the client must hear as an error."""
        if self._finish is None:
            self._fail({})
        else:
            self._close()

    def _fail(self, payload: JSON) -> None:
        """An error chunk, which OpenAI SDKs raise as an APIError: the upstream's error
        event, or the news that its stream ended before the message was complete."""
        if payload:
            kind, message = error_in(payload, 500)
        else:
            kind, message = "api_error", "the upstream stream ended before the message was complete"
        self._emit(openai_error(_STATUS_OF.get(kind or "", 500), kind, message))
        self._done = True
