"""What Envoy reports about each request: spans, access logs, and the GenAI usage in both.

All of it is decided here, at config time; per request Envoy alone does the work, in
C++, and no Python sits on the response path:

- Tracing: Envoy's OpenTelemetry tracer, one span per request and one per upstream
  attempt (retries included), tagged with the routing decision and the token usage,
  exported over OTLP/gRPC to a collector cluster of its own.
- Access logs: one JSON line per request on Envoy's stdout (for people and log
  pipelines), and the same requests over gRPC to the sidecar, which turns them into
  metrics (`envoy.service.accesslog.v3.AccessLogService` on its ext_proc server).
- Usage: two filters read token counts and the model from the upstream's response,
  JSON bodies and SSE streams, in OpenAI's and Anthropic's shapes, into the dynamic
  metadata namespace `contract.USAGE_METADATA_NAMESPACE`, which the logs and the spans
  above report.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import timedelta
from typing import Any, Final

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import (
    config_source_pb2,
    extension_pb2,
    grpc_service_pb2,
    substitution_format_string_pb2,
)
from envoy.config.trace.v3 import http_tracer_pb2, opentelemetry_pb2
from envoy.extensions.access_loggers.grpc.v3 import als_pb2
from envoy.extensions.access_loggers.stream.v3 import stream_pb2
from envoy.extensions.filters.http.json_to_metadata.v3 import json_to_metadata_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.type.matcher.v3 import regex_pb2
from envoy.type.metadata.v3 import metadata_pb2
from envoy.type.tracing.v3 import custom_tag_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import json_format, message, struct_pb2, wrappers_pb2
from xds.type.v3 import typed_struct_pb2

from meshroute.api import contract
from meshroute.control_plane.config.model import Endpoint, Gateway
from meshroute.control_plane.translate import names
from meshroute.control_plane.translate.clusters import service_cluster, speak_http2
from meshroute.control_plane.translate.deployment import DeploymentSettings, TracingSettings
from meshroute.control_plane.translate.protos import duration, pack

# ---------------------------------------------------------------------------- tracing

OPENTELEMETRY_TRACER: Final = "envoy.tracers.opentelemetry"
COLLECTOR_CONNECT_TIMEOUT: Final = timedelta(seconds=5)

# Span tags from the request headers the sidecar set (its routing decision).
HEADER_TAGS: Final = {
    "meshroute.agent": contract.AGENT_HEADER,
    "meshroute.route_reason": contract.ROUTE_REASON_HEADER,
    "meshroute.model": contract.MODEL_HEADER,
    "meshroute.provider": contract.PROVIDER_HEADER,
    "meshroute.client": contract.CLIENT_HEADER,  # who called (Gateway `auth`)
}
# Span tags from the usage metadata, named as OpenTelemetry's GenAI conventions name them.
USAGE_TAGS: Final = {
    "gen_ai.usage.input_tokens": contract.USAGE_INPUT_TOKENS,
    "gen_ai.usage.output_tokens": contract.USAGE_OUTPUT_TOKENS,
    "gen_ai.response.model": contract.USAGE_RESPONSE_MODEL,
}
GATEWAY_TAG: Final = "meshroute.gateway"


def gateway_tracing(gateway: Gateway, settings: DeploymentSettings) -> TracingSettings | None:
    """The Gateway's own `tracing` over the environment's: each field it sets wins.
    None (not traced) when neither names a collector."""
    default = settings.tracing
    override = gateway.spec.tracing
    if override is None:
        return default
    if default is None:
        if override.endpoint is None:
            return None
        default = TracingSettings(endpoint=override.endpoint)
    return replace(
        default,
        endpoint=override.endpoint or default.endpoint,
        sampling_ratio=(
            default.sampling_ratio if override.sampling_ratio is None else override.sampling_ratio
        ),
    )


def collector_clusters(
    gateways: Iterable[Gateway], settings: DeploymentSettings
) -> list[cluster_pb2.Cluster]:
    """One cluster per collector any listener sends spans to; none without tracing."""
    traced = [gateway_tracing(gateway, settings) for gateway in gateways] + [settings.tracing]
    endpoints = {tracing.endpoint for tracing in traced if tracing is not None}
    return [
        _collector_cluster(endpoint, settings.system_ca_bundle)
        for endpoint in sorted(endpoints, key=str)
    ]


def tracing_config(tracing: TracingSettings, source: str) -> hcm_pb2.HttpConnectionManager.Tracing:
    """The connection manager's tracing. `source` names the listener on every span
    (the Gateway's name, or contract.INTERNAL_LOG_NAME)."""
    tracer = opentelemetry_pb2.OpenTelemetryConfig(
        grpc_service=_envoy_grpc(collector_cluster_name(tracing.endpoint)),
        service_name=tracing.service_name,
    )
    return hcm_pb2.HttpConnectionManager.Tracing(
        provider=http_tracer_pb2.Tracing.Http(name=OPENTELEMETRY_TRACER, typed_config=pack(tracer)),
        random_sampling=percent_pb2.Percent(value=tracing.sampling_ratio * 100),
        # A span per upstream attempt: a retried call shows each try, with its host.
        spawn_upstream_span=wrappers_pb2.BoolValue(value=True),
        custom_tags=_span_tags(source),
    )


def collector_cluster_name(endpoint: Endpoint) -> str:
    return names.collector_cluster(endpoint.scheme, endpoint.host, endpoint.port)


def _collector_cluster(endpoint: Endpoint, ca_bundle: str) -> cluster_pb2.Cluster:
    """OTLP over gRPC, so HTTP/2; found by DNS, as a collector Service is."""
    # gRPC servers insist on ALPN h2 over TLS.
    cluster = service_cluster(
        collector_cluster_name(endpoint),
        endpoint,
        COLLECTOR_CONNECT_TIMEOUT,
        ca_bundle,
        alpn_protocols=["h2"],
    )
    speak_http2(cluster)
    return cluster


def _span_tags(source: str) -> list[custom_tag_pb2.CustomTag]:
    tag = custom_tag_pb2.CustomTag
    literal = [tag(tag=GATEWAY_TAG, literal=tag.Literal(value=source))]
    headers = [
        tag(tag=name, request_header=tag.Header(name=header))
        for name, header in HEADER_TAGS.items()
    ]
    # Envoy sets custom tags when the span ends, after the response has filled in the
    # usage metadata (kind `request`: the stream's dynamic metadata).
    usage = [
        tag(
            tag=name,
            metadata=tag.Metadata(
                kind=metadata_pb2.MetadataKind(request=metadata_pb2.MetadataKind.Request()),
                metadata_key=metadata_pb2.MetadataKey(
                    key=contract.USAGE_METADATA_NAMESPACE,
                    path=[metadata_pb2.MetadataKey.PathSegment(key=key)],
                ),
            ),
        )
        for name, key in USAGE_TAGS.items()
    ]
    return literal + headers + usage


# ------------------------------------------------------------------------ access logs

STDOUT_LOGGER: Final = "envoy.access_loggers.stdout"
GRPC_LOGGER: Final = "envoy.access_loggers.http_grpc"
ACCESS_LOG_FLUSH_INTERVAL: Final = timedelta(seconds=1)

# One JSON object per request on Envoy's stdout. Headers are named one by one: no
# body, no Authorization or API key header is ever in a log line.
ACCESS_LOG_FIELDS: Final = {
    "start_time": "%START_TIME%",
    "method": "%REQ(:METHOD)%",
    "path": "%PATH(WQ:ORIG)%",  # without the query string, as the client sent it
    "response_code": "%RESPONSE_CODE%",
    "response_flags": "%RESPONSE_FLAGS%",
    "duration_ms": "%DURATION%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "upstream_host": "%UPSTREAM_HOST%",
    "upstream_cluster": "%UPSTREAM_CLUSTER%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "trace_id": "%TRACE_ID%",
    "agent": f"%REQ({contract.AGENT_HEADER})%",
    "route_reason": f"%REQ({contract.ROUTE_REASON_HEADER})%",
    "model": f"%REQ({contract.MODEL_HEADER})%",
    "provider": f"%REQ({contract.PROVIDER_HEADER})%",
    # The authenticated caller's name (Gateway `auth`), never its credential.
    "client": f"%REQ({contract.CLIENT_HEADER})%",
    **{
        key: f"%DYNAMIC_METADATA({contract.USAGE_METADATA_NAMESPACE}:{key})%"
        for key in (
            contract.USAGE_INPUT_TOKENS,
            contract.USAGE_OUTPUT_TOKENS,
            contract.USAGE_RESPONSE_MODEL,
            contract.USAGE_FINISH_REASON,
        )
    },
}


def access_logs(log_name: str) -> list[accesslog_pb2.AccessLog]:
    """Both logs for one listener; `log_name` is the Gateway's name or
    contract.INTERNAL_LOG_NAME, and says on each line where the request came in."""
    return [_stdout_log(log_name), _sidecar_log(log_name)]


def _stdout_log(log_name: str) -> accesslog_pb2.AccessLog:
    fields = struct_pb2.Struct()
    fields.update({"gateway": log_name, **ACCESS_LOG_FIELDS})
    logger = stream_pb2.StdoutAccessLog(
        log_format=substitution_format_string_pb2.SubstitutionFormatString(json_format=fields)
    )
    return accesslog_pb2.AccessLog(name=STDOUT_LOGGER, typed_config=pack(logger))


def _sidecar_log(log_name: str) -> accesslog_pb2.AccessLog:
    """To the sidecar, over the gRPC cluster Envoy already has for ext_proc: the
    sidecar's metrics then count what Envoy saw (retries, local replies, usage), not
    only what passed through Python. Entries are batched, flushed each second."""
    logger = als_pb2.HttpGrpcAccessLogConfig(
        common_config=als_pb2.CommonGrpcAccessLogConfig(
            log_name=log_name,
            grpc_service=_envoy_grpc(names.EXT_PROC_CLUSTER),
            transport_api_version=config_source_pb2.V3,
            buffer_flush_interval=duration(ACCESS_LOG_FLUSH_INTERVAL),
        ),
        additional_request_headers_to_log=list(contract.ACCESS_LOG_HEADERS),
    )
    return accesslog_pb2.AccessLog(name=GRPC_LOGGER, typed_config=pack(logger))


def _envoy_grpc(cluster: str) -> grpc_service_pb2.GrpcService:
    return grpc_service_pb2.GrpcService(
        envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=cluster)
    )


