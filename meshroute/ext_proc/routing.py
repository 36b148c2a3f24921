"""One Gateway's routing, ready for requests: its router and every answer pre-built."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

import aiohttp
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

from meshroute.api import contract
from meshroute.api.v1alpha1 import routing_table_pb2 as rt
from meshroute.ext_proc import responses
from meshroute.ext_proc.chat_request import BadRequest, Turn, parse_chat_request
from meshroute.ext_proc.embedded_router import EmbeddedRouter
from meshroute.ext_proc.orchestrator import OrchestratorClient, OrchestratorSettings, Route
from meshroute.ext_proc.sequencer import Step, StepFailed, run_earlier_steps

log = logging.getLogger("meshroute.ext_proc")

# Seconds the sidecar asks Envoy for, beyond the steps' own timeouts, to finish a
# sequence (parsing, the last hand-over).
SEQUENCE_MARGIN_SECONDS = 5.0
_REASONS = (
    contract.REASON_EMBEDDED,
    contract.REASON_ORCHESTRATOR,
    contract.REASON_PINNED,
    contract.REASON_DEFAULT,
    contract.REASON_FALLBACK,
)


@dataclass(frozen=True)
class Decision:
    agents: tuple[str, ...]
    """The agents to run, in order; the last one answers the client."""
    reason: str
    score: float | None = None
    """The embedded router's similarity, when it decided."""
    cause: str | None = None
    """Why routing fell back, when it did."""
    detail: str = ""
    cached: bool = False


class RoutingStats:
    """Counts of decisions and fallbacks, per gateway, for this process."""

    def __init__(self) -> None:
        self.decisions: Counter[tuple[str, str]] = Counter()
        """(gateway, reason) -> requests."""
        self.fallbacks: Counter[tuple[str, str]] = Counter()
        """(gateway, cause) -> requests that fell back to the default agent."""


class GatewayRouting:
    """Built from a RoutingTable; raises ValueError if the table cannot be used."""

    def __init__(
        self,
        table: rt.RoutingTable,
        session: aiohttp.ClientSession | None = None,
        stats: RoutingStats | None = None,
    ) -> None:
        if not table.gateway:
            raise ValueError("routing table without a gateway name")
        names = [agent.name for agent in table.agents]
        if len(set(names)) != len(names):
            raise ValueError(f"gateway {table.gateway}: duplicate agent names")
        if not names:
            raise ValueError(f"gateway {table.gateway}: no agents")
        if table.default_agent not in names:
            raise ValueError(
                f"gateway {table.gateway}: default agent {table.default_agent!r} "
                "is not among the agents"
            )
        self.gateway = table.gateway
        self.default_agent = table.default_agent
        self.allow_client_pinning = table.allow_client_pinning
        self._stats = stats or RoutingStats()
        self._session = session
        self._steps = {
            agent.name: Step(agent.name, agent.url, agent.timeout.ToTimedelta().total_seconds())
            for agent in table.agents
        }
        kind = table.router.WhichOneof("kind")
        self._embedded: EmbeddedRouter | None = None
        self._orchestrator: OrchestratorClient | None = None
        if kind == "embedded":
            self._embedded = EmbeddedRouter(
                [(agent.name, agent.description, list(agent.examples)) for agent in table.agents],
                default_agent=table.default_agent,
                min_score=table.router.embedded.min_score,
            )
        elif kind == "orchestrator":
            if session is None:
                raise ValueError(f"gateway {table.gateway}: the orchestrator needs an HTTP client")
            self._orchestrator = OrchestratorClient(
                _orchestrator_settings(table.router.orchestrator),
                [Route(agent.name, agent.description) for agent in table.agents],
                session,
            )
        else:
            raise ValueError(f"gateway {table.gateway}: unsupported router {kind!r}")
        self._answers: Mapping[tuple[str, str], ep.ProcessingResponse] = {
            (name, reason): responses.route_to(name, reason)
            for name in names
            for reason in _REASONS
        }

    def knows(self, agent: str) -> bool:
        return agent in self._steps

    async def decide(self, turns: Sequence[Turn]) -> Decision:
        if self._embedded is not None:
            choice = self._embedded.route(turns)
            reason = contract.REASON_EMBEDDED if choice.matched else contract.REASON_DEFAULT
            return Decision(agents=(choice.agent,), reason=reason, score=choice.score)
        assert self._orchestrator is not None
        outcome = await self._orchestrator.decide(turns)
        if outcome.cause is not None:
            return Decision(
                agents=(self.default_agent,),
                reason=contract.REASON_FALLBACK,
                cause=outcome.cause,
                detail=outcome.detail,
            )
        return Decision(
            agents=outcome.agents, reason=contract.REASON_ORCHESTRATOR, cached=outcome.cached
        )

    async def respond(
        self, body: bytes, pinned: str | None = None
    ) -> AsyncIterator[ep.ProcessingResponse]:
        """The ext_proc answers to a buffered request body (more than one when a
        sequence needs Envoy to wait longer)."""
        try:
            request = parse_chat_request(body)
        except BadRequest as bad:
            yield responses.error(400, bad.code, bad.message)
            return
        if pinned is not None:
            decision = Decision(agents=(pinned,), reason=contract.REASON_PINNED)
        else:
            decision = await self.decide(request.turns)
        self._count(decision)
        if len(decision.agents) == 1:
            yield self._answers[(decision.agents[0], decision.reason)]
            return
        async for answer in self._run_sequence(request.payload, decision):
            yield answer

    async def _run_sequence(
        self, payload: dict[str, object], decision: Decision
    ) -> AsyncIterator[ep.ProcessingResponse]:
        assert self._session is not None
        earlier = [self._steps[name] for name in decision.agents[:-1]]
        budget = sum(step.timeout for step in earlier) + SEQUENCE_MARGIN_SECONDS
        yield responses.extend_timeout(min(budget, contract.MAX_SEQUENCE_SECONDS))
        try:
            grown = await run_earlier_steps(self._session, payload, earlier)
        except StepFailed as failed:
            log.warning("gateway %s: sequence %s failed: %s", self.gateway, decision.agents, failed)
            yield responses.error(failed.status, failed.code, failed.message)
            return
        yield responses.route_sequence(decision.agents, decision.reason, json.dumps(grown).encode())

    def _count(self, decision: Decision) -> None:
        self._stats.decisions[(self.gateway, decision.reason)] += 1
        if decision.cause is not None:
            self._stats.fallbacks[(self.gateway, decision.cause)] += 1
            log.warning(
                "gateway %s: routing model failed (%s: %s); default agent %s serves",
                self.gateway,
                decision.cause,
                decision.detail,
                self.default_agent,
            )


def _orchestrator_settings(router: rt.OrchestratorRouter) -> OrchestratorSettings:
    return OrchestratorSettings(
        url=router.url,
        model=router.model,
        timeout=router.timeout.ToTimedelta().total_seconds(),
        max_turns=router.max_turns,
        max_tokens=router.max_tokens,
        max_concurrency=max(router.max_concurrency, 1),
        cache_ttl=router.cache_ttl.ToTimedelta().total_seconds(),
        cache_max_entries=router.cache_max_entries,
    )
