"""Choosing among named routes by what a conversation is about: the one decision both
kinds of gateway make (agents on an agent gateway, routing preferences for
`model: auto` on a model gateway), by the embedded router or by a routing model.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from meshroute.api import contract
from meshroute.api.v1alpha1 import routing_table_pb2 as rt
from meshroute.ext_proc.chat_request import Turn
from meshroute.ext_proc.embedded_router import EmbeddedRouter
from meshroute.ext_proc.orchestrator import OrchestratorClient, OrchestratorSettings, Route


@dataclass(frozen=True)
class NamedRoute:
    name: str
    description: str
    examples: Sequence[str] = ()


@dataclass(frozen=True)
class Choice:
    """What fits, or why nothing was chosen."""

    names: tuple[str, ...]
    """The chosen routes, in order; empty when nothing fit or the chooser failed."""
    by: str
    """The reason a choice gives: "embedded" or "orchestrator"."""
    score: float | None = None
    cause: str | None = None
    """Why the routing model gave no choice (it failed); None when it simply chose."""
    detail: str = ""
    cached: bool = False
    model_seconds: float | None = None
    """How long the routing model took (answered or not); None when it was not asked."""


class Chooser(Protocol):
    async def choose(self, turns: Sequence[Turn]) -> Choice: ...


class EmbeddedChooser:
    def __init__(self, routes: Sequence[NamedRoute], min_score: float) -> None:
        self._router = EmbeddedRouter(
            [(route.name, route.description, list(route.examples)) for route in routes],
            default_agent=routes[0].name,
            min_score=min_score,
        )

    async def choose(self, turns: Sequence[Turn]) -> Choice:
        picked = self._router.route(turns)
        names = (picked.agent,) if picked.matched else ()
        return Choice(names=names, by=contract.REASON_EMBEDDED, score=picked.score)


class OrchestratorChooser:
    def __init__(
        self,
        router: rt.OrchestratorRouter,
        routes: Sequence[NamedRoute],
        session: aiohttp.ClientSession,
    ) -> None:
        self._client = OrchestratorClient(
            OrchestratorSettings(
                url=router.url,
                model=router.model,
                timeout=router.timeout.ToTimedelta().total_seconds(),
                max_turns=router.max_turns,
                max_tokens=router.max_tokens,
                max_concurrency=max(router.max_concurrency, 1),
                cache_ttl=router.cache_ttl.ToTimedelta().total_seconds(),
                cache_max_entries=router.cache_max_entries,
            ),
            [Route(route.name, route.description) for route in routes],
            session,
        )

    async def choose(self, turns: Sequence[Turn]) -> Choice:
        started = time.perf_counter()
        outcome = await self._client.decide(turns)
        return Choice(
            names=outcome.agents,
            by=contract.REASON_ORCHESTRATOR,
            cause=outcome.cause,
            detail=outcome.detail,
            cached=outcome.cached,
            model_seconds=None if outcome.cached else time.perf_counter() - started,
        )


def build_chooser(
    router: rt.Router,
    routes: Sequence[NamedRoute],
    session: aiohttp.ClientSession | None,
    owner: str,
) -> Chooser:
    """The chooser `router` describes; ValueError if it cannot be built."""
    if not routes:
        raise ValueError(f"{owner}: nothing to route to")
    kind = router.WhichOneof("kind")
    if kind == "embedded":
        return EmbeddedChooser(routes, router.embedded.min_score)
    if kind == "orchestrator":
        if session is None:
            raise ValueError(f"{owner}: the orchestrator needs an HTTP client")
        return OrchestratorChooser(router.orchestrator, routes, session)
    raise ValueError(f"{owner}: unsupported router {kind!r}")
