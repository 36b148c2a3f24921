"""Traces, metrics and logs of real requests through `meshroute up`.

A stand-in OpenTelemetry collector (the OTLP/gRPC trace service) receives Envoy's
spans and the sidecar's; the metrics endpoints are read as Prometheus reads them.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any, TypeVar

import httpx
import pytest

from tests.support.configs import documents, gateway_yaml, provider_yaml, quickstart_config
from tests.support.metrics import metric_samples, total
from tests.support.orchestrator import StandInOrchestrator
from tests.support.otlp import OtlpReceiver, ReceivedSpan
from tests.support.processes import (
    ManagedProcess,
    free_port,
    meshroute_argv,
    port_open,
)
from tests.support.stack import UpStack
from tests.support.waiting import eventually

T = TypeVar("T")

SECRET_PROMPT = "Is flight LH 400 on time? codeword-PERIWINKLE-91"
"""A prompt whose text must show up in no span, metric or log line."""
KEYS = {
    "DEMO_OPENAI_API_KEY": "sk-obs-openai-4d2e1f",
    "DEMO_ANTHROPIC_API_KEY": "sk-ant-obs-9b8c7a",
}


@pytest.fixture(scope="module")
def collector() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def orchestrator() -> Iterator[StandInOrchestrator]:
    model = StandInOrchestrator().start()
    yield model
    model.close()


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    collector: OtlpReceiver,
    orchestrator: StandInOrchestrator,
) -> Iterator[UpStack]:
    agents_port, models_port = free_port(), free_port()
    agent_gateway, model_gateway = free_port(), free_port()
    started: list[ManagedProcess] = []
    try:
        agents = ManagedProcess(
            "demo-agents", meshroute_argv("demo-agents", "--port", str(agents_port))
        )
        started.append(agents)
        models = ManagedProcess(
            "demo-models",
            meshroute_argv("demo-models", "--require-keys", "--port", str(models_port)),
            env=KEYS,
        )
        started.append(models)
        agents.wait_until(lambda: port_open(agents_port), "demo agents listening")
        models.wait_until(lambda: port_open(models_port), "demo models listening")
        config = quickstart_config(
            tmp_path_factory.mktemp("observability"),
            agent_gateway,
            agents_port,
            models=(model_gateway, models_port),
        )
        # A second agent gateway whose routing model is a stand-in: its calls must
        # carry the request's trace.
        routed_gateway = free_port()
        (config / "routed.yaml").write_text(
            documents(
                provider_yaml(
                    "router", f"http://127.0.0.1:{orchestrator.port}", {"plano": "plano"}
                ),
                gateway_yaml(
                    "routed",
                    routed_gateway,
                    ["weather", "flights"],
                    "weather",
                    extra="router: {type: orchestrator, provider: router, model: plano}",
                ),
            )
        )
        env = {
            **KEYS,
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # the sidecar exports within 0.1 s
        }
        gateways = {"travel": agent_gateway, "llm": model_gateway, "routed": routed_gateway}
        up = UpStack([config], gateways, env=env)
        started.append(up.process)
        yield up
    finally:
        for process in reversed(started):
            process.stop()


def ask(stack: UpStack, text: str) -> httpx.Response:
    response = httpx.post(
        stack.url("travel"), json={"messages": [{"role": "user", "content": text}]}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response


def test_one_request_is_one_trace_across_envoy_and_the_sidecar(
    stack: UpStack, collector: OtlpReceiver
) -> None:
    response = ask(stack, SECRET_PROMPT)
    assert response.headers["x-meshroute-agent"] == "flights"

    def trace_of_request() -> list[ReceivedSpan] | None:
        spans = collector.spans
        decisions = [s for s in spans if s.name == "routing decision"]
        for decision in decisions:
            together = [s for s in spans if s.trace_id == decision.trace_id]
            if {"meshroute-envoy", "meshroute-ext-proc"} <= {s.service for s in together}:
                envoy = [s for s in together if s.service == "meshroute-envoy"]
                if any(s.attributes.get("meshroute.agent") == "flights" for s in envoy):
                    return together
        return None

    spans = eventually(trace_of_request, "Envoy's and the sidecar's spans in one trace")
    decision = next(s for s in spans if s.name == "routing decision")
    assert decision.attributes["meshroute.agents"] == ["flights"]
    assert decision.attributes["meshroute.route_reason"] == "embedded"
    sidecar = next(s for s in spans if s.name == "meshroute ext_proc")
    assert sidecar.attributes["meshroute.gateway"] == "travel"
    # The sidecar's span is a child of one of Envoy's.
    envoy_ids = {s.span_id for s in spans if s.service == "meshroute-envoy"}
    assert sidecar.parent_span_id in envoy_ids
    envoy = next(
        s
        for s in spans
        if s.service == "meshroute-envoy" and s.attributes.get("meshroute.agent") == "flights"
    )
    assert envoy.attributes["meshroute.route_reason"] == "embedded"
    assert envoy.attributes["meshroute.gateway"] == "travel"
    parse = next(s for s in spans if s.name == "parse request")
    assert parse.attributes["meshroute.request.messages"] == 1


def test_the_routing_model_call_is_in_the_trace_and_carries_it(
    stack: UpStack, collector: OtlpReceiver, orchestrator: StandInOrchestrator
) -> None:
    response = httpx.post(
        stack.url("routed"),
        json={"messages": [{"role": "user", "content": "flights: is LH 400 late?"}]},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-meshroute-route-reason"] == "orchestrator"
    traceparent = orchestrator.prompts[-1].traceparent
    assert traceparent is not None
    trace_id = traceparent.split("-")[1]

    def model_call() -> ReceivedSpan | None:
        return next(
            (
                s
                for s in collector.spans
                if s.name == "orchestrator call" and s.trace_id == trace_id
            ),
            None,
        )

    call = eventually(model_call, "the orchestrator call span, in the request's trace")
    assert call.attributes["gen_ai.request.model"] == "plano"
    assert call.attributes["http.response.status_code"] == 200
    decision = eventually(
        lambda: next(
            (s for s in collector.spans if s.name == "routing decision" and s.trace_id == trace_id),
            None,
        ),
        "the decision span",
    )
    assert decision.attributes["meshroute.route_reason"] == "orchestrator"
    assert decision.attributes["meshroute.orchestrator_ms"] > 0
    # Envoy's span for the same request is in the same trace.
    eventually(
        lambda: any(
            s.service == "meshroute-envoy" and s.trace_id == trace_id for s in collector.spans
        ),
        "Envoy's span in the same trace",
    )


def test_each_decision_is_counted_once_and_requests_by_outcome(stack: UpStack) -> None:
    metrics = f"http://127.0.0.1:{stack.metrics_port}/metrics"
    before = total(metric_samples(metrics), "meshroute_routing_decisions_total", gateway="travel")
    for _ in range(3):
        ask(stack, "Will it rain in Paris tomorrow?")
    after = metric_samples(metrics)
    assert total(after, "meshroute_routing_decisions_total", gateway="travel") == before + 3
    assert (
        total(
            after,
            "meshroute_routing_decisions_total",
            gateway="travel",
            target="weather",
            reason="embedded",
        )
        >= 3
    )
    # Envoy's access log stream reaches the sidecar in batches, off the request path.
    eventually(
        lambda: (
            total(
                metric_samples(metrics), "meshroute_requests_total", gateway="travel", status="2xx"
            )
            >= 3
        ),
        "requests counted from Envoy's access log",
    )
    samples = metric_samples(metrics)
    assert total(samples, "gen_ai_client_operation_duration_seconds_count", gateway="travel") >= 3


def test_token_usage_is_read_by_envoy_from_the_responses(stack: UpStack) -> None:
    metrics = f"http://127.0.0.1:{stack.metrics_port}/metrics"
    body: dict[str, Any] = {"model": "fast", "messages": [{"role": "user", "content": "one two"}]}
    reply = httpx.post(stack.url("llm"), json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    usage = reply.json()["usage"]
    streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", stack.url("llm"), json=streamed, timeout=30) as response:
        assert response.status_code == 200
        response.read()

    def input_tokens() -> float:
        return total(
            metric_samples(metrics),
            "gen_ai_client_token_usage_sum",
            gateway="llm",
            gen_ai_token_type="input",
        )

    # Both the JSON answer and the SSE stream report their usage.
    eventually(lambda: input_tokens() >= 2 * usage["prompt_tokens"], "input tokens counted")
    samples = metric_samples(metrics)
    assert (
        total(samples, "gen_ai_client_token_usage_count", gateway="llm", gen_ai_token_type="output")
        >= 2
    )


def test_the_control_plane_reports_pushes_acks_and_who_is_connected(stack: UpStack) -> None:
    health = f"http://127.0.0.1:{stack.health_port}"
    status = httpx.get(f"{health}/status", timeout=10).json()
    version = status["serving_version"]
    kinds = {client["kind"] for client in status["clients"]}
    assert {"envoy", "ext-proc"} <= kinds
    envoy = next(client for client in status["clients"] if client["kind"] == "envoy")
    clusters = next(t for t in envoy["types"] if t["type"] == "clusters")
    assert clusters["acked"] == version
    assert clusters["nacked"] is None
    samples = metric_samples(f"{health}/metrics")
    assert total(samples, "meshroute_xds_pushes_total", type="clusters", node=envoy["node"]) >= 1
    assert total(samples, "meshroute_xds_acks_total", type="listeners", node=envoy["node"]) >= 1
    assert total(samples, "meshroute_xds_nacks_total") == 0
    assert total(samples, "meshroute_xds_clients", kind="envoy") == 1
    assert total(samples, "meshroute_config_version") == float(version)


def test_no_prompt_text_or_key_in_spans_metrics_or_logs(
    stack: UpStack, collector: OtlpReceiver
) -> None:
    ask(stack, SECRET_PROMPT)
    eventually(lambda: any(s.name == "routing decision" for s in collector.spans), "spans")
    secrets = ["PERIWINKLE", *KEYS.values()]
    exposed = [repr(span.attributes) for span in collector.spans] + [
        httpx.get(f"http://127.0.0.1:{stack.metrics_port}/metrics").text,
        httpx.get(f"http://127.0.0.1:{stack.health_port}/metrics").text,
        stack.process.output,
    ]
    for secret in secrets:
        assert not any(secret in text for text in exposed), secret


def test_meshroute_status_shows_the_running_stack(stack: UpStack) -> None:
    ask(stack, "Will it rain in Paris tomorrow?")
    result = subprocess.run(
        meshroute_argv(
            "status",
            "--control-plane",
            f"http://127.0.0.1:{stack.health_port}",
            "--admin",
            stack.admin,
            "--ext-proc-metrics",
            f"http://127.0.0.1:{stack.metrics_port}/metrics",
            "--json",
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    shown = json.loads(result.stdout)
    assert shown["ok"]
    clients = shown["control_plane"]["clients"]
    assert sorted(client["kind"] for client in clients) == ["envoy", "ext-proc"]
    assert not any(client["behind"] or client["nack"] for client in clients)
    assert shown["envoy"]["reachable"]
    assert "agent_weather" in json.dumps(shown["envoy"])
    assert shown["sidecar"]["total"] >= 1
