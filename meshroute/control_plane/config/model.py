"""The config kinds (Agent, Gateway) as pydantic models, shaped like Kubernetes objects.

Field names are camelCase in YAML (as in every Kubernetes object) and snake_case in
Python. Unknown fields are errors: a misspelt `timout` that silently did nothing
would be worse than a refusal. Every field has a default where a sensible one exists,
so a minimal Agent is a description and one endpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Discriminator,
    Field,
    PlainSerializer,
    StringConstraints,
    Tag,
    field_validator,
    model_validator,
)

from meshroute.control_plane.config.base import Spec
from meshroute.control_plane.config.errors import Source
from meshroute.control_plane.config.policies import ResolvedPolicy, UpstreamPolicySpec
from meshroute.control_plane.config.units import ByteSize, Duration, PositiveDuration

API_VERSION = "meshroute.io/v1alpha1"

# A DNS-1123 label, as Kubernetes requires of most object names. Names end up in
# cluster names, header values and stat names, so the strict form keeps them safe.
Name = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63),
]
NonEmptyText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


@dataclass(frozen=True)
class Endpoint:
    """One upstream address, from a URL such as "http://flights.travel.svc:8080"."""

    scheme: Literal["http", "https"]
    host: str
    port: int
    base_path: str = ""
    """A path prefix the upstream's API lives under (providers only), without a
    trailing slash: "https://api.groq.com/openai" has base_path "/openai"."""

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def is_ip(self) -> bool:
        import ipaddress

        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.base_path}"


def parse_endpoint(value: object) -> Endpoint:
    """scheme://host[:port], nothing more: an agent's path belongs in `path`."""
    endpoint = parse_base_url(value)
    if endpoint.base_path:
        raise ValueError(
            f"{value!r}: an endpoint is scheme, host and port only; put the path in `path`"
        )
    return endpoint


def parse_base_url(value: object) -> Endpoint:
    """scheme://host[:port][/base/path], as providers' API base URLs are written."""
    if isinstance(value, Endpoint):
        return value
    if not isinstance(value, str):
        raise ValueError("an endpoint is a URL such as 'http://flights.travel.svc:8080'")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{value!r}: an endpoint URL must start with http:// or https://")
    if not parts.hostname:
        raise ValueError(f"{value!r}: the endpoint URL has no host")
    if parts.query or parts.fragment:
        raise ValueError(f"{value!r}: an endpoint URL has no query or fragment")
    if parts.username or parts.password:
        raise ValueError(f"{value!r}: credentials do not belong in an endpoint URL")
    try:
        port = parts.port
    except ValueError as error:
        raise ValueError(f"{value!r}: {error}") from None
    scheme: Literal["http", "https"] = "https" if parts.scheme == "https" else "http"
    return Endpoint(
        scheme=scheme,
        host=parts.hostname,
        port=port or (443 if scheme == "https" else 80),
        base_path=parts.path.rstrip("/"),
    )


def parse_collector_endpoint(value: object) -> Endpoint:
    """scheme://host:port of an OpenTelemetry collector (OTLP over gRPC). The port is
    required: OTLP/gRPC listens on 4317, and a default of 80 or 443 would only ever be
    a silent mistake."""
    endpoint = parse_endpoint(value)
    if isinstance(value, str) and urlsplit(value.strip()).port is None:
        raise ValueError(f"{value!r}: give the collector's port, e.g. 'http://otel-collector:4317'")
    return endpoint


EndpointUrl = Annotated[
    Endpoint, BeforeValidator(parse_endpoint), PlainSerializer(str, return_type=str)
]
CollectorUrl = Annotated[
    Endpoint, BeforeValidator(parse_collector_endpoint), PlainSerializer(str, return_type=str)
]
BaseUrl = Annotated[
    Endpoint, BeforeValidator(parse_base_url), PlainSerializer(str, return_type=str)
]


class ObjectMeta(Spec):
    name: Name
    namespace: Name | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    """Accepted and ignored, so files written for `kubectl apply` load as they are."""


class _Object(Spec):
    """What every kind shares: apiVersion, kind, metadata, spec."""

    api_version: Literal["meshroute.io/v1alpha1"] = Field(alias="apiVersion")
    metadata: ObjectMeta

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def ref(self) -> str:
        """`Kind/name`, the way errors and logs name an object."""
        return f"{type(self).__name__}/{self.metadata.name}"


