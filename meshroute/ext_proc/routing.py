"""One Gateway's routing, ready for requests: its router and every answer pre-built."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

from meshroute.api import contract
from meshroute.api.v1alpha1 import routing_table_pb2 as rt
from meshroute.ext_proc import responses
from meshroute.ext_proc.chat_request import BadRequest, Turn, parse_chat_request
from meshroute.ext_proc.embedded_router import EmbeddedRouter, RouteChoice


@dataclass(frozen=True)
class Decision:
    agent: str
    reason: str
    score: float


class GatewayRouting:
    """Built from a RoutingTable; raises ValueError if the table cannot be used."""

    def __init__(self, table: rt.RoutingTable) -> None:
        if not table.gateway:
            raise ValueError("routing table without a gateway name")
        names = [agent.name for agent in table.agents]
        if len(set(names)) != len(names):
            raise ValueError(f"gateway {table.gateway}: duplicate agent names")
        if table.router.WhichOneof("kind") != "embedded":
            raise ValueError(
                f"gateway {table.gateway}: unsupported router {table.router.WhichOneof('kind')!r}"
            )
        self.gateway = table.gateway
        self.default_agent = table.default_agent
        self._router = EmbeddedRouter(
            [(agent.name, agent.description, list(agent.examples)) for agent in table.agents],
            default_agent=table.default_agent,
            min_score=table.router.embedded.min_score,
        )
        self._answers: Mapping[tuple[str, str], ep.ProcessingResponse] = {
            (name, reason): responses.route_to(name, reason)
            for name in names
            for reason in (contract.REASON_EMBEDDED, contract.REASON_DEFAULT)
        }

    def decide(self, conversation: list[Turn]) -> Decision:
        choice: RouteChoice = self._router.route(conversation)
        reason = contract.REASON_EMBEDDED if choice.matched else contract.REASON_DEFAULT
        return Decision(agent=choice.agent, reason=reason, score=choice.score)

    def answer(self, body: bytes) -> ep.ProcessingResponse:
        """The ext_proc answer to a buffered request body."""
        try:
            conversation = parse_chat_request(body)
        except BadRequest as bad:
            return responses.error(400, bad.code, bad.message)
        decision = self.decide(conversation)
        return self._answers[(decision.agent, decision.reason)]