# ------------------------------------------------------------------------------ usage

JSON_TO_METADATA: Final = "envoy.filters.http.json_to_metadata"
SSE_TO_METADATA: Final = "envoy.filters.http.sse_to_metadata"
JSON_CONTENT_PARSER: Final = "envoy.content_parsers.json"
_TYPE_URL_PREFIX: Final = "type.googleapis.com/"
SSE_TO_METADATA_TYPE: Final = "envoy.extensions.filters.http.sse_to_metadata.v3.SseToMetadata"
JSON_CONTENT_PARSER_TYPE: Final = "envoy.extensions.content_parsers.json.v3.JsonContentParser"

JSON_CONTENT_TYPE: Final = r"^application/json\s*(;.*)?$"

_Rules = json_to_metadata_pb2.JsonToMetadata
_NUMBER: Final = _Rules.NUMBER
_STRING: Final = _Rules.STRING

# A whole JSON response: (path in the body, metadata key, type). OpenAI's and
# Anthropic's shapes both; each names only its own fields. (OpenAI's finish_reason is
# inside `choices`, a list, which selectors cannot enter.)
JSON_USAGE_FIELDS: Final = (
    ("usage.prompt_tokens", contract.USAGE_INPUT_TOKENS, _NUMBER),  # OpenAI
    ("usage.completion_tokens", contract.USAGE_OUTPUT_TOKENS, _NUMBER),  # OpenAI
    ("usage.input_tokens", contract.USAGE_INPUT_TOKENS, _NUMBER),  # Anthropic
    ("usage.output_tokens", contract.USAGE_OUTPUT_TOKENS, _NUMBER),  # Anthropic
    ("model", contract.USAGE_RESPONSE_MODEL, _STRING),  # both
    ("stop_reason", contract.USAGE_FINISH_REASON, _STRING),  # Anthropic
)

