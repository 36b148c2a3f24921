"""Demo model backends for the quickstart and tests: the OpenAI and Anthropic APIs, offline.

One server, one port, two real wire formats, so unmodified `openai` and `anthropic`
SDK clients (pointed here, or at the gateway in front of this) just work:

- `POST /openai/v1/chat/completions` and `GET /openai/v1/models` (OpenAI Chat Completions);
- `POST /anthropic/v1/messages` (Anthropic Messages).

Both play the same deterministic model (`reply_to`): it says which API and which model
answered and repeats the last user text, so a person or a test can see where a request
went; it calls the first tool when offered tools, and repeats a tool's result when
given one, so tool round trips can be tested end to end. Token counts are word counts.

`required_keys` makes a provider demand a credential, so a test can prove the gateway
injected the right one; a missing or wrong key is refused the way the real API does.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from meshroute.ext_proc.chat_request import message_text
from meshroute.lifecycle import wait_for_stop_signal

log = logging.getLogger("meshroute.demo")

OPENAI = "openai"
ANTHROPIC = "anthropic"
PROVIDERS = (OPENAI, ANTHROPIC)
DEFAULT_OPENAI_MODELS = ("gpt-demo-mini", "gpt-demo")

_OPENAI_MODELS = web.AppKey("openai_models", tuple[str, ...])
_MODELS_CREATED = 1_700_000_000  # fixed, so the model list is the same on every run

JSONObject = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --- The one deterministic model both APIs play ---------------------------------------


@dataclass(frozen=True)
class Tool:
    """A tool the caller offered: its name and the JSON schema of its arguments."""

    name: str
    schema: Mapping[str, Any]


@dataclass(frozen=True)
class Conversation:
    """What the demo model looks at, read out of either API's request the same way."""

    api: str
    model: str
    user_text: str  # the last user message's text ("" if there is none)
    tool_result: str | None  # set when the last message is a tool result
    ends_with_user: bool  # the last message is the user's own (not a tool result)
    tools: tuple[Tool, ...]  # empty when none were offered or the caller forbade their use
    prompt_tokens: int


@dataclass(frozen=True)
class ToolCall:
    """The demo model asking the caller to run a tool."""

    id_digest: str
    name: str
    arguments: dict[str, str]

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments)


@dataclass(frozen=True)
class Reply:
    """The demo model's answer, before either API dresses it in its own wire format."""

    digest: str  # stable per answer; each API prefixes it into its own id style
    text: str  # "" when the answer is a tool call
    tool_call: ToolCall | None
    prompt_tokens: int
    completion_tokens: int


def reply_to(conversation: Conversation) -> Reply:
    """The deterministic answer to `conversation`; tests use it to know what to expect.

    A tool result is answered by repeating it (the round trip shows); offered tools are
    used when the user just spoke (the model "decides" to call one); otherwise the
    answer repeats what the user said.
    """
    tag = f"[{conversation.api} {conversation.model}]"
    said = f"You said: {conversation.user_text!r}"
    if conversation.tool_result is not None:
        return _text_reply(conversation, f"{tag} Tool said: {conversation.tool_result!r}. {said}")
    if conversation.ends_with_user and conversation.tools:
        tool = conversation.tools[0]
        return _tool_reply(conversation, tool.name, tool_arguments(tool, conversation.user_text))
    return _text_reply(conversation, f"{tag} {said}")


def tool_arguments(tool: Tool, text: str) -> dict[str, str]:
    """Arguments for `tool`: every required string property set to `text`.

    Only required strings: the demo cannot invent numbers or enums, and optional
    arguments left out are still a valid call.
    """
    properties = tool.schema.get("properties")
    required = tool.schema.get("required")
    if not isinstance(properties, dict) or not isinstance(required, list):
        return {}
    return {
        name: text
        for name in required
        if isinstance(name, str) and _is_string_schema(properties.get(name))
    }


def count_tokens(*texts: str) -> int:
    """The demo's token count: whitespace-separated words, so usage is predictable."""
    return sum(len(text.split()) for text in texts)


def _is_string_schema(schema: object) -> bool:
    if not isinstance(schema, dict):
        return False
    kind = schema.get("type")
    return kind == "string" or (isinstance(kind, list) and "string" in kind)


