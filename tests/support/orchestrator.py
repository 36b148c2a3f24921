"""A stand-in routing model that honours the orchestrator contract.

It serves OpenAI's chat-completions API, parses the prompt the sidecar sends (the
routes inside <routes>, one JSON object per line, and the conversation inside
<conversation>, a JSON array), and answers `{"route": [...]}` by a rule: the routes
whose names appear, as words, in the latest user message, in the order they appear.
Tests switch it into failure modes and read back every prompt it parsed.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.threaded_server import ThreadedServer

MODES = ("rule", "fixed", "empty", "unknown", "garbage", "error", "fenced", "single-quotes")


@dataclass
class ParsedPrompt:
    model: str
    temperature: float | None
    routes: list[dict[str, str]]
    conversation: list[dict[str, str]]
    traceparent: str | None = None
    """The W3C trace context the call carried, if any."""


@dataclass
class StandInOrchestrator:
    mode: str = "rule"
    delay: float = 0.0
    """Seconds to wait before answering, in every mode."""
    fixed: list[str] = field(default_factory=list)
    """The answer in `fixed` mode."""
    prompts: list[ParsedPrompt] = field(default_factory=list)
    server: ThreadedServer | None = None

    def start(self) -> StandInOrchestrator:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._complete)
        self.server = ThreadedServer(app)
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _complete(self, request: web.Request) -> web.Response:
        body = await request.json()
        [message] = body["messages"]  # the contract: exactly one user message
        assert message["role"] == "user"
        prompt = parse_prompt(message["content"])
        self.prompts.append(
            ParsedPrompt(
                body["model"],
                body.get("temperature"),
                prompt[0],
                prompt[1],
                request.headers.get("traceparent"),
            )
        )
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.mode == "error":
            return web.json_response({"error": {"message": "model overloaded"}}, status=500)
        return web.json_response(_completion(body["model"], self._answer(*prompt)))

    def _answer(self, routes: list[dict[str, str]], conversation: list[dict[str, str]]) -> str:
        names = [route["name"] for route in routes]
        if self.mode == "fixed":
            return json.dumps({"route": self.fixed})
        if self.mode == "empty":
            return json.dumps({"route": []})
        if self.mode == "unknown":
            return json.dumps({"route": ["no-such-agent"]})
        if self.mode == "garbage":
            return "I think the weather agent is best, but who knows."
        latest = next(turn["content"] for turn in reversed(conversation) if turn["role"] == "user")
        words = re.findall(r"[a-z0-9-]+", latest.lower())
        chosen = [name for name in dict.fromkeys(words) if name in names]
        if self.mode == "fenced":
            return 'Sure.\n```json\n{"route": ' + json.dumps(chosen) + "}\n```"
        if self.mode == "single-quotes":
            return "{'route': [" + ", ".join(f"'{name}'" for name in chosen) + "]}"
        return json.dumps({"route": chosen})


def parse_prompt(prompt: str) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The routes and the conversation out of a routing prompt, strictly."""
    routes_block = re.search(r"<routes>\n(.*?)\n</routes>", prompt, re.DOTALL)
    conversation_block = re.search(r"<conversation>\n(.*?)\n</conversation>", prompt, re.DOTALL)
    assert routes_block, prompt
    assert conversation_block, prompt
    routes = [json.loads(line) for line in routes_block.group(1).splitlines()]
    assert all(set(route) == {"name", "description"} for route in routes), routes
    conversation = json.loads(conversation_block.group(1))
    assert isinstance(conversation, list)
    return routes, conversation


def _completion(model: str, content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-router",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def main() -> None:
    """Serve the stand-in as a process of its own (benchmarks measure it that way, so
    its work does not share a Python interpreter with the client's)."""
    import argparse

    parser = argparse.ArgumentParser(description="stand-in routing model")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before answering")
    args = parser.parse_args()
    model = StandInOrchestrator(delay=args.delay)
    app = web.Application()
    app.router.add_post("/v1/chat/completions", model._complete)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