# One SSE event's data at a time: (path, metadata key, type, matches to stop after;
# 0 = every event, so the last one wins). OpenAI sends usage in its final chunk when
# the client asked (`stream_options.include_usage`) and `model` in every chunk;
# Anthropic sends the input count and model in `message_start` and the (cumulative)
# output count and stop reason in `message_delta`.
SSE_USAGE_FIELDS: Final = (
    ("usage.prompt_tokens", contract.USAGE_INPUT_TOKENS, _NUMBER, 0),  # OpenAI
    ("usage.completion_tokens", contract.USAGE_OUTPUT_TOKENS, _NUMBER, 0),  # OpenAI
    ("model", contract.USAGE_RESPONSE_MODEL, _STRING, 1),  # OpenAI
    ("message.usage.input_tokens", contract.USAGE_INPUT_TOKENS, _NUMBER, 1),  # Anthropic
    ("message.model", contract.USAGE_RESPONSE_MODEL, _STRING, 1),  # Anthropic
    ("usage.output_tokens", contract.USAGE_OUTPUT_TOKENS, _NUMBER, 0),  # Anthropic
    ("delta.stop_reason", contract.USAGE_FINISH_REASON, _STRING, 0),  # Anthropic
)


def usage_filters() -> list[hcm_pb2.HttpFilter]:
    """The two usage filters, for a chain's place after ext_proc and before the router.

    They change no header and no route, and on the response path (which runs the chain
    backwards) they see the upstream's own response before ext_proc may translate it
    into the client's API. Each acts only on its content type and leaves the other
    alone.
    """
    return [_json_usage_filter(), _sse_usage_filter()]