# ---------------------------------------------------------------------------- Agent


class VariantSpec(Spec):
    """One named set of endpoints taking a share of the agent's traffic (canary, A/B)."""

    name: Name
    weight: int = Field(ge=0, le=10_000)
    """Relative share: weights 90 and 10 split traffic 90/10."""
    endpoints: list[EndpointUrl] = Field(min_length=1)


class AgentSpec(UpstreamPolicySpec):
    description: NonEmptyText
    """What the agent does, in prose; the router reads it."""
    examples: list[NonEmptyText] = Field(default_factory=list)
    """Utterances the agent serves; they sharpen routing."""
    endpoints: list[EndpointUrl] = Field(default_factory=list)
    """Where the agent runs; or give `variants` instead."""
    variants: list[VariantSpec] = Field(default_factory=list)
    """Named endpoint sets with weights; the chosen variant is named in the
    x-meshroute-variant response header."""
    path: str = "/v1/chat/completions"
    """The agent's chat-completions path; requests are rewritten to it."""
    timeout: PositiveDuration = timedelta(seconds=60)
    """Idle timeout of one request: how long the agent may stay silent. Streams that
    keep sending are never cut."""

    @field_validator("path")
    @classmethod
    def _absolute_path(cls, path: str) -> str:
        if not path.startswith("/") or any(c in path for c in "?# "):
            raise ValueError("path must start with '/' and hold no query, fragment or space")
        return path

    @model_validator(mode="after")
    def _endpoints_or_variants(self) -> AgentSpec:
        if bool(self.endpoints) == bool(self.variants):
            raise ValueError("give `endpoints` or `variants` (exactly one of them)")
        names = [variant.name for variant in self.variants]
        if len(set(names)) != len(names):
            raise ValueError("variant names must be unique")
        if self.variants and not any(variant.weight for variant in self.variants):
            raise ValueError("at least one variant needs a weight above zero")
        schemes = {endpoint.scheme for endpoint in self.all_endpoints}
        if len(schemes) > 1:
            raise ValueError("all endpoints of an agent use one scheme: all http or all https")
        endpoint_sets = [self.endpoints] + [variant.endpoints for variant in self.variants]
        for endpoints in endpoint_sets:
            if schemes == {"https"} and len({endpoint.host for endpoint in endpoints}) > 1:
                raise ValueError(
                    "https endpoints of one agent (or variant) share one hostname, the name "
                    "their certificate is checked against; use variants for different names"
                )
        return self

    @property
    def all_endpoints(self) -> list[Endpoint]:
        return self.endpoints + [e for variant in self.variants for e in variant.endpoints]


class Agent(_Object):
    kind: Literal["Agent"] = "Agent"
    spec: AgentSpec


# ---------------------------------------------------------------------- LLMProvider


class SecretKeyRef(Spec):
    """One key of a Kubernetes Secret (mounted as files: a directory per Secret)."""

    name: Name
    key: NonEmptyText


EnvVarName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class KeySource(Spec):
    """Where a key is read from, by the control plane only (credentials.py): shared by
    provider keys and Gateway client keys, so both are read, checked and hidden alike."""

    from_env: EnvVarName | None = None
    """An environment variable of the control plane."""
    secret_ref: SecretKeyRef | None = None
    """A Kubernetes Secret's key, read from the control plane's secrets directory."""


class AuthSpec(KeySource):
    """Where the provider's API key comes from: exactly one of the three."""

    passthrough: bool = False
    """Forward the client's own key instead of injecting one."""

    @model_validator(mode="after")
    def _exactly_one(self) -> AuthSpec:
        given = [self.from_env is not None, self.secret_ref is not None, self.passthrough]
        if sum(given) != 1:
            raise ValueError("give exactly one of `fromEnv`, `secretRef`, `passthrough: true`")
        return self


ProviderApi = Literal["openai", "azure-openai", "anthropic"]


