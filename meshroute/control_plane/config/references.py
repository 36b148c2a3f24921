"""Checks that span objects: what no single object's schema can see.

Gateways must name Agents that exist, pick exactly one default, and not share a port.
"""

from __future__ import annotations

from collections import Counter

from pydantic.alias_generators import to_camel

from meshroute.control_plane.config.errors import ConfigError, format_field_path
from meshroute.control_plane.config.model import (
    Agent,
    AgentGatewaySpec,
    Config,
    Gateway,
    LLMProvider,
    ModelGatewaySpec,
    OrchestratorRouterSpec,
)
from meshroute.control_plane.config.policies import POLICY_FIELDS, UpstreamPolicySpec, resolve


def check_references(config: Config) -> list[ConfigError]:
    errors: list[ConfigError] = _check_model_names(config)
    for gateway in config.gateways.values():
        if isinstance(gateway.spec, AgentGatewaySpec):
            errors.extend(_check_gateway_agents(config, gateway, gateway.spec))
        else:
            errors.extend(_check_model_gateway(config, gateway, gateway.spec))
        errors.extend(_check_router(config, gateway))
    errors.extend(_check_ports(config))
    if not errors:
        errors.extend(_resolve_policies(config))
    return errors


def _check_model_names(config: Config) -> list[ConfigError]:
    """A model name must mean one model: no two providers may offer the same name."""
    offered: dict[str, str] = {}
    errors: list[ConfigError] = []
    for provider in config.providers.values():
        for name in provider.spec.models:
            if name in offered:
                errors.append(
                    _error(
                        config,
                        provider,
                        ["spec", "models", name],
                        f"model {name!r} is also offered by LLMProvider/{offered[name]}; "
                        "a gateway could not tell which one is meant",
                    )
                )
            offered.setdefault(name, provider.name)
    return errors


def _check_model_gateway(
    config: Config, gateway: Gateway, spec: ModelGatewaySpec
) -> list[ConfigError]:
    models = config.model_names
    known = ", ".join(sorted(models)) or "none: define an LLMProvider"
    errors: list[ConfigError] = []

    def check(name: str, location: list[str | int], allow_alias: bool) -> None:
        if name in models or (allow_alias and name in spec.model_aliases):
            return
        errors.append(_error(config, gateway, location, f"no model {name!r} (known: {known})"))

    for alias, target in spec.model_aliases.items():
        if alias in models:
            errors.append(
                _error(
                    config,
                    gateway,
                    ["spec", "modelAliases", alias],
                    f"alias {alias!r} hides the model of the same name",
                )
            )
        check(target, ["spec", "modelAliases", alias], allow_alias=False)
    check(spec.default_model, ["spec", "defaultModel"], allow_alias=True)
    for index, preference in enumerate(spec.routing_preferences):
        for position, name in enumerate(preference.models):
            check(name, ["spec", "routingPreferences", index, "models", position], True)
    return errors


def _resolve_policies(config: Config) -> list[ConfigError]:
    """Fill config.policies; an upstream two Gateways default differently is an error."""
    users: dict[str, list[Gateway]] = {}
    for gateway in config.gateways.values():
        if isinstance(gateway.spec, AgentGatewaySpec):
            for ref in gateway.spec.agents:
                users.setdefault(f"Agent/{ref.name}", []).append(gateway)
        else:  # a model gateway serves every provider's models
            for provider in config.providers.values():
                users.setdefault(provider.ref, []).append(gateway)
        router = gateway.spec.router
        if isinstance(router, OrchestratorRouterSpec):
            users.setdefault(f"LLMProvider/{router.provider}", []).append(gateway)
    errors: list[ConfigError] = []
    upstreams: list[Agent | LLMProvider] = [*config.agents.values(), *config.providers.values()]
    for upstream in upstreams:
        gateways = [g for g in users.get(upstream.ref, []) if g.spec.defaults is not None]
        chosen: dict[str, object] = {}
        for name in POLICY_FIELDS:
            if getattr(upstream.spec, name) is not None:
                continue
            offered = {
                gateway.name: getattr(gateway.spec.defaults, name)
                for gateway in gateways
                if getattr(gateway.spec.defaults, name) is not None
            }
            if len({repr(value) for value in offered.values()}) > 1:
                errors.append(
                    _error(
                        config,
                        gateways[0],
                        ["spec", "defaults", to_camel(name)],
                        f"{upstream.ref} is used by Gateways {', '.join(sorted(offered))}, whose "
                        f"defaults for {to_camel(name)} differ; set it on {upstream.ref} itself",
                    )
                )
            elif offered:
                chosen[name] = next(iter(offered.values()))
        defaults = UpstreamPolicySpec.model_validate(chosen)
        config.policies[upstream.ref] = resolve(upstream.spec, defaults)
    return errors


