"""The sidecar's spans: joined to Envoy's trace, and passed on to what it calls.

Envoy starts the trace (its OpenTelemetry tracer, configured by the control plane)
and hands its context to the sidecar in the ext_proc stream's gRPC metadata
(`traceparent`). The sidecar's spans (request parse, routing decision, routing-model
call, sequence steps) are children of it, and the sidecar's own HTTP calls carry
`traceparent` onward, so one trace shows the whole request.

Configured by the standard OpenTelemetry environment (`OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_TRACES_SAMPLER`, `OTEL_SERVICE_NAME`...). Without an endpoint nothing is set up,
and the request path begins no span at all (`child_span` hands out one shared
stand-in): OpenTelemetry's no-op spans and the context extraction for them cost the
sidecar 8-15% of its CPU per request under load (two interleaved A/B pairs, alias and
embedded paths at concurrency 32).

Prompt and completion text never goes into spans unless
`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true` (the GenAI semantic
conventions' own switch).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from opentelemetry import context, propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind

from meshroute.ext_proc.chat_request import ChatRequest

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

TRACER = trace.get_tracer("meshroute.ext_proc")
"""Resolves to the configured provider once `configure_tracing` has run."""

LOG = logging.getLogger("meshroute.ext_proc")

SERVICE_NAME = "meshroute-ext-proc"
CAPTURE_CONTENT_VARIABLE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


class _Switch:
    on = False


_TRACING = _Switch()
"""On once configure_tracing has set up an exporter; until then no span is even begun."""

_NO_SPAN: AbstractContextManager[Span] = nullcontext(trace.INVALID_SPAN)


def tracing() -> bool:
    return _TRACING.on


def child_span(name: str, kind: SpanKind = SpanKind.INTERNAL) -> AbstractContextManager[Span]:
    """A span under the current one, made current; with tracing off, one shared
    stand-in that records nothing (`is_recording()` is False, as a no-op span's)."""
    if not _TRACING.on:
        return _NO_SPAN
    return TRACER.start_as_current_span(name, kind=kind)


def tracing_endpoint(environ: Mapping[str, str]) -> str | None:
    return next((environ[name] for name in _ENDPOINT_VARIABLES if environ.get(name)), None)


def configure_tracing(environ: Mapping[str, str] = os.environ) -> TracerProvider | None:
    """Export spans over OTLP/gRPC when the environment names a collector; returns the
    provider (shut it down at exit to flush), or None when tracing is off."""
    endpoint = tracing_endpoint(environ)
    if endpoint is None:
        return None
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    except ImportError as error:
        # Routing matters more than spans: say exactly what is wrong and go on without them.
        LOG.error(
            "sidecar tracing is off: the OTLP exporter cannot load (%s). xds-protos "
            "overwrites opentelemetry-proto's files when installed after it "
            "(grpc/grpc#42926); reinstall it: pip install --no-deps --force-reinstall "
            "opentelemetry-proto",
            error,
        )
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME", SERVICE_NAME)})
    provider = TracerProvider(resource=resource)  # the sampler comes from OTEL_TRACES_SAMPLER
    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _TRACING.on = True
    return provider


def capture_content(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get(CAPTURE_CONTENT_VARIABLE, "").strip().lower() == "true"


CAPTURE_CONTENT = capture_content()


def context_from_metadata(metadata: Iterable[tuple[str, Any]] | None) -> Context:
    """The trace context Envoy put in the ext_proc stream's metadata (or none)."""
    carrier = {key: str(value) for key, value in metadata or () if not key.endswith("-bin")}
    return propagate.extract(carrier)


def outgoing_headers() -> dict[str, str]:
    """`traceparent` (and `tracestate`) for a call made inside the current span."""
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers


def attach(ctx: Context) -> None:
    """Make `ctx` current for the rest of the running task (see server.Process)."""
    context.attach(ctx)


def request_attributes(request: ChatRequest) -> dict[str, Any]:
    """What a span says about a chat request: sizes and agentic signals (tools offered,
    tool calls made earlier, tool results sent back), never its text unless content
    capture is on. Only worth computing when the span records."""
    payload = request.payload
    messages = payload.get("messages") or []
    tool_calls = sum(
        len(message.get("tool_calls") or [])
        for message in messages
        if isinstance(message, dict) and message.get("role") == "assistant"
    )
    tool_results = sum(
        1 for message in messages if isinstance(message, dict) and message.get("role") == "tool"
    )
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "meshroute.request.messages": len(messages),
        "meshroute.request.tools": len(payload.get("tools") or []),
        "meshroute.request.tool_calls": tool_calls,
        "meshroute.request.tool_results": tool_results,
        "meshroute.request.stream": bool(payload.get("stream")),
    }
    model = payload.get("model")
    if isinstance(model, str) and model:
        attributes["gen_ai.request.model"] = model
    max_tokens = payload.get("max_tokens") or payload.get("max_completion_tokens")
    if isinstance(max_tokens, int):
        attributes["gen_ai.request.max_tokens"] = max_tokens
    if CAPTURE_CONTENT:
        attributes["gen_ai.input.messages"] = json.dumps(
            [{"role": turn.role, "content": turn.text} for turn in request.turns]
        )
    return attributes