def _text_reply(conversation: Conversation, text: str) -> Reply:
    return Reply(
        digest=_digest(conversation.api, conversation.model, text),
        text=text,
        tool_call=None,
        prompt_tokens=conversation.prompt_tokens,
        completion_tokens=count_tokens(text),
    )


def _tool_reply(conversation: Conversation, name: str, arguments: dict[str, str]) -> Reply:
    call = ToolCall(_digest(conversation.api, name, json.dumps(arguments)), name, arguments)
    return Reply(
        digest=_digest(conversation.api, conversation.model, call.id_digest),
        text="",
        tool_call=call,
        prompt_tokens=conversation.prompt_tokens,
        completion_tokens=count_tokens(call.arguments_json),
    )


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


def _pieces(text: str) -> list[str]:
    """`text` cut at spaces into streaming deltas that join back to exactly `text`."""
    words = text.split(" ")
    return [words[0], *(" " + word for word in words[1:])]


# --- What both APIs share: refusals, request bodies, SSE ------------------------------


class _ApiError(Exception):
    """A request the real API would refuse; each provider renders it in its own shape."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _provider_middleware(
    check: Callable[[web.Request], None], render: Callable[[_ApiError], web.Response]
) -> Middleware:
    """Run `check` (credentials, headers) before every handler; render refusals.

    Handlers raise `_ApiError` instead of building responses, so the error shape is
    decided in one place per provider.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            check(request)
            return await handler(request)
        except _ApiError as error:
            return render(error)

    return middleware