class LLMProviderSpec(UpstreamPolicySpec):
    api: ProviderApi = "openai"
    """The API the provider speaks. `openai` covers every OpenAI-compatible server
    (OpenAI, vLLM, Ollama, LiteLLM, ...)."""
    endpoint: BaseUrl
    """The API's base URL, e.g. "https://api.openai.com" or "http://vllm.ml.svc:8000";
    a path prefix is kept ("https://api.groq.com/openai")."""
    models: dict[NonEmptyText, NonEmptyText] = Field(min_length=1)
    """Model names clients use -> the model id (for azure-openai: the deployment) the
    provider expects."""
    api_version: NonEmptyText | None = None
    """azure-openai only: the `api-version` query parameter, e.g. "2024-10-21"."""
    timeout: PositiveDuration = timedelta(seconds=60)
    """Idle timeout of one call to the provider."""
    auth: AuthSpec | None = None
    """The API key Envoy injects for this provider (never logged, never rendered)."""

    @model_validator(mode="after")
    def _azure_needs_a_version(self) -> LLMProviderSpec:
        if self.api == "azure-openai" and self.api_version is None:
            raise ValueError("api azure-openai needs `apiVersion` (e.g. '2024-10-21')")
        if self.api != "azure-openai" and self.api_version is not None:
            raise ValueError("`apiVersion` only applies to api azure-openai")
        if "auto" in self.models:
            raise ValueError("'auto' is reserved for preference routing; name the model otherwise")
        return self


class LLMProvider(_Object):
    kind: Literal["LLMProvider"] = "LLMProvider"
    spec: LLMProviderSpec


# -------------------------------------------------------------------------- Gateway


class GatewayAgent(Spec):
    """One agent a Gateway may route to."""

    name: Name
    description: NonEmptyText | None = None
    """Overrides the Agent's description for this Gateway's router."""
    default: bool = False
    """Serves requests nothing else fits. Exactly one per Gateway (implied when the
    Gateway lists a single agent)."""


class EmbeddedRouterSpec(Spec):
    """Route inside the ext_proc process from descriptions and examples."""

    type: Literal["embedded"] = "embedded"
    min_score: float = Field(default=0.1, ge=0.0, le=1.0)
    """Below this similarity a request goes to the default agent."""


class DecisionCacheSpec(Spec):
    """Same gateway, same conversation: same decision, without asking the model again."""

    enabled: bool = True
    ttl: Duration = timedelta(seconds=60)
    max_entries: int = Field(default=10_000, ge=1, le=10_000_000)


class OrchestratorRouterSpec(Spec):
    """Ask a routing model (an LLMProvider) which agent or agents serve a request."""

    type: Literal["orchestrator"]
    provider: Name
    """The LLMProvider serving the routing model."""
    model: NonEmptyText
    """One of that provider's `models`."""
    timeout: PositiveDuration = timedelta(seconds=2)
    """The whole budget for a routing call; after it the default agent serves."""
    max_turns: int = Field(default=16, ge=1, le=1000)
    """How many of the latest conversation turns the model sees."""
    max_tokens: int = Field(default=8192, ge=64, le=1_000_000)
    """About how many tokens of conversation the model sees (estimated as chars / 4)."""
    max_concurrency: int = Field(default=64, ge=1, le=100_000)
    """Routing calls in flight per sidecar process; more wait within `timeout`."""
    cache: DecisionCacheSpec = Field(default_factory=DecisionCacheSpec)


RouterSpec = Annotated[EmbeddedRouterSpec | OrchestratorRouterSpec, Field(discriminator="type")]


class TracingSpec(Spec):
    """Envoy's tracing for one Gateway. What is left out comes from the control plane's
    OpenTelemetry environment (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_SAMPLER...);
    with no endpoint here or there, the Gateway is not traced."""

    endpoint: CollectorUrl | None = None
    """The OpenTelemetry collector Envoy sends this Gateway's spans to, over OTLP/gRPC,
    e.g. "http://otel-collector.observability.svc:4317" (https: TLS checked against the
    system CA bundle)."""
    sampling_ratio: float | None = Field(default=None, ge=0.0, le=1.0)
    """The share of new traces kept, 0.0 to 1.0; a request that arrives inside a trace
    follows its caller's decision."""


