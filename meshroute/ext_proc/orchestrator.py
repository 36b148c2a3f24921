"""Asking a routing model which agent(s) should serve a request.

The contract (DESIGN, "The orchestrator contract"): one `user` message holding a
prompt with the routes, one JSON object per line inside <routes></routes>, and the
conversation as a JSON array inside <conversation></conversation>, asking for
`{"route": ["name", ...]}`; temperature 0. System, developer and tool messages and
empty turns are dropped; the latest `max_turns` turns are kept, walked back within
a token budget (estimated as characters / 4), and a latest message too long for the
budget on its own loses its middle.

Whatever goes wrong (timeout, HTTP error, unreachable, an unreadable or empty
reply) the caller gets an Outcome with a `cause` instead of agents, and serves the
default agent: the routing model's failures never become the user's.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from opentelemetry.trace import SpanKind

from meshroute.ext_proc.chat_request import Turn
from meshroute.ext_proc.decision_cache import DecisionCache
from meshroute.ext_proc.snippets import snippet
from meshroute.ext_proc.telemetry import child_span, outgoing_headers

log = logging.getLogger("meshroute.ext_proc.orchestrator")

ROUTED_ROLES = frozenset({"user", "assistant"})
CHARS_PER_TOKEN = 4
TRIM_MARKER = " … "
# The reply is a short JSON object; a cap keeps a rambling model from costing time.
REPLY_MAX_TOKENS = 256

PROMPT_HEAD = (
    "You route requests in a multi-agent system. Each route below is an agent, with what it does."
)
PROMPT_TAIL = (
    "Pick the route or routes that should handle the latest user message, given the "
    "whole conversation. If several agents are needed, list them in the order they "
    "should run. If no route fits, answer with an empty list.\n"
    'Answer with JSON only, in exactly this form: {"route": ["name", ...]}'
)


@dataclass(frozen=True)
class Route:
    name: str
    description: str


@dataclass(frozen=True)
class Outcome:
    """The routing model's decision, or why there is none."""

    agents: tuple[str, ...]
    """Known agent names, in order; empty when the caller must fall back."""
    cause: str | None = None
    """Why there is no decision: timeout, overloaded, http_<status>, unreachable,
    bad_reply, empty, unknown_routes."""
    detail: str = ""
    cached: bool = False
    model_seconds: float = 0.0
    """Time spent waiting for the model (zero when cached)."""


class BadReply(ValueError):
    """The model answered, but not with a readable {"route": [...]}."""


# ------------------------------------------------------------------------ the prompt


def select_conversation(
    turns: Sequence[Turn], max_turns: int, max_tokens: int
) -> list[dict[str, str]]:
    """The turns the model sees: routed roles only, newest last, within budget."""
    kept = [turn for turn in turns if turn.role in ROUTED_ROLES and turn.text.strip()]
    kept = kept[-max_turns:]
    budget = max_tokens * CHARS_PER_TOKEN
    selected: list[dict[str, str]] = []
    for turn in reversed(kept):
        text = turn.text
        if not selected and len(text) > budget:
            text = _trim_middle(text, budget)
        if len(text) > budget:
            break
        budget -= len(text)
        selected.append({"role": turn.role, "content": text})
    selected.reverse()
    return selected


def _trim_middle(text: str, limit: int) -> str:
    """The start and the end of `text`, where requests usually say what they want."""
    keep = max(limit - len(TRIM_MARKER), 2)
    head = keep // 2
    return text[:head] + TRIM_MARKER + text[len(text) - (keep - head) :]


class PromptTemplate:
    """The prompt with a gateway's routes already written in: a request adds only its
    conversation (as JSON text, which the decision cache keys on too)."""

    def __init__(self, routes: Sequence[Route]) -> None:
        route_lines = "\n".join(
            json.dumps({"name": route.name, "description": route.description}, ensure_ascii=False)
            for route in routes
        )
        self._head = f"{PROMPT_HEAD}\n\n<routes>\n{route_lines}\n</routes>\n\n<conversation>\n"
        self._tail = f"\n</conversation>\n\n{PROMPT_TAIL}"

    def render(self, conversation_json: str) -> str:
        return self._head + conversation_json + self._tail


def conversation_json(conversation: Sequence[dict[str, str]]) -> str:
    return json.dumps(list(conversation), ensure_ascii=False)


def build_prompt(routes: Sequence[Route], conversation: Sequence[dict[str, str]]) -> str:
    return PromptTemplate(routes).render(conversation_json(conversation))


# ------------------------------------------------------------------------- the reply

_FENCE = re.compile(r"```[a-zA-Z]*")


def routing_request(model: str, prompt: str) -> dict[str, Any]:
    """The chat completion asked of the routing model: near-deterministic and short."""
    return {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": REPLY_MAX_TOKENS,
        "stream": False,
    }