def _key_matches(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _bearer_token(request: web.Request) -> str:
    """The token of `Authorization: Bearer <token>`, or "" if there is none."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


async def _read_body(request: web.Request) -> JSONObject:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise _ApiError(400, "the request body is not valid JSON") from error
    if not isinstance(body, dict):
        raise _ApiError(400, "the request body must be a JSON object")
    return body


def _model(body: JSONObject) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _ApiError(400, "model: a non-empty string is required")
    return model


def _messages(body: JSONObject) -> list[JSONObject]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _ApiError(400, "messages: a non-empty array is required")
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        raise _ApiError(400, "messages: every message must be an object with a 'role'")
    return messages


def _last_text(texts: Iterator[str]) -> str:
    """The last non-empty text, or ""."""
    found = ""
    for text in texts:
        if text:
            found = text
    return found


async def _open_sse(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"content-type": "text/event-stream", "cache-control": "no-cache"}
    )
    await response.prepare(request)
    return response


# --- OpenAI Chat Completions ------------------------------------------------------------


def _openai_tools(body: JSONObject) -> tuple[Tool, ...]:
    tools = body.get("tools")
    if body.get("tool_choice") == "none" or not isinstance(tools, list):
        return ()
    functions = [
        tool["function"]
        for tool in tools
        if isinstance(tool, dict) and tool.get("type") == "function"
    ]
    return tuple(
        Tool(function["name"], _schema(function.get("parameters")))
        for function in functions
        if isinstance(function, dict) and isinstance(function.get("name"), str)
    )


def _schema(parameters: object) -> Mapping[str, Any]:
    """OpenAI lets `parameters` be left out (a tool without arguments)."""
    return parameters if isinstance(parameters, dict) else {}


def _openai_conversation(body: JSONObject) -> Conversation:
    messages = _messages(body)
    last_role = messages[-1]["role"]
    return Conversation(
        api=OPENAI,
        model=_model(body),
        user_text=_last_text(
            message_text(m.get("content")) for m in messages if m["role"] == "user"
        ),
        tool_result=message_text(messages[-1].get("content")) if last_role == "tool" else None,
        ends_with_user=last_role == "user",
        tools=_openai_tools(body),
        prompt_tokens=count_tokens(*(message_text(m.get("content")) for m in messages)),
    )


def _openai_finish_reason(reply: Reply) -> str:
    return "stop" if reply.tool_call is None else "tool_calls"


def _openai_usage(reply: Reply) -> JSONObject:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }


def _openai_message(reply: Reply) -> JSONObject:
    if reply.tool_call is None:
        return {"role": "assistant", "content": reply.text, "refusal": None}
    call = reply.tool_call
    return {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {
                "id": "call_" + call.id_digest,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json},
            }
        ],
    }


def _openai_deltas(reply: Reply) -> Iterator[JSONObject]:
    """The streamed `delta`s of `reply`, the way OpenAI splits text and tool arguments."""
    if reply.tool_call is None:
        yield {"role": "assistant", "content": "", "refusal": None}
        for piece in _pieces(reply.text):
            yield {"content": piece}
        return
    call = reply.tool_call
    opening = {
        "index": 0,
        "id": "call_" + call.id_digest,
        "type": "function",
        "function": {"name": call.name, "arguments": ""},
    }
    yield {"role": "assistant", "content": None, "refusal": None, "tool_calls": [opening]}
    for piece in _pieces(call.arguments_json):
        yield {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}


def _openai_error(error: _ApiError) -> web.Response:
    code = "invalid_api_key" if error.status == 401 else None
    return web.json_response(
        {
            "error": {
                "message": error.message,
                "type": "invalid_request_error",
                "param": None,
                "code": code,
            }
        },
        status=error.status,
    )


def _openai_auth(required_key: str | None) -> Callable[[web.Request], None]:
    """Demand `Authorization: Bearer <required_key>` (if one is required)."""

    def check(request: web.Request) -> None:
        if required_key is None:
            return
        token = _bearer_token(request)
        if not token:
            raise _ApiError(401, "You didn't provide an API key (Authorization: Bearer ...).")
        if not _key_matches(token, required_key):
            raise _ApiError(401, "Incorrect API key provided.")

    return check


async def openai_chat_completions(request: web.Request) -> web.StreamResponse:
    """`POST /openai/v1/chat/completions`: one `chat.completion`, or chunks if streaming."""
    body = await _read_body(request)
    reply = reply_to(_openai_conversation(body))
    head = {
        "id": "chatcmpl-" + reply.digest,
        "created": int(time.time()),
        "model": body["model"],
        "system_fingerprint": None,
    }
    if not body.get("stream"):
        return web.json_response(
            {
                **head,
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": _openai_message(reply),
                        "logprobs": None,
                        "finish_reason": _openai_finish_reason(reply),
                    }
                ],
                "usage": _openai_usage(reply),
            }
        )
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    return await _openai_stream(
        request, reply, {**head, "object": "chat.completion.chunk"}, include_usage
    )


async def _openai_stream(
    request: web.Request, reply: Reply, head: JSONObject, include_usage: bool
) -> web.StreamResponse:
    """Chunks, a finishing chunk, the usage chunk if asked for, then `[DONE]`."""
    response = await _open_sse(request)
    # With include_usage, OpenAI puts `"usage": null` on every chunk but the last.
    usage_field: JSONObject = {"usage": None} if include_usage else {}

    async def send(chunk: JSONObject) -> None:
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

    def choice(delta: JSONObject, finish: str | None = None) -> JSONObject:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    for delta in _openai_deltas(reply):
        await send({**head, "choices": [choice(delta)], **usage_field})
    await send({**head, "choices": [choice({}, _openai_finish_reason(reply))], **usage_field})
    if include_usage:
        await send({**head, "choices": [], "usage": _openai_usage(reply)})
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def openai_models(request: web.Request) -> web.Response:
    """`GET /openai/v1/models`: the fixed list given at construction.

    Clients that discover models before chatting (many UIs do) find something to pick.
    """
    models = request.app[_OPENAI_MODELS]
    return web.json_response(
        {
            "object": "list",
            "data": [
                {"id": model, "object": "model", "created": _MODELS_CREATED, "owned_by": "demo"}
                for model in models
            ],
        }
    )


def _openai_app(required_key: str | None, models: Sequence[str]) -> web.Application:
    app = web.Application(
        middlewares=[_provider_middleware(_openai_auth(required_key), _openai_error)]
    )
    app[_OPENAI_MODELS] = tuple(models)
    app.router.add_post("/v1/chat/completions", openai_chat_completions)
    app.router.add_get("/v1/models", openai_models)
    return app


# --- Anthropic Messages -----------------------------------------------------------------


def _anthropic_blocks(content: object) -> list[JSONObject]:
    """Content as blocks: Anthropic accepts a plain string as one text block."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [block for block in content if isinstance(block, dict)]
    return []


def _anthropic_text(content: object) -> str:
    return " ".join(
        block["text"]
        for block in _anthropic_blocks(content)
        if block.get("type") == "text" and isinstance(block.get("text"), str)
    )


def _anthropic_tool_result(message: JSONObject) -> str | None:
    """The text of a user message's tool_result blocks; None if it has none."""
    results = [
        block
        for block in _anthropic_blocks(message.get("content"))
        if block.get("type") == "tool_result"
    ]
    if not results:
        return None
    return " ".join(_anthropic_text(block.get("content")) for block in results)


def _anthropic_tools(body: JSONObject) -> tuple[Tool, ...]:
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if (isinstance(choice, dict) and choice.get("type") == "none") or not isinstance(tools, list):
        return ()
    return tuple(
        Tool(tool["name"], tool["input_schema"])
        for tool in tools
        if isinstance(tool, dict)
        and isinstance(tool.get("name"), str)
        and isinstance(tool.get("input_schema"), dict)
    )


def _anthropic_conversation(body: JSONObject) -> Conversation:
    messages = _messages(body)
    if not isinstance(body.get("max_tokens"), int):
        raise _ApiError(400, "max_tokens: Field required")
    last = messages[-1]
    tool_result = _anthropic_tool_result(last) if last["role"] == "user" else None
    return Conversation(
        api=ANTHROPIC,
        model=_model(body),
        user_text=_last_text(
            _anthropic_text(m.get("content")) for m in messages if m["role"] == "user"
        ),
        tool_result=tool_result,
        ends_with_user=last["role"] == "user" and tool_result is None,
        tools=_anthropic_tools(body),
        prompt_tokens=count_tokens(
            _anthropic_text(body.get("system")),
            *(_anthropic_text(m.get("content")) for m in messages),
            *(_anthropic_tool_result(m) or "" for m in messages),
        ),
    )


def _anthropic_stop_reason(reply: Reply) -> str:
    return "end_turn" if reply.tool_call is None else "tool_use"


def _anthropic_content(reply: Reply) -> JSONObject:
    if reply.tool_call is None:
        return {"type": "text", "text": reply.text}
    call = reply.tool_call
    return {
        "type": "tool_use",
        "id": "toolu_" + call.id_digest,
        "name": call.name,
        "input": call.arguments,
    }


def _anthropic_message(reply: Reply, model: str) -> JSONObject:
    return {
        "id": "msg_" + reply.digest,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [_anthropic_content(reply)],
        "stop_reason": _anthropic_stop_reason(reply),
        "stop_sequence": None,
        "usage": {"input_tokens": reply.prompt_tokens, "output_tokens": reply.completion_tokens},
    }


def _anthropic_events(reply: Reply, model: str) -> Iterator[tuple[str, JSONObject]]:
    """The (event, data) pairs of a streamed answer, in the order Anthropic sends them."""
    opening = {
        **_anthropic_message(reply, model),
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": reply.prompt_tokens, "output_tokens": 1},
    }
    yield "message_start", {"type": "message_start", "message": opening}
    yield from _anthropic_block_events(reply)
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": _anthropic_stop_reason(reply), "stop_sequence": None},
            "usage": {"output_tokens": reply.completion_tokens},
        },
    )
    yield "message_stop", {"type": "message_stop"}


