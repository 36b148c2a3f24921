"""How Envoy treats an upstream: retries, ejection, limits, health checks, balancing, TLS.

Each policy is one small model. Agents and LLMProviders set any of them; a Gateway
may set `defaults` for the agents and providers it uses; what neither sets takes the
built-in default. `resolve` computes the one policy that applies, and the config
loader refuses a config in which two Gateways give one upstream different defaults
(the upstream's cluster is shared, so only one can win).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from meshroute.control_plane.config.base import Spec
from meshroute.control_plane.config.units import Duration, PositiveDuration

RetryCondition = Literal[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "refused-stream",
    "retriable-4xx",
]
StatusCode = Annotated[int, Field(ge=400, le=599)]
# Failures where the request never reached the upstream: always safe to retry.
SAFE_RETRIES: tuple[RetryCondition | StatusCode, ...] = (
    "connect-failure",
    "refused-stream",
    "reset-before-request",
)


class BackoffSpec(Spec):
    base: PositiveDuration = timedelta(milliseconds=25)
    max: PositiveDuration = timedelta(milliseconds=250)


class RetriesSpec(Spec):
    """Retries happen only before the response has started: a stream is never replayed."""

    attempts: int = Field(default=2, ge=0, le=10)
    """Retries after the first try (0 turns retries off)."""
    retry_on: list[RetryCondition | StatusCode] = Field(default_factory=lambda: list(SAFE_RETRIES))
    """Envoy's retry conditions, and status codes such as 429 or 503. The default only
    retries requests that never reached the upstream, since a model call is not free."""
    per_try_timeout: PositiveDuration | None = None
    """A limit per try; none by default, so long streams are not cut."""
    backoff: BackoffSpec = Field(default_factory=BackoffSpec)
    other_host: bool = True
    """Retry on a different host than the ones already tried."""


class OutlierDetectionSpec(Spec):
    """Hosts that keep failing are ejected for a while (Envoy's passive health checking)."""

    consecutive_5xx: int = Field(default=5, ge=1, alias="consecutive5xx")
    consecutive_gateway_failures: int = Field(default=5, ge=1)
    """502, 503, 504 and connection failures in a row."""
    interval: PositiveDuration = timedelta(seconds=10)
    base_ejection_time: PositiveDuration = timedelta(seconds=30)
    max_ejection_percent: int = Field(default=50, ge=0, le=100)


class RetryBudgetSpec(Spec):
    percent: float = Field(default=20.0, gt=0, le=100)
    """Retries in flight, as a percentage of requests in flight."""
    min_concurrency: int = Field(default=3, ge=1)
    """Retries always allowed regardless of the percentage."""


class CircuitBreakerSpec(Spec):
    """Limits beyond which Envoy refuses at once (503) instead of queueing forever."""

    max_connections: int = Field(default=1024, ge=1)
    max_pending_requests: int = Field(default=1024, ge=1)
    max_requests: int = Field(default=1024, ge=1)
    max_retries: int = Field(default=3, ge=0)
    retry_budget: RetryBudgetSpec | None = None
    """Instead of max_retries: a budget relative to the traffic."""


class HealthCheckSpec(Spec):
    """Active HTTP health checking: a host failing it leaves the rotation."""

    path: str = "/healthz"
    interval: PositiveDuration = timedelta(seconds=5)
    timeout: PositiveDuration = timedelta(seconds=1)
    healthy_threshold: int = Field(default=1, ge=1)
    unhealthy_threshold: int = Field(default=3, ge=1)


class HashOnSpec(Spec):
    header: str = Field(min_length=1, pattern=r"^[A-Za-z0-9-]+$")
    """Requests with the same value of this header go to the same host."""


class LoadBalancingSpec(Spec):
    policy: Literal["ROUND_ROBIN", "LEAST_REQUEST", "RING_HASH"] = "LEAST_REQUEST"
    """LEAST_REQUEST suits long, uneven model calls; RING_HASH gives session affinity."""
    hash_on: HashOnSpec | None = None
    """Required with RING_HASH: what a session is."""

    @model_validator(mode="after")
    def _hash_goes_with_ring_hash(self) -> LoadBalancingSpec:
        if self.policy == "RING_HASH" and self.hash_on is None:
            raise ValueError("RING_HASH needs `hashOn: {header: ...}` to know what a session is")
        if self.policy != "RING_HASH" and self.hash_on is not None:
            raise ValueError("`hashOn` only applies to policy RING_HASH")
        return self


class TlsSpec(Spec):
    """How to trust an https upstream. Without it, the system's CA bundle is trusted."""

    ca_file: str | None = None
    """A CA bundle file, as Envoy sees its filesystem."""
    ca_pem: str | None = None
    """A CA bundle, PEM, inline."""

    @model_validator(mode="after")
    def _one_source(self) -> TlsSpec:
        if self.ca_file and self.ca_pem:
            raise ValueError("give `caFile` or `caPem`, not both")
        return self


class UpstreamPolicySpec(Spec):
    """The policies an Agent or LLMProvider may set, and a Gateway may default."""

    retries: RetriesSpec | None = None
    outlier_detection: OutlierDetectionSpec | None = None
    circuit_breaker: CircuitBreakerSpec | None = None
    health_check: HealthCheckSpec | None = None
    load_balancing: LoadBalancingSpec | None = None
    tls: TlsSpec | None = None
    connect_timeout: PositiveDuration | None = None


POLICY_FIELDS = tuple(UpstreamPolicySpec.model_fields)


class ResolvedPolicy(BaseModel):
    """The policy that applies to one upstream, every field decided."""

    model_config = ConfigDict(frozen=True)

    retries: RetriesSpec = Field(default_factory=RetriesSpec)
    outlier_detection: OutlierDetectionSpec = Field(default_factory=OutlierDetectionSpec)
    circuit_breaker: CircuitBreakerSpec = Field(default_factory=CircuitBreakerSpec)
    health_check: HealthCheckSpec | None = None
    """Off unless asked for: not every agent has a health endpoint."""
    load_balancing: LoadBalancingSpec = Field(default_factory=LoadBalancingSpec)
    tls: TlsSpec = Field(default_factory=TlsSpec)
    connect_timeout: Duration = timedelta(seconds=5)


def resolve(own: UpstreamPolicySpec, defaults: UpstreamPolicySpec | None) -> ResolvedPolicy:
    """Own setting, else the Gateway default, else the built-in default, field by field."""
    chosen = {}
    for name in POLICY_FIELDS:
        value = getattr(own, name)
        if value is None and defaults is not None:
            value = getattr(defaults, name)
        if value is not None:
            chosen[name] = value
    return ResolvedPolicy(**chosen)
