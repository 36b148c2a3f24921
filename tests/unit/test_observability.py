"""What Envoy reports: tracing from the environment and Gateways, access logs, usage filters.

Checked on the messages the control plane serves, and by Envoy itself (`--mode
validate`), which also reads inside the TypedStruct of the SSE usage filter.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.trace.v3 import opentelemetry_pb2
from envoy.extensions.access_loggers.grpc.v3 import als_pb2
from envoy.extensions.access_loggers.stream.v3 import stream_pb2
from envoy.extensions.filters.http.json_to_metadata.v3 import json_to_metadata_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import json_format
from xds.type.v3 import typed_struct_pb2

from meshroute.api import contract
from meshroute.control_plane.bootstrap import (
    BootstrapSettings,
    message_to_dict,
    render_bootstrap,
    static_bootstrap,
    to_yaml,
)
from meshroute.control_plane.config import ConfigErrors, load_config
from meshroute.control_plane.config.model import Endpoint
from meshroute.control_plane.translate import names
from meshroute.control_plane.translate.deployment import (
    DeploymentSettings,
    TracingSettings,
    tracing_from_environment,
)
from meshroute.control_plane.translate.snapshot import Resources, translate
from meshroute.envoy_binary import validate_config
from tests.support.configs import QUICKSTART

COLLECTOR = "http://otel-collector.observability.svc:4317"
LISTENERS = ("gateway_llm", "gateway_travel", "meshroute_internal")


# ---------------------------------------------------------------- the environment


def test_no_endpoint_means_no_tracing() -> None:
    assert tracing_from_environment({}) is None
    assert tracing_from_environment({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}) is None
    # A sampler alone traces nothing, and is not even looked at.
    assert tracing_from_environment({"OTEL_TRACES_SAMPLER": "nonsense"}) is None


def test_endpoint_defaults_to_every_trace_as_meshroute_envoy() -> None:
    tracing = tracing_from_environment({"OTEL_EXPORTER_OTLP_ENDPOINT": COLLECTOR})
    assert tracing == TracingSettings(
        endpoint=Endpoint("http", "otel-collector.observability.svc", 4317),
        sampling_ratio=1.0,
        service_name="meshroute-envoy",
    )


def test_the_traces_endpoint_wins_and_the_service_name_is_read() -> None:
    tracing = tracing_from_environment(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://general:4317",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces.example.com:4317/",
            "OTEL_SERVICE_NAME": "edge-envoy",
        }
    )
    assert tracing is not None
    assert tracing.endpoint == Endpoint("https", "traces.example.com", 4317)
    assert tracing.service_name == "edge-envoy"


@pytest.mark.parametrize(
    ("sampler", "argument", "ratio"),
    [
        ("always_on", None, 1.0),
        ("always_off", None, 0.0),
        ("parentbased_always_on", "0.3", 1.0),  # the argument is for ratio samplers only
        ("parentbased_always_off", None, 0.0),
        ("traceidratio", "0.25", 0.25),
        ("parentbased_traceidratio", "0.05", 0.05),
        ("TraceIdRatio", "1", 1.0),
        ("traceidratio", None, 1.0),
        ("", "0.5", 1.0),  # unset: parentbased_always_on
    ],
)
def test_samplers_become_the_share_of_new_traces(
    sampler: str, argument: str | None, ratio: float
) -> None:
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": COLLECTOR, "OTEL_TRACES_SAMPLER": sampler}
    if argument is not None:
        environ["OTEL_TRACES_SAMPLER_ARG"] = argument
    tracing = tracing_from_environment(environ)
    assert tracing is not None
    assert tracing.sampling_ratio == ratio


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"OTEL_TRACES_SAMPLER": "jaeger_remote"}, "OTEL_TRACES_SAMPLER='jaeger_remote'"),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"},
            "OTEL_TRACES_SAMPLER_ARG='half'",
        ),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"},
            "a sampling ratio is a number from 0.0 to 1.0",
        ),
        (
            {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "nan"},
            "OTEL_TRACES_SAMPLER_ARG='nan'",
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"}, "OTEL_EXPORTER_OTLP_ENDPOINT:"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "OTLP/gRPC only"),
    ],
)
def test_a_wrong_variable_is_named_in_the_error(variables: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        tracing_from_environment({"OTEL_EXPORTER_OTLP_ENDPOINT": COLLECTOR, **variables})


# ------------------------------------------------------------------ translation


def quickstart_with(tmp_path: Path, travel_tracing: str | None = None) -> Path:
    """The quickstart config, with a `tracing` field on the travel (agent) gateway."""
    directory = tmp_path / "config"
    shutil.copytree(QUICKSTART, directory)
    if travel_tracing is not None:
        gateway = directory / "gateway.yaml"
        text = gateway.read_text().replace("port: 8001", f"port: 8001\n  tracing: {travel_tracing}")
        gateway.write_text(text)
    return directory


def resources_for(path: Path, environ: dict[str, str]) -> Resources:
    settings = DeploymentSettings(tracing=tracing_from_environment(environ))
    return translate(load_config([path]), settings)


def manager_of(resources: Resources, name: str) -> hcm_pb2.HttpConnectionManager:
    [listener] = [listener for listener in resources.listeners if listener.name == name]
    manager = hcm_pb2.HttpConnectionManager()
    assert listener.filter_chains[0].filters[0].typed_config.Unpack(manager)
    return manager


def collector_clusters(resources: Resources) -> dict[str, cluster_pb2.Cluster]:
    return {c.name: c for c in resources.clusters if c.name.startswith("meshroute_otel_")}


def tracer_of(manager: hcm_pb2.HttpConnectionManager) -> opentelemetry_pb2.OpenTelemetryConfig:
    assert manager.tracing.provider.name == "envoy.tracers.opentelemetry"
    tracer = opentelemetry_pb2.OpenTelemetryConfig()
    assert manager.tracing.provider.typed_config.Unpack(tracer)
    return tracer


def envoy_accepts(resources: Resources) -> None:
    validate_config(to_yaml(message_to_dict(static_bootstrap(resources, BootstrapSettings()))))


def test_the_environment_traces_every_listener_through_one_collector_cluster(
    tmp_path: Path,
) -> None:
    resources = resources_for(
        quickstart_with(tmp_path),
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": COLLECTOR,
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.1",
        },
    )
    [(name, cluster)] = collector_clusters(resources).items()
    assert cluster.type == cluster_pb2.Cluster.STRICT_DNS
    address = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address
    assert (address.socket_address.address, address.socket_address.port_value) == (
        "otel-collector.observability.svc",
        4317,
    )
    options = http_protocol_options_pb2.HttpProtocolOptions()
    key = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    assert cluster.typed_extension_protocol_options[key].Unpack(options)
    assert options.explicit_http_config.HasField("http2_protocol_options")  # gRPC
    assert not cluster.HasField("transport_socket")
    for listener in LISTENERS:
        manager = manager_of(resources, listener)
        tracer = tracer_of(manager)
        assert tracer.grpc_service.envoy_grpc.cluster_name == name
        assert tracer.service_name == "meshroute-envoy"
        assert manager.tracing.random_sampling.value == pytest.approx(10.0)
        assert manager.tracing.spawn_upstream_span.value
    envoy_accepts(resources)


def test_spans_carry_the_decision_the_gateway_and_the_usage(tmp_path: Path) -> None:
    resources = resources_for(quickstart_with(tmp_path), {"OTEL_EXPORTER_OTLP_ENDPOINT": COLLECTOR})
    for listener, source in [
        ("gateway_travel", "travel"),
        ("meshroute_internal", contract.INTERNAL_LOG_NAME),
    ]:
        tags = {tag.tag: tag for tag in manager_of(resources, listener).tracing.custom_tags}
        assert tags["meshroute.gateway"].literal.value == source
        headers = {
            name: tags[name].request_header.name
            for name in (
                "meshroute.agent",
                "meshroute.route_reason",
                "meshroute.model",
                "meshroute.provider",
            )
        }
        assert headers == {
            "meshroute.agent": contract.AGENT_HEADER,
            "meshroute.route_reason": contract.ROUTE_REASON_HEADER,
            "meshroute.model": contract.MODEL_HEADER,
            "meshroute.provider": contract.PROVIDER_HEADER,
        }
        for name, key in [
            ("gen_ai.usage.input_tokens", contract.USAGE_INPUT_TOKENS),
            ("gen_ai.usage.output_tokens", contract.USAGE_OUTPUT_TOKENS),
            ("gen_ai.response.model", contract.USAGE_RESPONSE_MODEL),
        ]:
            metadata = tags[name].metadata
            assert metadata.kind.HasField("request")
            assert metadata.metadata_key.key == contract.USAGE_METADATA_NAMESPACE
            assert [segment.key for segment in metadata.metadata_key.path] == [key]


def test_nothing_traced_without_an_endpoint_anywhere(tmp_path: Path) -> None:
    resources = resources_for(quickstart_with(tmp_path, "{samplingRatio: 0.5}"), {})
    for listener in LISTENERS:
        assert not manager_of(resources, listener).HasField("tracing")
    assert collector_clusters(resources) == {}


def test_a_gateway_endpoint_traces_that_gateway_alone(tmp_path: Path) -> None:
    config = quickstart_with(tmp_path, "{endpoint: 'https://otel.example.com:4317'}")
    resources = resources_for(config, {})
    [(name, cluster)] = collector_clusters(resources).items()
    tracer = tracer_of(manager_of(resources, "gateway_travel"))
    assert tracer.grpc_service.envoy_grpc.cluster_name == name
    assert manager_of(resources, "gateway_travel").tracing.random_sampling.value == 100.0
    assert not manager_of(resources, "gateway_llm").HasField("tracing")
    assert not manager_of(resources, "meshroute_internal").HasField("tracing")
    # https: TLS to the collector, its name checked, speaking h2 as gRPC needs.
    tls = tls_pb2.UpstreamTlsContext()
    assert cluster.transport_socket.typed_config.Unpack(tls)
    assert tls.sni == "otel.example.com"
    assert list(tls.common_tls_context.alpn_protocols) == ["h2"]
    [san] = tls.common_tls_context.validation_context.match_typed_subject_alt_names
    assert san.matcher.exact == "otel.example.com"
    assert tls.common_tls_context.validation_context.trusted_ca.filename
    envoy_accepts(resources)


def test_gateway_fields_override_the_environment_one_by_one(tmp_path: Path) -> None:
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": COLLECTOR, "OTEL_SERVICE_NAME": "edge"}
    ratio_only = resources_for(quickstart_with(tmp_path / "a", "{samplingRatio: 0.25}"), environ)
    travel, llm = (manager_of(ratio_only, name) for name in ("gateway_travel", "gateway_llm"))
    assert travel.tracing.random_sampling.value == 25.0
    assert llm.tracing.random_sampling.value == 100.0
    assert tracer_of(travel).grpc_service == tracer_of(llm).grpc_service
    assert tracer_of(travel).service_name == "edge"
    assert len(collector_clusters(ratio_only)) == 1

    own = resources_for(
        quickstart_with(tmp_path / "b", "{endpoint: 'http://team-collector:4317'}"), environ
    )
    clusters = collector_clusters(own)
    assert len(clusters) == 2  # the gateway's collector, and the environment's for the rest
    travel_cluster = tracer_of(manager_of(own, "gateway_travel")).grpc_service
    internal_cluster = tracer_of(manager_of(own, "meshroute_internal")).grpc_service
    assert travel_cluster.envoy_grpc.cluster_name in clusters
    assert internal_cluster.envoy_grpc.cluster_name in clusters
    assert travel_cluster != internal_cluster
    envoy_accepts(own)


@pytest.mark.parametrize(
    ("tracing", "field", "says"),
    [
        ("{endpoint: 'http://collector'}", "spec.tracing.endpoint", "give the collector's port"),
        ("{endpoint: 'grpc://collector:4317'}", "spec.tracing.endpoint", "http:// or https://"),
        ("{endpoint: 'http://collector:4317/v1/traces'}", "spec.tracing.endpoint", "path"),
        ("{samplingRatio: 1.5}", "spec.tracing.samplingRatio", "less than or equal to 1"),
        ("{sampling: 0.5}", "spec.tracing.sampling", "unknown field"),
    ],
)
def test_a_wrong_tracing_field_is_named(
    tmp_path: Path, tracing: str, field: str, says: str
) -> None:
    with pytest.raises(ConfigErrors) as raised:
        load_config([quickstart_with(tmp_path, tracing)])
    [error] = raised.value.errors
    assert "Gateway/travel" in str(error)
    assert field in str(error)
    assert says in str(error)


def test_collector_cluster_names_are_distinct_and_safe_for_stats() -> None:
    a = names.collector_cluster("http", "otel-collector.ns", 4317)
    assert a == names.collector_cluster("http", "otel-collector.ns", 4317)  # stable
    others = {
        names.collector_cluster("https", "otel-collector.ns", 4317),
        names.collector_cluster("http", "otel-collector-ns", 4317),
        names.collector_cluster("http", "otel-collector.ns", 4318),
    }
    assert a not in others
    assert len(others) == 3
    for name in {a, *others}:
        assert "." not in name  # Envoy's stat tags take a cluster name up to the first '.'


# ------------------------------------------------------------------ access logs


def test_every_listener_logs_json_to_stdout_without_secrets(tmp_path: Path) -> None:
    resources = resources_for(quickstart_with(tmp_path), {})
    for listener, source in [
        ("gateway_travel", "travel"),
        ("gateway_llm", "llm"),
        ("meshroute_internal", contract.INTERNAL_LOG_NAME),
    ]:
        [stdout] = [
            log
            for log in manager_of(resources, listener).access_log
            if log.name == "envoy.access_loggers.stdout"
        ]
        logger = stream_pb2.StdoutAccessLog()
        assert stdout.typed_config.Unpack(logger)
        fields = json_format.MessageToDict(logger.log_format.json_format)
        assert fields["gateway"] == source
        assert set(fields) == {
            "gateway",
            "start_time",
            "method",
            "path",
            "response_code",
            "response_flags",
            "duration_ms",
            "bytes_received",
            "bytes_sent",
            "upstream_host",
            "upstream_cluster",
            "request_id",
            "trace_id",
            "agent",
            "route_reason",
            "model",
            "provider",
            "client",
            "input_tokens",
            "output_tokens",
            "response_model",
            "finish_reason",
        }
        assert fields["request_id"] == "%REQ(X-REQUEST-ID)%"
        assert fields["trace_id"] == "%TRACE_ID%"
        assert fields["agent"] == f"%REQ({contract.AGENT_HEADER})%"
        assert fields["input_tokens"] == "%DYNAMIC_METADATA(meshroute.usage:input_tokens)%"
        assert fields["path"] == "%PATH(WQ:ORIG)%"  # without the query string
        everything = str(fields).lower()
        for secret in ("authorization", "api-key", "api_key", "%req_body", "%resp_body"):
            assert secret not in everything


def test_every_listener_logs_to_the_sidecar_over_the_bootstraps_ext_proc_cluster(
    tmp_path: Path,
) -> None:
    static_clusters = {
        cluster["name"]
        for cluster in yaml.safe_load(render_bootstrap(BootstrapSettings()))["static_resources"][
            "clusters"
        ]
    }
    assert names.EXT_PROC_CLUSTER in static_clusters
    resources = resources_for(quickstart_with(tmp_path), {})
    for listener, log_name in [
        ("gateway_travel", "travel"),
        ("gateway_llm", "llm"),
        ("meshroute_internal", contract.INTERNAL_LOG_NAME),
    ]:
        [grpc_log] = [
            log
            for log in manager_of(resources, listener).access_log
            if log.name == "envoy.access_loggers.http_grpc"
        ]
        logger = als_pb2.HttpGrpcAccessLogConfig()
        assert grpc_log.typed_config.Unpack(logger)
        common = logger.common_config
        assert common.log_name == log_name
        assert common.grpc_service.envoy_grpc.cluster_name == names.EXT_PROC_CLUSTER
        assert common.transport_api_version == 2  # V3
        assert common.buffer_flush_interval.ToTimedelta().total_seconds() == 1
        assert list(logger.additional_request_headers_to_log) == list(contract.ACCESS_LOG_HEADERS)
        assert not logger.additional_response_headers_to_log
        logged = {header.lower() for header in logger.additional_request_headers_to_log}
        assert not logged & {"authorization", "x-api-key", "api-key", "cookie"}


# ------------------------------------------------------------------------ usage


def usage_filters_of(manager: hcm_pb2.HttpConnectionManager) -> tuple[int, int]:
    order = [f.name for f in manager.http_filters]
    return order.index(names.USAGE_JSON_FILTER), order.index(names.USAGE_SSE_FILTER)


def test_usage_filters_sit_after_the_sidecar_and_before_the_router(tmp_path: Path) -> None:
    resources = resources_for(quickstart_with(tmp_path), {})
    for listener in LISTENERS:
        manager = manager_of(resources, listener)
        order = [f.name for f in manager.http_filters]
        json_at, sse_at = usage_filters_of(manager)
        assert order[-1] == names.ROUTER_FILTER
        assert (json_at, sse_at) == (len(order) - 3, len(order) - 2)
        if listener != "meshroute_internal":
            assert order.index(names.EXT_PROC_FILTER) == json_at - 1


def test_json_responses_become_usage_metadata_in_both_shapes(tmp_path: Path) -> None:
    resources = resources_for(quickstart_with(tmp_path), {})
    for listener in ("gateway_travel", "gateway_llm"):
        manager = manager_of(resources, listener)
        json_at, _ = usage_filters_of(manager)
        extract = json_to_metadata_pb2.JsonToMetadata()
        assert manager.http_filters[json_at].typed_config.Unpack(extract)
        assert not extract.HasField("request_rules")  # requests pass untouched
        rules = extract.response_rules
        assert rules.allow_content_types_regex.regex == r"^application/json\s*(;.*)?$"
        found = {
            ".".join(s.key for s in rule.selectors): (
                rule.on_present.metadata_namespace,
                rule.on_present.key,
                rule.on_present.type,
            )
            for rule in rules.rules
        }
        number, string = (
            json_to_metadata_pb2.JsonToMetadata.NUMBER,
            (json_to_metadata_pb2.JsonToMetadata.STRING),
        )
        namespace = contract.USAGE_METADATA_NAMESPACE
        assert found == {
            "usage.prompt_tokens": (namespace, contract.USAGE_INPUT_TOKENS, number),
            "usage.completion_tokens": (namespace, contract.USAGE_OUTPUT_TOKENS, number),
            "usage.input_tokens": (namespace, contract.USAGE_INPUT_TOKENS, number),
            "usage.output_tokens": (namespace, contract.USAGE_OUTPUT_TOKENS, number),
            "model": (namespace, contract.USAGE_RESPONSE_MODEL, string),
            "stop_reason": (namespace, contract.USAGE_FINISH_REASON, string),
        }


def test_sse_streams_become_usage_metadata_through_a_typed_struct(tmp_path: Path) -> None:
    resources = resources_for(quickstart_with(tmp_path), {})
    for listener in ("gateway_travel", "gateway_llm"):
        manager = manager_of(resources, listener)
        _, sse_at = usage_filters_of(manager)
        config = typed_struct_pb2.TypedStruct()
        assert manager.http_filters[sse_at].typed_config.Unpack(config)
        assert config.type_url == (
            "type.googleapis.com/envoy.extensions.filters.http.sse_to_metadata.v3.SseToMetadata"
        )
        parser = json_format.MessageToDict(config.value)["response_rules"]["content_parser"]
        assert parser["name"] == "envoy.content_parsers.json"
        assert parser["typed_config"]["type_url"] == (
            "type.googleapis.com/envoy.extensions.content_parsers.json.v3.JsonContentParser"
        )
        rules = {
            ".".join(s["key"] for s in item["rule"]["selectors"]): (
                item["rule"]["on_present"]["key"],
                item["rule"]["on_present"]["type"],
                int(item.get("stop_processing_after_matches", 0)),
            )
            for item in parser["typed_config"]["value"]["rules"]
        }
        assert rules == {
            # OpenAI: the last chunk's usage (include_usage), the model from the first.
            "usage.prompt_tokens": (contract.USAGE_INPUT_TOKENS, "NUMBER", 0),
            "usage.completion_tokens": (contract.USAGE_OUTPUT_TOKENS, "NUMBER", 0),
            "model": (contract.USAGE_RESPONSE_MODEL, "STRING", 1),
            # Anthropic: message_start, then message_delta.
            "message.usage.input_tokens": (contract.USAGE_INPUT_TOKENS, "NUMBER", 1),
            "message.model": (contract.USAGE_RESPONSE_MODEL, "STRING", 1),
            "usage.output_tokens": (contract.USAGE_OUTPUT_TOKENS, "NUMBER", 0),
            "delta.stop_reason": (contract.USAGE_FINISH_REASON, "STRING", 0),
        }


def test_envoy_accepts_every_listener_with_tracing_logs_and_usage_filters(
    tmp_path: Path,
) -> None:
    resources = resources_for(
        quickstart_with(tmp_path, "{endpoint: 'https://otel.example.com:4317', samplingRatio: 0}"),
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": COLLECTOR, "OTEL_TRACES_SAMPLER": "always_on"},
    )
    assert len(collector_clusters(resources)) == 2
    envoy_accepts(resources)