class ClientTimeoutsSpec(Spec):
    """How long a client may take to send its request, so a slow or stalled sender
    cannot hold a connection and its buffers for ever (Envoy answers 408). None of
    them cuts a long response: idle timers restart with every byte, and the upload
    timer stops once the request goes upstream."""

    headers: PositiveDuration = timedelta(seconds=10)
    """From the request's first byte until its headers are complete."""
    idle: PositiveDuration = timedelta(minutes=5)
    """Nothing moving either way on a request for this long ends it. Once the request
    is routed, the agent's or provider's own `timeout` applies instead."""
    upload: PositiveDuration = timedelta(minutes=5)
    """Receiving the whole request, beyond the time it legitimately waits for the
    routing decision (and for the earlier agents of a sequence)."""


class ClientKeySpec(KeySource):
    """One client's API key for a Gateway: `fromEnv` or `secretRef`, exactly one."""

    client: Name
    """Who holds the key: named in access logs, and sent upstream in the
    x-meshroute-client header (never the key itself)."""

    @model_validator(mode="after")
    def _exactly_one(self) -> ClientKeySpec:
        if (self.from_env is None) == (self.secret_ref is None):
            raise ValueError("give exactly one of `fromEnv`, `secretRef`")
        return self


def _check_jwks_uri(value: str) -> str:
    """An http(s) URL with a host: the URL Envoy fetches the keys from, kept as written
    (its Host header and path are the issuer's business)."""
    parse_base_url(value)
    return value.strip()


JwksUri = Annotated[str, AfterValidator(_check_jwks_uri)]


class JwtSpec(Spec):
    """Accept JSON Web Tokens signed by one issuer (Envoy's jwt_authn checks the
    signature, `iss`, `aud`, `exp` and `nbf`). Clients send the token as
    `Authorization: Bearer <token>` or `x-api-key: <token>`."""

    issuer: NonEmptyText
    """The `iss` claim tokens must carry, e.g. "https://issuer.example"."""
    audiences: list[NonEmptyText] = Field(min_length=1)
    """Tokens must name one of these in `aud`. Required: without it, a token the
    issuer made for any other service would open this Gateway too."""
    jwks: NonEmptyText | None = None
    """The issuer's public keys, inline, as a JWKS document (`{"keys": [...]}`)."""
    jwks_uri: JwksUri | None = None
    """Where to fetch the JWKS from, e.g.
    "https://issuer.example/.well-known/jwks.json" (https: checked against the
    system CA bundle, with SNI)."""
    jwks_cache_duration: PositiveDuration = timedelta(minutes=5)
    """How long fetched keys are kept before Envoy fetches them again (`jwksUri`)."""

    @field_validator("jwks")
    @classmethod
    def _a_key_set(cls, jwks: str | None) -> str | None:
        if jwks is None:
            return None
        try:
            document = json.loads(jwks)
        except (ValueError, RecursionError):  # RecursionError: nested past json's limit
            raise ValueError('`jwks` is a JSON document: {"keys": [...]}') from None
        keys = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(keys, list) or not keys:
            raise ValueError('`jwks` needs a non-empty `keys` list: {"keys": [...]}')
        return jwks

    @model_validator(mode="after")
    def _one_key_source(self) -> JwtSpec:
        if (self.jwks is None) == (self.jwks_uri is None):
            raise ValueError("give exactly one of `jwks`, `jwksUri`")
        return self

    @property
    def jwks_endpoint(self) -> Endpoint | None:
        """Scheme, host and port of `jwksUri`: the cluster Envoy fetches it through."""
        return None if self.jwks_uri is None else parse_base_url(self.jwks_uri)


class GatewayAuthSpec(Spec):
    """Who may call a Gateway: API keys, or JWTs; exactly one. Requests without a valid
    credential get 401 before they reach the routing sidecar or any upstream."""

    api_keys: list[ClientKeySpec] | None = Field(default=None, min_length=1)
    """Accepted keys, one per client. Clients send theirs as
    `Authorization: Bearer <key>` (OpenAI SDKs) or `x-api-key: <key>` (Anthropic
    SDKs); the key is removed before the request goes upstream."""
    jwt: JwtSpec | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> GatewayAuthSpec:
        if (self.api_keys is None) == (self.jwt is None):
            raise ValueError("give exactly one of `apiKeys`, `jwt`")
        clients = [key.client for key in self.api_keys or []]
        if len(set(clients)) != len(clients):
            raise ValueError("client names in `apiKeys` must be unique")
        return self


