"""Model Gateway -> RouteConfiguration.

Three ways a request leaves a model gateway:

* The fast path: the body names a model by the name its provider uses too, in the
  API the provider speaks. json_to_metadata has put that name in metadata, a route
  matches it, and the sidecar is never asked (ext_proc is off on these routes).
* The sidecar's way: an alias, `auto`, no model, or a provider of the other API.
  The sidecar rewrites the body, sets `:path` and x-meshroute-provider, and a
  per-provider route sends the request on.
* Local answers: the model list (built here, once), 404, 405.
"""

from __future__ import annotations

import json

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.type.matcher.v3 import metadata_pb2, string_pb2, value_pb2

from meshroute.api import contract
from meshroute.control_plane.config.model import Config, LLMProvider, ModelGatewaySpec
from meshroute.control_plane.translate import names
from meshroute.control_plane.translate.protos import set_header
from meshroute.control_plane.translate.route_parts import (
    EXT_PROC_OFF,
    echo,
    forward,
    method_is,
    method_not_allowed,
    not_found,
    post_to,
)
from meshroute.control_plane.translate.routes import virtual_host

# The path each provider API serves chat on, under its base URL.
CHAT_PATHS = {
    "openai": contract.CHAT_COMPLETIONS_PATH,
    "anthropic": contract.MESSAGES_PATH,
}
# The client path that speaks each API, for the fast path.
CLIENT_PATHS = CHAT_PATHS
ANTHROPIC_VERSION = "2023-06-01"
# Envoy refuses a route config whose direct response body is larger than this unless
# the config raises the limit (`max_direct_response_body_size_bytes`).
ENVOY_DIRECT_RESPONSE_LIMIT = 4096
# Headers clients authenticate to providers with; removed unless the provider
# passes the client's own key through, so a client's key never reaches a provider
# that Envoy authenticates for.
CLIENT_KEY_HEADERS = ("authorization", "x-api-key", "api-key")


def upstream_path(provider: LLMProvider, model_id: str) -> str:
    """The request path at the provider for `model_id` (Azure's carries the model)."""
    base = provider.spec.endpoint.base_path
    if provider.spec.api == "azure-openai":
        return (
            f"{base}/openai/deployments/{model_id}/chat/completions"
            f"?api-version={provider.spec.api_version}"
        )
    return base + CHAT_PATHS[provider.spec.api]


def model_gateway_routes(
    gateway: str, spec: ModelGatewaySpec, config: Config
) -> route_pb2.RouteConfiguration:
    routes = [
        _fast_route(name, provider, config)
        for name, provider in config.model_names.items()
        if _fast_path_fits(name, provider)
    ]
    routes += [_provider_route(provider, config) for provider in sorted_providers(config)]
    routes += [
        _undecided_route(path) for path in (contract.CHAT_COMPLETIONS_PATH, contract.MESSAGES_PATH)
    ]
    model_list_route = _model_list_route(spec, config)
    routes.append(model_list_route)
    routes += [
        method_not_allowed(contract.CHAT_COMPLETIONS_PATH, "POST"),
        method_not_allowed(contract.MESSAGES_PATH, "POST"),
        method_not_allowed(contract.MODELS_PATH, "GET"),
        not_found(
            f"no such path; this gateway serves POST {contract.CHAT_COMPLETIONS_PATH}, "
            f"POST {contract.MESSAGES_PATH} and GET {contract.MODELS_PATH}"
        ),
    ]
    route_config = virtual_host(names.gateway_route_config(gateway), routes)
    _fit_model_list(route_config, model_list_route)
    return route_config


def _fit_model_list(
    route_config: route_pb2.RouteConfiguration, model_list_route: route_components_pb2.Route
) -> None:
    """GET /v1/models is answered by Envoy from a body held in the route config; with
    more than about 50 models that body passes Envoy's default 4 KiB limit for direct
    responses and Envoy refuses the whole route config. Raise the limit just as far as
    needed (only then, so small configs are unchanged)."""
    size = len(model_list_route.direct_response.body.inline_string.encode())
    if size > ENVOY_DIRECT_RESPONSE_LIMIT:
        route_config.max_direct_response_body_size_bytes.value = size


def sorted_providers(config: Config) -> list[LLMProvider]:
    return [config.providers[name] for name in sorted(config.providers)]


def _fast_path_fits(name: str, provider: LLMProvider) -> bool:
    """Envoy alone can serve a model whose name needs no rewrite, in its own API."""
    return provider.spec.api in CLIENT_PATHS and provider.spec.models[name] == name


