"""An agent gateway's routing, ready for requests: its chooser and every answer pre-built."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

import aiohttp
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from opentelemetry.util.types import AttributeValue

from meshroute.api import contract
from meshroute.api.v1alpha1 import routing_table_pb2 as rt
from meshroute.ext_proc import responses
from meshroute.ext_proc.chat_request import BadRequest, ChatRequest, Turn, parse_chat_request
from meshroute.ext_proc.choosers import NamedRoute, build_chooser
from meshroute.ext_proc.exchange import Exchange, header_value
from meshroute.ext_proc.metrics import SidecarMetrics
from meshroute.ext_proc.sequencer import Step, StepFailed, run_earlier_steps
from meshroute.ext_proc.telemetry import child_span, request_attributes

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
_EMPTY_BODY = responses.error(
    400, "empty_body", "the request body is empty; send a JSON chat request"
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
    model_seconds: float | None = None

    def attributes(self) -> dict[str, AttributeValue]:
        """The decision, as span attributes."""
        attributes: dict[str, AttributeValue] = {
            "meshroute.agents": list(self.agents),
            "meshroute.route_reason": self.reason,
            "meshroute.decision_cached": self.cached,
        }
        if self.score is not None:
            attributes["meshroute.embedded_score"] = round(self.score, 4)
        if self.cause is not None:
            attributes["meshroute.fallback_cause"] = self.cause
        if self.model_seconds is not None:
            attributes["meshroute.orchestrator_ms"] = round(self.model_seconds * 1000, 2)
        return attributes


class GatewayRouting:
    """An agent gateway. Built from a RoutingTable; ValueError if the table is unusable."""

    def __init__(
        self,
        table: rt.RoutingTable,
        session: aiohttp.ClientSession | None = None,
        metrics: SidecarMetrics | None = None,
    ) -> None:
        if not table.gateway:
            raise ValueError("routing table without a gateway name")
        names = [agent.name for agent in table.agents]
        if len(set(names)) != len(names):
            raise ValueError(f"gateway {table.gateway}: duplicate agent names")
        if table.default_agent not in names:
            raise ValueError(
                f"gateway {table.gateway}: default agent {table.default_agent!r} "
                "is not among the agents"
            )
        self.gateway = table.gateway
        self.default_agent = table.default_agent
        self.allow_client_pinning = table.allow_client_pinning
        self._metrics = metrics or SidecarMetrics()
        self._session = session
        self._steps = {
            agent.name: Step(agent.name, agent.url, agent.timeout.ToTimedelta().total_seconds())
            for agent in table.agents
        }
        self._chooser = build_chooser(
            table.router,
            [NamedRoute(a.name, a.description, list(a.examples)) for a in table.agents],
            session,
            f"gateway {table.gateway}",
        )
        self._answers: Mapping[tuple[str, str], ep.ProcessingResponse] = {
            (name, reason): responses.route_to(name, reason)
            for name in names
            for reason in _REASONS
        }

    def start(self) -> AgentExchange:
        return AgentExchange(self)

    def knows(self, agent: str) -> bool:
        return agent in self._steps

    async def decide(self, turns: Sequence[Turn]) -> Decision:
        choice = await self._chooser.choose(turns)
        if choice.cause is not None:
            return Decision(
                agents=(self.default_agent,),
                reason=contract.REASON_FALLBACK,
                cause=choice.cause,
                detail=choice.detail,
                model_seconds=choice.model_seconds,
            )
        if not choice.names:
            return Decision(
                agents=(self.default_agent,),
                reason=contract.REASON_DEFAULT,
                score=choice.score,
                model_seconds=choice.model_seconds,
            )
        return Decision(
            agents=choice.names,
            reason=choice.by,
            score=choice.score,
            cached=choice.cached,
            model_seconds=choice.model_seconds,
        )

    async def respond(
        self, body: bytes, pinned: str | None = None
    ) -> AsyncIterator[ep.ProcessingResponse]:
        """The ext_proc answers to a buffered request body (more than one when a
        sequence needs Envoy to wait longer)."""
        request = _parse(body)
        if isinstance(request, ep.ProcessingResponse):
            yield request  # a 400
            return
        with child_span("routing decision") as span:
            if pinned is not None:
                decision = Decision(agents=(pinned,), reason=contract.REASON_PINNED)
            else:
                decision = await self.decide(request.turns)
            if span.is_recording():
                span.set_attributes(decision.attributes())
        self._metrics.decided(
            self.gateway,
            ",".join(decision.agents),
            decision.reason,
            cause=decision.cause,
            detail=decision.detail,
            model_seconds=decision.model_seconds,
        )
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


def _parse(body: bytes) -> ChatRequest | ep.ProcessingResponse:
    """The request, or the 400 that answers it. (Its own function so that no `yield`
    happens while a span is current: see server.Process.)"""
    with child_span("parse request") as span:
        try:
            request = parse_chat_request(body)
        except BadRequest as bad:
            span.set_attribute("error.type", bad.code)
            return responses.error(400, bad.code, bad.message)
        if span.is_recording():
            span.set_attributes(request_attributes(request))
        return request


class AgentExchange(Exchange):
    """One request on an agent gateway: an optional pin, then the decision."""

    def __init__(self, routing: GatewayRouting) -> None:
        self._routing = routing
        self._pinned: str | None = None

    def request_headers(self, headers: ep.HttpHeaders) -> ep.ProcessingResponse:
        if headers.end_of_stream:
            return self.finish(_EMPTY_BODY)  # no body will follow: nothing to route
        routing = self._routing
        if routing.allow_client_pinning:
            self._pinned = header_value(headers, contract.AGENT_HEADER)
            if self._pinned is not None and not routing.knows(self._pinned):
                return self.finish(
                    responses.error(
                        404,
                        "agent_not_found",
                        f"no agent {self._pinned!r} on gateway {routing.gateway!r}",
                    )
                )
        return responses.CONTINUE_HEADERS

    async def request_body(self, body: bytes) -> AsyncIterator[ep.ProcessingResponse]:
        # Agent gateways never ask for the response: the body's answer is the last.
        self.finished = True
        async for answer in self._routing.respond(body, self._pinned):
            yield answer
