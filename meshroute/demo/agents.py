"""Demo agents for the quickstart: OpenAI-compatible, offline, deterministic.

One server plays any number of agents, one per path:
`POST /agents/<name>/v1/chat/completions`. Each answer says which agent answered
and repeats the question, so a person (or a test) can see where a request went.
Streaming (`"stream": true`) answers in OpenAI's SSE chunk format.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from typing import Any

from aiohttp import web

from meshroute.lifecycle import wait_for_stop_signal

log = logging.getLogger("meshroute.demo")

AGENT_HEADER = "x-demo-agent"

_FLAVOUR = {
    "weather": "Demo forecast: light rain in the morning, clearing by noon, 14°C.",
    "flights": "Demo itinerary: one non-stop flight at 09:40, on time, gate B12.",
    "currency": "Demo rate: 1 EUR = 1.08 USD, as of this made-up morning.",
}


def answer_text(agent: str, messages: list[Any]) -> str:
    """What `agent` says to `messages`; also used by tests to know what to expect.

    In a multi-agent sequence the earlier agents' answers arrive as assistant
    messages with a `name`; the answer says whose it built on, so the hand-over shows.
    """
    question = ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            question = content if isinstance(content, str) else json.dumps(content)
            break
    earlier = [
        str(message["name"])
        for message in messages
        if isinstance(message, dict) and message.get("role") == "assistant" and message.get("name")
    ]
    flavour = _FLAVOUR.get(agent, "")
    building_on = f" Building on: {', '.join(earlier)}." if earlier else ""
    return f"[{agent} agent] You asked: {question!r}. {flavour}{building_on}".strip()


def _error(status: int, message: str) -> web.Response:
    return web.json_response(
        {"error": {"type": "invalid_request_error", "message": message, "code": None}},
        status=status,
    )


async def chat_completions(request: web.Request) -> web.StreamResponse:
    agent = request.match_info["agent"]
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(400, "body is not JSON")
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list):
        return _error(400, "'messages' must be an array")
    text = answer_text(agent, messages)
    model = body.get("model") or f"demo-{agent}"
    completion_id = "chatcmpl-" + hashlib.sha256(text.encode()).hexdigest()[:24]
    created = int(time.time())
    usage = {
        "prompt_tokens": sum(
            len(str(m.get("content", "")).split()) for m in messages if isinstance(m, dict)
        ),
        "completion_tokens": len(text.split()),
    }
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    headers = {AGENT_HEADER: agent}
    if not body.get("stream"):
        return web.json_response(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            },
            headers=headers,
        )

    response = web.StreamResponse(
        headers={**headers, "content-type": "text/event-stream", "cache-control": "no-cache"}
    )
    await response.prepare(request)

    async def send(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> None:
        chunk = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

    await send({"role": "assistant", "content": ""})
    words = text.split(" ")
    for index, word in enumerate(words):
        await send({"content": word if index == 0 else " " + word})
    await send({}, finish="stop")
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        chunk: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": usage,
        }
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok\n")


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/agents/{agent}/v1/chat/completions", chat_completions)
    app.router.add_get("/healthz", healthz)
    return app


async def run_demo_agents(address: str, port: int) -> None:
    runner = web.AppRunner(make_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, address, port)
    await site.start()
    log.info(
        "demo agents listening on http://%s:%d/agents/<name>/v1/chat/completions", address, port
    )
    try:
        await wait_for_stop_signal()
    finally:
        await runner.cleanup()


def serve(address: str, port: int) -> None:
    asyncio.run(run_demo_agents(address, port))
