"""Gateway -> RoutingTable: what the ext_proc server needs to decide for one Gateway."""

from __future__ import annotations

from meshroute.api.v1alpha1 import routing_table_pb2 as rt
from meshroute.control_plane.config.model import (
    Config,
    EmbeddedRouterSpec,
    Gateway,
    LLMProvider,
    ModelGatewaySpec,
    OrchestratorRouterSpec,
)
from meshroute.control_plane.translate.deployment import DeploymentSettings
from meshroute.control_plane.translate.model_routes import upstream_path
from meshroute.control_plane.translate.protos import duration
from meshroute.control_plane.translate.routes import (
    internal_agent_path,
    internal_provider_prefix,
)

# Where each provider API serves chat completions, under its base URL.
CHAT_PATHS = {"openai": "v1/chat/completions"}


_APIS = {
    "openai": rt.OPENAI,
    "anthropic": rt.ANTHROPIC,
    "azure-openai": rt.AZURE_OPENAI,
}


def gateway_routing_table(
    gateway: Gateway, config: Config, settings: DeploymentSettings
) -> rt.RoutingTable:
    spec = gateway.spec
    if isinstance(spec, ModelGatewaySpec):
        return rt.RoutingTable(
            gateway=gateway.name,
            router=_router(spec.router, config, settings),
            models=_model_routing(spec, config),
        )
    agents = config.agents
    return rt.RoutingTable(
        gateway=gateway.name,
        agents=[
            rt.AgentTarget(
                name=ref.name,
                description=ref.description or agents[ref.name].spec.description,
                examples=agents[ref.name].spec.examples,
                url=settings.internal_url + internal_agent_path(ref.name),
                timeout=duration(agents[ref.name].spec.timeout),
            )
            for ref in spec.agents
        ],
        default_agent=spec.default_agent,
        router=_router(spec.router, config, settings),
        allow_client_pinning=spec.allow_client_pinning,
    )


def _model_routing(spec: ModelGatewaySpec, config: Config) -> rt.ModelRouting:
    targets = {
        name: rt.ModelTarget(
            name=name,
            provider=provider.name,
            model_id=provider.spec.models[name],
            api=_APIS[provider.spec.api],
            path=upstream_path(provider, provider.spec.models[name]),
            passthrough_auth=provider.spec.auth is not None and provider.spec.auth.passthrough,
        )
        for name, provider in config.model_names.items()
    }

    def resolved(name: str) -> str:
        return spec.model_aliases.get(name, name)

    return rt.ModelRouting(
        targets=targets,
        aliases=dict(spec.model_aliases),
        default_model=resolved(spec.default_model),
        preferences=[
            rt.ModelPreference(
                name=preference.name,
                description=preference.description,
                model=resolved(preference.models[0]),
            )
            for preference in spec.routing_preferences
        ],
    )


def provider_chat_url(provider: LLMProvider, base_url: str) -> str:
    """The provider's chat-completions URL under `base_url` (the internal listener's
    provider prefix, or the provider's own endpoint for a direct call)."""
    return base_url.rstrip("/") + "/" + CHAT_PATHS[provider.spec.api]


def _router(
    spec: EmbeddedRouterSpec | OrchestratorRouterSpec, config: Config, settings: DeploymentSettings
) -> rt.Router:
    if isinstance(spec, EmbeddedRouterSpec):
        return rt.Router(embedded=rt.EmbeddedRouter(min_score=spec.min_score))
    provider = config.providers[spec.provider]
    through_envoy = settings.internal_url + internal_provider_prefix(provider.name)
    cache = spec.cache
    return rt.Router(
        orchestrator=rt.OrchestratorRouter(
            url=provider_chat_url(provider, through_envoy),
            model=provider.spec.models[spec.model],
            timeout=duration(spec.timeout),
            max_turns=spec.max_turns,
            max_tokens=spec.max_tokens,
            max_concurrency=spec.max_concurrency,
            cache_ttl=duration(cache.ttl) if cache.enabled else None,
            cache_max_entries=cache.max_entries,
        )
    )
