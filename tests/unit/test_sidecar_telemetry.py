"""The sidecar's metrics, spans and log lines, piece by piece (the whole path through
Envoy is in tests/integration/test_observability.py)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import grpc
from envoy.data.accesslog.v3 import accesslog_pb2
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc
from google.protobuf import duration_pb2, struct_pb2
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from meshroute.api import contract
from meshroute.ext_proc.access_log import AccessLogReceiver
from meshroute.ext_proc.chat_request import parse_chat_request
from meshroute.ext_proc.metrics import SidecarMetrics
from meshroute.ext_proc.telemetry import (
    capture_content,
    child_span,
    context_from_metadata,
    outgoing_headers,
    request_attributes,
    tracing,
)
from meshroute.lifecycle import REQUEST_ID, JsonFormatter, TextFormatter, add_request_context

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def samples(metrics: SidecarMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, parsed back as Prometheus reads it."""
    parsed = text_string_to_metric_families(metrics.exposition().decode())
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in parsed
        for sample in family.samples
    }


def test_decisions_are_counted_by_gateway_target_and_reason() -> None:
    metrics = SidecarMetrics()
    metrics.decided("travel", "flights", "embedded")
    metrics.decided("travel", "flights", "embedded")
    metrics.decided(
        "travel", "weather", "fallback", cause="timeout", detail="2s", model_seconds=2.0
    )
    found = samples(metrics)
    key = (("gateway", "travel"), ("reason", "embedded"), ("target", "flights"))
    assert found[("meshroute_routing_decisions_total", key)] == 2
    fallback = (("gateway", "travel"), ("reason", "fallback"), ("target", "weather"))
    assert found[("meshroute_routing_decisions_total", fallback)] == 1
    cause = (("cause", "timeout"), ("gateway", "travel"))
    assert found[("meshroute_orchestrator_errors_total", cause)] == 1
    assert found[("meshroute_orchestrator_seconds_count", (("gateway", "travel"),))] == 1


def log_entry(
    agent: str | None, code: int, seconds: float, usage: dict[str, object] | None
) -> accesslog_pb2.HTTPAccessLogEntry:
    entry = accesslog_pb2.HTTPAccessLogEntry()
    if agent:
        entry.request.request_headers[contract.AGENT_HEADER] = agent
    entry.response.response_code.value = code
    entry.common_properties.upstream_cluster = "agent_flights"
    entry.common_properties.time_to_last_downstream_tx_byte.CopyFrom(
        duration_pb2.Duration(nanos=int(seconds * 1e9))
    )
    if usage is not None:
        metadata = struct_pb2.Struct()
        metadata.update(usage)
        entry.common_properties.metadata.filter_metadata[
            contract.USAGE_METADATA_NAMESPACE
        ].CopyFrom(metadata)
    return entry


def test_access_log_entries_become_request_duration_and_token_metrics() -> None:
    metrics = SidecarMetrics()
    receiver = AccessLogReceiver(metrics)
    usage = {
        contract.USAGE_INPUT_TOKENS: 12,
        contract.USAGE_OUTPUT_TOKENS: 30,
        contract.USAGE_RESPONSE_MODEL: "demo-1",
    }
    receiver.record("travel", log_entry("flights", 200, 0.2, usage))
    receiver.record("travel", log_entry("flights", 503, 0.01, None))
    receiver.record("travel", log_entry(None, 0, 0.0, None))  # no response, no decision
    found = samples(metrics)
    ok = (("gateway", "travel"), ("status", "2xx"), ("target", "flights"))
    assert found[("meshroute_requests_total", ok)] == 1
    failed = (("gateway", "travel"), ("status", "5xx"), ("target", "flights"))
    assert found[("meshroute_requests_total", failed)] == 1
    nothing = (("gateway", "travel"), ("status", "none"), ("target", "agent_flights"))
    assert found[("meshroute_requests_total", nothing)] == 1
    duration = (("gateway", "travel"), ("target", "flights"))
    assert found[("gen_ai_client_operation_duration_seconds_count", duration)] == 2
    assert abs(found[("gen_ai_client_operation_duration_seconds_sum", duration)] - 0.21) < 1e-6
    tokens = {
        labels: value
        for (name, labels), value in found.items()
        if name == "gen_ai_client_token_usage_sum"
    }
    assert tokens == {
        (
            ("gateway", "travel"),
            ("gen_ai_response_model", "demo-1"),
            ("gen_ai_token_type", "input"),
            ("target", "flights"),
        ): 12,
        (
            ("gateway", "travel"),
            ("gen_ai_response_model", "demo-1"),
            ("gen_ai_token_type", "output"),
            ("target", "flights"),
        ): 30,
    }