def _fast_route(name: str, provider: LLMProvider, config: Config) -> route_components_pb2.Route:
    named = route_components_pb2.RouteMatch(
        path=CLIENT_PATHS[provider.spec.api],
        headers=[method_is("POST")],
        dynamic_metadata=[
            metadata_pb2.MetadataMatcher(
                filter=contract.MODEL_METADATA_NAMESPACE,
                path=[metadata_pb2.MetadataMatcher.PathSegment(key=contract.MODEL_METADATA_KEY)],
                value=value_pb2.ValueMatcher(string_match=string_pb2.StringMatcher(exact=name)),
            )
        ],
    )
    route = route_components_pb2.Route(
        name=f"model_{name}",
        match=named,
        route=_to_provider(provider, config, rewrite_to=upstream_path(provider, name)),
        typed_per_filter_config={names.EXT_PROC_FILTER: EXT_PROC_OFF},
        response_headers_to_add=[
            set_header(contract.MODEL_HEADER, name),
            set_header(contract.PROVIDER_HEADER, provider.name),
            set_header(contract.ROUTE_REASON_HEADER, contract.REASON_MODEL),
        ],
    )
    _authenticate(route, provider)
    return route


def _provider_route(provider: LLMProvider, config: Config) -> route_components_pb2.Route:
    """Where the sidecar's decisions for `provider` go: it has set the path already."""
    chosen = route_components_pb2.HeaderMatcher(
        name=contract.PROVIDER_HEADER,
        string_match=string_pb2.StringMatcher(exact=provider.name),
    )
    route = route_components_pb2.Route(
        name=names.provider_cluster(provider.name),
        match=route_components_pb2.RouteMatch(prefix="/", headers=[chosen]),
        route=_to_provider(provider, config, rewrite_to=None),
        response_headers_to_add=[
            echo(contract.MODEL_HEADER),
            echo(contract.PROVIDER_HEADER),
            echo(contract.ROUTE_REASON_HEADER),
        ],
    )
    _authenticate(route, provider)
    return route


def _to_provider(
    provider: LLMProvider, config: Config, rewrite_to: str | None
) -> route_components_pb2.RouteAction:
    action = forward(rewrite_to, provider.spec.timeout, config.policies[provider.ref])
    action.cluster = names.provider_cluster(provider.name)
    return action


def _authenticate(route: route_components_pb2.Route, provider: LLMProvider) -> None:
    """Provider-specific request headers. Envoy injects the key itself (an upstream
    filter of the provider's cluster); clients' keys are dropped unless passed through."""
    auth = provider.spec.auth
    if auth is None or not auth.passthrough:
        route.request_headers_to_remove.extend(CLIENT_KEY_HEADERS)
    if provider.spec.api == "anthropic":
        route.request_headers_to_add.append(
            base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key="anthropic-version", value=ANTHROPIC_VERSION),
                append_action=base_pb2.HeaderValueOption.ADD_IF_ABSENT,
            )
        )


def _undecided_route(path: str) -> route_components_pb2.Route:
    """Where a request matches before the sidecar has decided; it never leaves here
    with a healthy sidecar, which answers 503 itself when it cannot decide."""
    route = route_components_pb2.Route(name=f"undecided{path}", match=post_to(path))
    route.direct_response.status = 503
    route.direct_response.body.inline_string = "no routing decision was made for this request"
    return route


def model_list(spec: ModelGatewaySpec, config: Config) -> dict[str, object]:
    """GET /v1/models, OpenAI's shape: every model name, alias, and `auto`."""
    entries = [
        {"id": name, "object": "model", "created": 0, "owned_by": provider.name}
        for name, provider in config.model_names.items()
    ]
    entries += [
        {"id": alias, "object": "model", "created": 0, "owned_by": "alias"}
        for alias in sorted(spec.model_aliases)
    ]
    if spec.routing_preferences:
        entries.append(
            {"id": contract.AUTO_MODEL, "object": "model", "created": 0, "owned_by": "router"}
        )
    return {"object": "list", "data": entries}


def _model_list_route(spec: ModelGatewaySpec, config: Config) -> route_components_pb2.Route:
    route = route_components_pb2.Route(
        name="models",
        match=route_components_pb2.RouteMatch(
            path=contract.MODELS_PATH, headers=[method_is("GET")]
        ),
        direct_response=route_components_pb2.DirectResponseAction(status=200),
        typed_per_filter_config={names.EXT_PROC_FILTER: EXT_PROC_OFF},
        response_headers_to_add=[set_header("content-type", "application/json")],
    )
    route.direct_response.body.inline_string = json.dumps(model_list(spec, config))
    return route
