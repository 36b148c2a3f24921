"""`meshroute route`: one routing decision, made exactly as the sidecar makes it.

The routing table comes from the control plane's translation and the decision from
the sidecar's own code; only the routing model (if any) is called directly at the
provider's endpoint, since no Envoy runs for a dry run.
"""

from __future__ import annotations

import time

import aiohttp

from meshroute.control_plane.config.model import Config, Gateway, OrchestratorRouterSpec
from meshroute.control_plane.translate.deployment import DeploymentSettings
from meshroute.control_plane.translate.routing_tables import (
    gateway_routing_table,
    provider_chat_url,
)
from meshroute.ext_proc.chat_request import Turn
from meshroute.ext_proc.routing import GatewayRouting


async def explain_route(config: Config, gateway: Gateway, message: str) -> list[str]:
    """The decision for `message` on `gateway`, as lines a person reads."""
    table = gateway_routing_table(gateway, config, DeploymentSettings())
    router = gateway.spec.router
    direct_url = ""
    if isinstance(router, OrchestratorRouterSpec):
        provider = config.providers[router.provider]
        direct_url = provider_chat_url(provider, str(provider.spec.endpoint))
        table.router.orchestrator.url = direct_url
    async with aiohttp.ClientSession() as session:
        routing = GatewayRouting(table, session)
        started = time.perf_counter()
        decision = await routing.decide([Turn(role="user", text=message)])
        elapsed_ms = (time.perf_counter() - started) * 1000
    if decision.cause is not None:
        why = (
            f"the routing model failed ({decision.cause}: {decision.detail}); "
            "the default agent serves"
        )
    elif isinstance(router, OrchestratorRouterSpec):
        why = f"routing model {router.model} at {direct_url} chose in {elapsed_ms:.0f} ms"
    elif decision.reason == "default":
        why = (
            f"no agent scored at least minScore {router.min_score}; "
            f"best score {decision.score or 0:.3f}"
        )
    else:
        why = (
            f"embedded router: best similarity {decision.score or 0:.3f} "
            f"(minScore {router.min_score})"
        )
    return [
        f"gateway: {gateway.name}",
        f"agent:   {','.join(decision.agents)}",
        f"reason:  {decision.reason}",
        f"why:     {why}",
    ]