def _check_router(config: Config, gateway: Gateway) -> list[ConfigError]:
    router = gateway.spec.router
    if not isinstance(router, OrchestratorRouterSpec):
        return []
    provider = config.providers.get(router.provider)
    if provider is None:
        known = ", ".join(sorted(config.providers)) or "none defined"
        return [
            _error(
                config,
                gateway,
                ["spec", "router", "provider"],
                f"no LLMProvider named {router.provider!r} (known: {known})",
            )
        ]
    if provider.spec.api != "openai":
        return [
            _error(
                config,
                gateway,
                ["spec", "router", "provider"],
                f"the routing model must speak the OpenAI chat API; LLMProvider/{provider.name} "
                f"speaks {provider.spec.api}",
            )
        ]
    if router.model not in provider.spec.models:
        known = ", ".join(sorted(provider.spec.models))
        return [
            _error(
                config,
                gateway,
                ["spec", "router", "model"],
                f"LLMProvider/{provider.name} has no model {router.model!r} (its models: {known})",
            )
        ]
    return []


def _error(
    config: Config, owner: Gateway | LLMProvider, location: list[str | int], message: str
) -> ConfigError:
    source = config.sources.get(owner.ref)
    return ConfigError(
        file=source.file if source else None,
        line=source.line_of(location) if source else None,
        object=owner.ref,
        field=format_field_path(location),
        message=message,
    )


def _check_gateway_agents(
    config: Config, gateway: Gateway, spec: AgentGatewaySpec
) -> list[ConfigError]:
    errors: list[ConfigError] = []
    agents = spec.agents
    known = ", ".join(sorted(config.agents)) or "none defined"
    seen: set[str] = set()
    for index, agent in enumerate(agents):
        location: list[str | int] = ["spec", "agents", index, "name"]
        if agent.name not in config.agents:
            errors.append(
                _error(config, gateway, location, f"no Agent named {agent.name!r} (known: {known})")
            )
        if agent.name in seen:
            errors.append(_error(config, gateway, location, f"{agent.name!r} is listed twice"))
        seen.add(agent.name)

    defaults = [index for index, agent in enumerate(agents) if agent.default]
    if len(agents) > 1 and not defaults:
        errors.append(
            _error(
                config,
                gateway,
                ["spec", "agents"],
                "mark exactly one agent `default: true`; it serves requests nothing else fits",
            )
        )
    for index in defaults[1:]:
        errors.append(
            _error(
                config,
                gateway,
                ["spec", "agents", index, "default"],
                f"only one default agent per Gateway; {agents[defaults[0]].name!r} is already it",
            )
        )
    return errors


def _check_ports(config: Config) -> list[ConfigError]:
    counts = Counter(gateway.spec.port for gateway in config.gateways.values())
    errors: list[ConfigError] = []
    for gateway in config.gateways.values():
        port = gateway.spec.port
        if counts[port] > 1:
            others = sorted(
                other.ref
                for other in config.gateways.values()
                if other.spec.port == port and other is not gateway
            )
            errors.append(
                _error(
                    config,
                    gateway,
                    ["spec", "port"],
                    f"port {port} is also used by {', '.join(others)}",
                )
            )
    return errors