def _json_usage_filter() -> hcm_pb2.HttpFilter:
    """Reads a whole application/json response. It holds the body until its end to
    parse it, which costs next to nothing here: such a response (a non-streaming
    completion) is useless to the client until complete anyway, and it is small."""
    extract = _Rules(
        response_rules=_Rules.MatchRules(
            rules=[_usage_rule(path, key, kind) for path, key, kind in JSON_USAGE_FIELDS],
            # The media type, whatever its parameters: `allow_content_types` compares the
            # whole header, and many servers add "; charset=utf-8".
            allow_content_types_regex=regex_pb2.RegexMatcher(regex=JSON_CONTENT_TYPE),
        )
    )
    return hcm_pb2.HttpFilter(name=names.USAGE_JSON_FILTER, typed_config=pack(extract))


def _sse_usage_filter() -> hcm_pb2.HttpFilter:
    """Reads each event of a text/event-stream response as it passes, buffering only
    the event being parsed (at most sse_to_metadata's default 8 KiB; longer events,
    never usage ones, are skipped): a stream reaches the client as fast as without it.

    Envoy 1.40 has this filter but xds-protos has no Python message for it (nor for the
    JSON content parser it uses), so its config is a TypedStruct: the message's type
    URL and its fields as a Struct, which Envoy turns into the real message and
    validates like any other (Envoy's documented way to configure an extension whose
    proto the control plane lacks). The rules inside are json_to_metadata's own Rule
    messages, built typed as everywhere else.
    """
    parser = extension_pb2.TypedExtensionConfig(
        name=JSON_CONTENT_PARSER,
        typed_config=pack(
            _typed_struct(
                JSON_CONTENT_PARSER_TYPE,
                {
                    "rules": [
                        {
                            "rule": _as_dict(_usage_rule(path, key, kind)),
                            "stop_processing_after_matches": stop,
                        }
                        for path, key, kind, stop in SSE_USAGE_FIELDS
                    ]
                },
            )
        ),
    )
    config = _typed_struct(
        SSE_TO_METADATA_TYPE, {"response_rules": {"content_parser": _as_dict(parser)}}
    )
    return hcm_pb2.HttpFilter(name=names.USAGE_SSE_FILTER, typed_config=pack(config))


def _usage_rule(path: str, key: str, kind: int) -> json_to_metadata_pb2.JsonToMetadata.Rule:
    """`path` (dotted) in the JSON -> `key` in the usage namespace, when present."""
    return _Rules.Rule(
        selectors=[_Rules.Selector(key=part) for part in path.split(".")],
        on_present=_Rules.KeyValuePair(
            metadata_namespace=contract.USAGE_METADATA_NAMESPACE, key=key, type=kind
        ),
    )


def _typed_struct(message_type: str, fields: dict[str, Any]) -> typed_struct_pb2.TypedStruct:
    value = struct_pb2.Struct()
    value.update(fields)
    return typed_struct_pb2.TypedStruct(type_url=_TYPE_URL_PREFIX + message_type, value=value)


def _as_dict(msg: message.Message) -> dict[str, Any]:
    """A message as its proto3 JSON mapping, the form a Struct holds."""
    result: dict[str, Any] = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    return result
