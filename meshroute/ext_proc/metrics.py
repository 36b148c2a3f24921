"""What the sidecar counts, in Prometheus terms, served on its metrics port.

Routing decisions by gateway, target and reason; routing-model latency and failures
by cause; how long the sidecar holds each ext_proc message. Request outcomes, their
duration and token usage come from Envoy's access log stream (see `access_log`), so
nothing on the response path waits for Python to count them.

The registry is this object's own, not prometheus_client's global one, so tests can
run several side by side.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

log = logging.getLogger("meshroute.ext_proc")

# Routing-model calls take tens of milliseconds to seconds.
ORCHESTRATOR_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10)
# Local decisions take microseconds; sequences can hold a request for seconds.
MESSAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 5, 30)
# Whole requests: from a cached answer to a long streamed generation.
REQUEST_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# The GenAI semantic conventions' token buckets (powers of 4).
TOKEN_BUCKETS = tuple(4.0**power for power in range(1, 14))


class SidecarMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.decisions = Counter(
            "meshroute_routing_decisions",
            "Routing decisions, by gateway, target (agent(s) or model) and reason.",
            ["gateway", "target", "reason"],
            registry=self.registry,
        )
        self.orchestrator_seconds = Histogram(
            "meshroute_orchestrator_seconds",
            "Routing-model calls (not cached), success or not, by gateway.",
            ["gateway"],
            buckets=ORCHESTRATOR_BUCKETS,
            registry=self.registry,
        )
        self.orchestrator_errors = Counter(
            "meshroute_orchestrator_errors",
            "Routing-model calls that gave no usable answer, by gateway and cause.",
            ["gateway", "cause"],
            registry=self.registry,
        )
        self.message_seconds = Histogram(
            "meshroute_ext_proc_message_seconds",
            "Time the sidecar took to answer one ext_proc message, by gateway and phase.",
            ["gateway", "phase"],
            buckets=MESSAGE_BUCKETS,
            registry=self.registry,
        )
        self.streams = Counter(
            "meshroute_ext_proc_streams",
            "ext_proc streams by gateway and how they ended: `ended` by the sidecar once "
            "it had given its last answer (the normal case), `closed` by Envoy first, or "
            "`cancelled` (the client or Envoy gave up mid-request).",
            ["gateway", "outcome"],
            registry=self.registry,
        )
        self.requests = Counter(
            "meshroute_requests",
            "Requests Envoy finished, by gateway, target and status class (from its access log).",
            ["gateway", "target", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "gen_ai_client_operation_duration_seconds",
            "Request duration as the client saw it, by gateway and target.",
            ["gateway", "target"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Histogram(
            "gen_ai_client_token_usage",
            "Tokens per request, by gateway, target, token type (input/output) and the model "
            "that answered.",
            ["gateway", "target", "gen_ai_token_type", "gen_ai_response_model"],
            buckets=TOKEN_BUCKETS,
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def decided(
        self,
        gateway: str,
        target: str,
        reason: str,
        *,
        cause: str | None = None,
        detail: str = "",
        model_seconds: float | None = None,
    ) -> None:
        """One routing decision; a fallback (cause set) is also logged once, with why."""
        self.decisions.labels(gateway, target, reason).inc()
        if model_seconds is not None:
            self.orchestrator_seconds.labels(gateway).observe(model_seconds)
        if cause is not None:
            self.orchestrator_errors.labels(gateway, cause).inc()
            log.warning(
                "gateway %s: routing model failed (%s: %s); %s serves",
                gateway,
                cause,
                detail,
                target,
            )