class _GatewayCommon(Spec):
    port: int = Field(ge=1, le=65535)
    router: RouterSpec = Field(default_factory=EmbeddedRouterSpec)
    defaults: UpstreamPolicySpec | None = None
    """Policies for the agents and providers this Gateway uses that do not set their own."""
    max_request_bytes: Annotated[ByteSize, Field(le=2**30)] = 8 * 2**20
    """Largest request body accepted; larger ones get 413."""
    tracing: TracingSpec | None = None
    """Overrides the control plane's OpenTelemetry environment for this Gateway."""
    client_timeouts: ClientTimeoutsSpec = Field(default_factory=ClientTimeoutsSpec)
    auth: GatewayAuthSpec | None = None
    """Who may call this Gateway (API keys or JWTs); absent: anyone who can reach it."""


class AgentGatewaySpec(_GatewayCommon):
    """A gateway in front of agents: each chat request goes to the agent(s) that fit."""

    type: Literal["agent"] = "agent"
    agents: list[GatewayAgent] = Field(min_length=1)
    allow_client_pinning: bool = False
    """Let clients choose the agent with an x-meshroute-agent header (reason
    `pinned`). Off by default: the gateway strips the header."""
    failure_mode: Literal["closed", "open"] = "closed"
    """When the routing sidecar cannot be reached: `closed` answers 503, `open` sends
    the request to the default agent."""

    @property
    def default_agent(self) -> str:
        """The default agent's name; the config loader guarantees there is exactly one."""
        if len(self.agents) == 1:
            return self.agents[0].name
        return next(agent.name for agent in self.agents if agent.default)


class RoutingPreference(Spec):
    """For `model: auto`: what kind of request should go to which models."""

    name: NonEmptyText
    description: NonEmptyText
    """What requests this preference is for; the router reads it."""
    models: list[NonEmptyText] = Field(min_length=1)
    """Model names or aliases, best first; the first one serves."""


class ModelGatewaySpec(_GatewayCommon):
    """A gateway in front of LLM providers, for OpenAI and Anthropic clients alike.

    It serves every model of every LLMProvider by the name in the provider's
    `models`, plus the aliases here, plus `auto`.
    """

    type: Literal["model"]
    default_model: NonEmptyText
    """Serves requests that name no model (a model name or an alias)."""
    model_aliases: dict[NonEmptyText, NonEmptyText] = Field(default_factory=dict)
    """Extra names -> model names, e.g. {fast: gpt-4o-mini}."""
    routing_preferences: list[RoutingPreference] = Field(default_factory=list)
    """For `model: auto`: routed by this gateway's router over the descriptions."""

    @model_validator(mode="after")
    def _auto_is_reserved(self) -> ModelGatewaySpec:
        if "auto" in self.model_aliases:
            raise ValueError("'auto' is reserved for preference routing")
        names = [preference.name for preference in self.routing_preferences]
        if len(set(names)) != len(names):
            raise ValueError("routing preference names must be unique")
        return self


def _gateway_type(value: object) -> str:
    if isinstance(value, dict):
        return str(value.get("type", "agent"))
    return str(getattr(value, "type", "agent"))


GatewaySpec = Annotated[
    Annotated[AgentGatewaySpec, Tag("agent")] | Annotated[ModelGatewaySpec, Tag("model")],
    Discriminator(_gateway_type),
]


class Gateway(_Object):
    kind: Literal["Gateway"] = "Gateway"
    spec: GatewaySpec


Object = Agent | LLMProvider | Gateway
KINDS: dict[str, type[Object]] = {"Agent": Agent, "LLMProvider": LLMProvider, "Gateway": Gateway}


@dataclass(frozen=True)
class Config:
    """A whole, checked configuration: every object, by kind and name."""

    agents: dict[str, Agent]
    gateways: dict[str, Gateway]
    providers: dict[str, LLMProvider] = field(default_factory=dict)
    policies: dict[str, ResolvedPolicy] = field(default_factory=dict)
    """`Kind/name` of every Agent and LLMProvider -> the policy Envoy applies to it."""

    @property
    def model_names(self) -> dict[str, LLMProvider]:
        """Every model name clients may use (before aliases) -> the provider serving it."""
        return {
            name: provider
            for provider in sorted(self.providers.values(), key=lambda p: p.name)
            for name in provider.spec.models
        }

    sources: dict[str, Source] = field(default_factory=dict, repr=False, compare=False)
    """`Kind/name` -> where it was written; for error messages."""