def _anthropic_block_events(reply: Reply) -> Iterator[tuple[str, JSONObject]]:
    """The one content block: opened empty, filled by deltas, closed."""
    block = _anthropic_content(reply)
    if reply.tool_call is None:
        deltas = [{"type": "text_delta", "text": piece} for piece in _pieces(reply.text)]
        block = {**block, "text": ""}
    else:
        arguments = reply.tool_call.arguments_json
        deltas = [
            {"type": "input_json_delta", "partial_json": piece} for piece in _pieces(arguments)
        ]
        block = {**block, "input": {}}
    yield "content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}
    yield "ping", {"type": "ping"}
    for delta in deltas:
        yield "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
    yield "content_block_stop", {"type": "content_block_stop", "index": 0}


def _anthropic_error(error: _ApiError) -> web.Response:
    kind = "authentication_error" if error.status == 401 else "invalid_request_error"
    return web.json_response(
        {"type": "error", "error": {"type": kind, "message": error.message}}, status=error.status
    )


def _anthropic_checks(required_key: str | None) -> Callable[[web.Request], None]:
    """Demand `required_key` (if one is required) and an `anthropic-version` header.

    The key is accepted as `x-api-key` (older SDKs, curl, the API docs) or as
    `Authorization: Bearer` (what `anthropic` 2.x sends for `api_key`). Every
    credential presented must be the key: a gateway that injects the right
    `x-api-key` but still forwards the caller's own token is caught.
    """

    def check(request: web.Request) -> None:
        if required_key is not None:
            presented = [request.headers.get("x-api-key", ""), _bearer_token(request)]
            given = [key for key in presented if key]
            if not given:
                raise _ApiError(401, "x-api-key header is required")
            if not all(_key_matches(key, required_key) for key in given):
                raise _ApiError(401, "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            raise _ApiError(400, "anthropic-version: header is required")

    return check


async def anthropic_messages(request: web.Request) -> web.StreamResponse:
    """`POST /anthropic/v1/messages`: one `message`, or Anthropic's named SSE events."""
    body = await _read_body(request)
    reply = reply_to(_anthropic_conversation(body))
    model = body["model"]
    if not body.get("stream"):
        return web.json_response(_anthropic_message(reply, model))
    response = await _open_sse(request)
    for event, data in _anthropic_events(reply, model):
        await response.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
    await response.write_eof()
    return response


def _anthropic_app(required_key: str | None) -> web.Application:
    app = web.Application(
        middlewares=[_provider_middleware(_anthropic_checks(required_key), _anthropic_error)]
    )
    app.router.add_post("/v1/messages", anthropic_messages)
    return app


# --- The server -------------------------------------------------------------------------


async def healthz(_: web.Request) -> web.Response:
    """`GET /healthz`: lets a supervisor or test wait until the server is up."""
    return web.Response(text="ok\n")


def make_app(
    required_keys: Mapping[str, str] | None = None,
    *,
    openai_models: Sequence[str] = DEFAULT_OPENAI_MODELS,
) -> web.Application:
    """Both APIs on one app: OpenAI under `/openai`, Anthropic under `/anthropic`.

    `required_keys` maps a provider (`"openai"`, `"anthropic"`) to the credential its
    requests must carry; providers not named accept any credential or none.
    `openai_models` is what `GET /openai/v1/models` lists (any model name is answered).
    """
    keys = dict(required_keys or {})
    unknown = sorted(set(keys) - set(PROVIDERS))
    if unknown:
        raise ValueError(f"required_keys names unknown providers {unknown}; known: {PROVIDERS}")
    if any(not key for key in keys.values()):
        raise ValueError("required_keys: an empty key cannot be presented by any client")
    app = web.Application()
    app.add_subapp("/openai", _openai_app(keys.get(OPENAI), openai_models))
    app.add_subapp("/anthropic", _anthropic_app(keys.get(ANTHROPIC)))
    app.router.add_get("/healthz", healthz)
    return app


async def run_demo_models(
    address: str,
    port: int,
    required_keys: Mapping[str, str] | None = None,
    *,
    openai_models: Sequence[str] = DEFAULT_OPENAI_MODELS,
) -> None:
    """Serve `make_app(...)` on `address:port` until SIGINT or SIGTERM."""
    runner = web.AppRunner(make_app(required_keys, openai_models=openai_models), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, address, port)
    await site.start()
    base = f"http://{address}:{port}"
    guarded = sorted(required_keys or {})  # which providers need a key; never the keys
    log.info(
        "demo models listening: OpenAI at %s/openai/v1, Anthropic at %s/anthropic "
        "(keys required for: %s)",
        base,
        base,
        ", ".join(guarded) or "none",
    )
    try:
        await wait_for_stop_signal()
    finally:
        await runner.cleanup()


def serve(
    address: str,
    port: int,
    required_keys: Mapping[str, str] | None = None,
    *,
    openai_models: Sequence[str] = DEFAULT_OPENAI_MODELS,
) -> None:
    """The blocking entry point a CLI command calls."""
    asyncio.run(run_demo_models(address, port, required_keys, openai_models=openai_models))