def test_the_trace_context_envoy_sends_is_the_parent_and_is_passed_on() -> None:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    parent = context_from_metadata([("traceparent", TRACEPARENT), ("x-meshroute-gateway", "g")])
    with tracer.start_as_current_span("child", context=parent):
        headers = outgoing_headers()
    [span] = exporter.get_finished_spans()
    assert format(span.context.trace_id, "032x") == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert headers["traceparent"].split("-")[1] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert headers["traceparent"].split("-")[2] == format(span.context.span_id, "016x")


def test_with_tracing_off_no_span_is_begun() -> None:
    """The sidecar runs here without an OTLP endpoint: every span on the request path
    is one shared stand-in that records nothing and allocates nothing per request."""
    assert not tracing()
    with child_span("parse request") as first, child_span("routing decision") as second:
        assert first is second
        assert not first.is_recording()
        assert not first.get_span_context().is_valid  # nothing to pass on


def test_span_attributes_carry_agentic_signals_but_no_text_by_default() -> None:
    body = {
        "model": "any",
        "max_tokens": 100,
        "tools": [{"type": "function", "function": {"name": "get_weather"}}],
        "messages": [
            {"role": "user", "content": "secret plan X-17"},
            {
                "role": "assistant",
                "tool_calls": [{"id": "1", "type": "function", "function": {"name": "f"}}],
            },
            {"role": "tool", "tool_call_id": "1", "content": "sunny"},
        ],
    }
    attributes = request_attributes(parse_chat_request(json.dumps(body).encode()))
    assert attributes["meshroute.request.tools"] == 1
    assert attributes["meshroute.request.tool_calls"] == 1
    assert attributes["meshroute.request.tool_results"] == 1
    assert attributes["gen_ai.request.model"] == "any"
    assert attributes["gen_ai.request.max_tokens"] == 100
    assert "X-17" not in json.dumps(attributes)
    assert not capture_content({})
    assert capture_content({"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "True"})


def test_log_lines_name_the_request_and_trace() -> None:
    record = logging.LogRecord(
        "meshroute.ext_proc", logging.WARNING, "", 0, "slow %s", ("x",), None
    )
    provider = TracerProvider()
    token = REQUEST_ID.set("req-42")
    try:
        with trace.use_span(provider.get_tracer("t").start_span("s"), end_on_exit=True) as span:
            add_request_context(record)
            trace_id = format(span.get_span_context().trace_id, "032x")
    finally:
        REQUEST_ID.reset(token)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "slow x"
    assert line["level"] == "warning"
    assert line["request_id"] == "req-42"
    assert line["trace_id"] == trace_id
    assert TextFormatter("%(message)s").format(record) == "slow x [request req-42]"


async def test_the_access_log_stream_is_ended_after_its_entries_and_a_new_one_counts_on() -> None:
    """Envoy keeps one access-log stream open for ever, and grpc holds what a call
    received until it ends: the sidecar ends each stream after a bounded number of
    entries, and Envoy's next flush opens a new one."""
    metrics = SidecarMetrics()
    server = grpc.aio.server()
    als_pb2_grpc.add_AccessLogServiceServicer_to_server(
        AccessLogReceiver(metrics, entries_per_stream=3), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    sent = asyncio.Event()

    async def flushes(count: int) -> AsyncIterator[als_pb2.StreamAccessLogsMessage]:
        for index in range(count):
            message = als_pb2.StreamAccessLogsMessage()
            if index == 0:
                message.identifier.log_name = "travel"
            message.http_logs.log_entry.append(log_entry("flights", 200, 0.1, None))
            yield message
        await sent.wait()  # a stream Envoy would keep open

    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = als_pb2_grpc.AccessLogServiceStub(channel)
            first = await asyncio.wait_for(stub.StreamAccessLogs(flushes(3)), timeout=30)
            second = await asyncio.wait_for(stub.StreamAccessLogs(flushes(3)), timeout=30)
    finally:
        sent.set()
        await server.stop(grace=0)
    assert first == second == als_pb2.StreamAccessLogsResponse()
    ok = (("gateway", "travel"), ("status", "2xx"), ("target", "flights"))
    assert samples(metrics)[("meshroute_requests_total", ok)] == 6