def parse_route_reply(text: str) -> list[str]:
    """The route names in a model's reply, tolerating what models do.

    Accepts code fences, text around the JSON, single quotes, and a bare string for
    a single route. Raises BadReply when there is no {"route": ...} object at all.
    """
    cleaned = _FENCE.sub("", text)
    start, end = cleaned.find("{"), cleaned.rfind("}")
    if start < 0 or end <= start:
        raise BadReply(f"no JSON object in the reply: {snippet(text)}")
    candidate = cleaned[start : end + 1]
    try:
        data = json.loads(candidate)
    except json.JSONDecodeError:
        try:
            data = json.loads(candidate.replace("'", '"'))
        except (json.JSONDecodeError, RecursionError):
            raise BadReply(f"unreadable JSON in the reply: {snippet(text)}") from None
    except RecursionError:
        raise BadReply(f"the reply nests too deeply: {snippet(text)}") from None
    if not isinstance(data, dict) or "route" not in data:
        raise BadReply(f'no "route" in the reply: {snippet(text)}')
    routes = data["route"]
    if routes is None:
        return []
    if isinstance(routes, str):
        return [routes]
    if isinstance(routes, list) and all(isinstance(name, str) for name in routes):
        return routes
    raise BadReply(f'"route" is not a list of names: {snippet(text)}')


# ------------------------------------------------------------------------ the client


@dataclass(frozen=True)
class OrchestratorSettings:
    url: str
    model: str
    timeout: float
    max_turns: int
    max_tokens: int
    max_concurrency: int
    cache_ttl: float
    cache_max_entries: int


class OrchestratorClient:
    """One Gateway's routing model: prompt, call, parse, cache. Build once per table."""

    def __init__(
        self,
        settings: OrchestratorSettings,
        routes: Sequence[Route],
        session: aiohttp.ClientSession,
    ) -> None:
        self._settings = settings
        self._prompt = PromptTemplate(routes)
        self._known = {route.name for route in routes}
        self._session = session
        self._slots = asyncio.Semaphore(settings.max_concurrency)
        self._cache = DecisionCache(settings.cache_ttl, settings.cache_max_entries)
        self._timeout = aiohttp.ClientTimeout(total=None)  # asyncio.timeout bounds the call

    async def decide(self, turns: Sequence[Turn]) -> Outcome:
        settings = self._settings
        conversation = conversation_json(
            select_conversation(turns, settings.max_turns, settings.max_tokens)
        )
        key = hashlib.sha256(conversation.encode()).digest()
        cached = self._cache.get(key)
        if cached is not None:
            return Outcome(agents=cached, cached=True)
        started = time.perf_counter()
        slot_taken = False
        try:
            async with asyncio.timeout(settings.timeout):
                await self._slots.acquire()
                slot_taken = True
                reply = await self._ask(self._prompt.render(conversation))
        except TimeoutError:
            cause = "timeout" if slot_taken else "overloaded"
            return Outcome(agents=(), cause=cause, detail=f"no answer within {settings.timeout}s")
        except _HttpError as error:
            return Outcome(agents=(), cause=f"http_{error.status}", detail=error.detail)
        except (aiohttp.ClientError, OSError) as error:
            return Outcome(
                agents=(), cause="unreachable", detail=str(error) or type(error).__name__
            )
        except BadReply as error:
            return Outcome(agents=(), cause="bad_reply", detail=str(error))
        finally:
            if slot_taken:
                self._slots.release()
        elapsed = time.perf_counter() - started
        chosen = _known_in_order(reply, self._known)
        if not chosen:
            cause = "empty" if not reply else "unknown_routes"
            return Outcome(
                agents=(), cause=cause, detail=f"model answered {reply}", model_seconds=elapsed
            )
        self._cache.put(key, chosen)
        return Outcome(agents=chosen, model_seconds=elapsed)

    async def _ask(self, prompt: str) -> list[str]:
        body = json.dumps(routing_request(self._settings.model, prompt)).encode()
        with child_span("orchestrator call", SpanKind.CLIENT) as span:
            span.set_attributes(
                {"gen_ai.operation.name": "chat", "gen_ai.request.model": self._settings.model}
            )
            headers = outgoing_headers()  # inside the span: the model's parent is this call
            headers["content-type"] = "application/json"
            async with self._session.post(
                self._settings.url, data=body, timeout=self._timeout, headers=headers
            ) as response:
                span.set_attribute("http.response.status_code", response.status)
                reply = await response.read()
                if response.status != 200:
                    raise _HttpError(response.status, snippet(reply.decode(errors="replace")))
        try:
            content = json.loads(reply)["choices"][0]["message"]["content"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError):
            raise BadReply(
                f"not a chat completion: {snippet(reply.decode(errors='replace'))}"
            ) from None
        if not isinstance(content, str):
            raise BadReply("the completion has no text content")
        return parse_route_reply(content)


class _HttpError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _known_in_order(names: Sequence[str], known: set[str]) -> tuple[str, ...]:
    """Known names, first mention wins; unknown names are dropped."""
    chosen: list[str] = []
    for name in names:
        clean = name.strip()
        if clean in known and clean not in chosen:
            chosen.append(clean)
    return tuple(chosen)
