"""Running a multi-agent sequence: every agent but the last, inside the sidecar.

A decision such as ["weather", "flights"] means: weather answers first, then
flights answers knowing what weather said. The sidecar calls the earlier agents
itself (through Envoy's internal listener, so load balancing, retries and TLS
apply), inserts each full answer as an `assistant` message named after its agent
just before the last user message, and hands the grown request back to Envoy for
the last agent, which streams to the client like any single-agent request.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from opentelemetry.trace import Span, SpanKind

from meshroute.ext_proc.snippets import snippet
from meshroute.ext_proc.telemetry import child_span, outgoing_headers


@dataclass(frozen=True)
class Step:
    name: str
    url: str
    timeout: float


class StepFailed(Exception):
    """An earlier agent failed; the client gets `status` and a message naming it."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


async def run_earlier_steps(
    session: aiohttp.ClientSession, payload: dict[str, Any], steps: Sequence[Step]
) -> dict[str, Any]:
    """`payload` with every step's answer inserted; the steps run in order."""
    grown = copy.deepcopy(payload)
    messages: list[Any] = grown["messages"]
    insert_at = _last_user_index(messages)
    for step in steps:
        request = {**grown, "messages": messages, "stream": False}
        request.pop("stream_options", None)
        answer = await _call(session, step, request)
        messages.insert(insert_at, {"role": "assistant", "name": step.name, "content": answer})
        insert_at += 1
    return grown


def _last_user_index(messages: list[Any]) -> int:
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if isinstance(message, dict) and message.get("role") == "user":
            return index
    return len(messages)


async def _call(session: aiohttp.ClientSession, step: Step, request: dict[str, Any]) -> str:
    with child_span("sequence step", SpanKind.CLIENT) as span:
        span.set_attribute("meshroute.agent", step.name)
        return await _call_in_span(session, step, request, span)


async def _call_in_span(
    session: aiohttp.ClientSession, step: Step, request: dict[str, Any], span: Span
) -> str:
    try:
        async with asyncio.timeout(step.timeout):
            async with session.post(step.url, json=request, headers=outgoing_headers()) as response:
                span.set_attribute("http.response.status_code", response.status)
                text = await response.text()
    except TimeoutError:
        raise StepFailed(
            504, "agent_timeout", f"agent {step.name!r} did not answer within {step.timeout:g}s"
        ) from None
    except (aiohttp.ClientError, OSError) as error:
        raise StepFailed(
            502, "agent_unreachable", f"agent {step.name!r} could not be reached: {error}"
        ) from None
    if response.status != 200:
        raise StepFailed(
            502,
            "agent_error",
            f"agent {step.name!r} answered HTTP {response.status}: {snippet(text)}",
        )
    try:
        content = json.loads(text)["choices"][0]["message"]["content"]
    except (json.JSONDecodeError, KeyError, IndexError, TypeError):
        raise StepFailed(
            502, "agent_bad_answer", f"agent {step.name!r} did not answer with a chat completion"
        ) from None
    return content if isinstance(content, str) else ""
