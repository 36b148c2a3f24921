"""`meshroute route`: one routing decision, made exactly as the sidecar makes it.

The routing table comes from the control plane's translation and the decision from
the sidecar's own code; only the routing model (if any) is called directly at the
provider's endpoint, since no Envoy runs for a dry run. On a model gateway the
message is routed as `model: auto` would be.
"""

from __future__ import annotations

import time

import aiohttp

from meshroute.api import contract
from meshroute.control_plane.config.model import (
    Config,
    Gateway,
    ModelGatewaySpec,
    OrchestratorRouterSpec,
)
from meshroute.control_plane.translate.deployment import DeploymentSettings
from meshroute.control_plane.translate.routing_tables import (
    gateway_routing_table,
    provider_chat_url,
)
from meshroute.ext_proc.chat_request import Turn
from meshroute.ext_proc.model_routing import ModelRouting
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
    turns = [Turn(role="user", text=message)]
    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        if isinstance(gateway.spec, ModelGatewaySpec):
            choice = await ModelRouting(table, session).choose(
                {"model": contract.AUTO_MODEL}, turns
            )
            chosen = f"{choice.target.name} (LLMProvider/{choice.target.provider})"
            reason, cause, detail, score = choice.reason, choice.cause, choice.detail, None
        else:
            decision = await GatewayRouting(table, session).decide(turns)
            chosen = ",".join(decision.agents)
            reason, cause, detail, score = (
                decision.reason,
                decision.cause,
                decision.detail,
                decision.score,
            )
        elapsed_ms = (time.perf_counter() - started) * 1000
    if cause is not None:
        why = f"the routing model failed ({cause}: {detail}); the default serves"
    elif isinstance(router, OrchestratorRouterSpec):
        why = f"routing model {router.model} at {direct_url} chose in {elapsed_ms:.0f} ms"
    elif reason == contract.REASON_DEFAULT:
        best = f"; best score {score:.3f}" if score is not None else ""
        why = f"nothing scored at least minScore {router.min_score}{best}"
    else:
        similarity = f"best similarity {score:.3f} " if score is not None else ""
        why = f"embedded router: {similarity}(minScore {router.min_score})"
    label = "model:  " if isinstance(gateway.spec, ModelGatewaySpec) else "agent:  "
    return [
        f"gateway: {gateway.name}",
        f"{label} {chosen}",
        f"reason:  {reason}",
        f"why:     {why}",
    ]
