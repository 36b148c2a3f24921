"""Envoy's access log stream, turned into request, duration and token metrics.

Envoy sends every finished request's log entry here (gRPC AccessLogService, on the
sidecar's own server), buffered and off the request path. Each entry carries the
routing decision (the x-meshroute-* request headers), the status, the duration, and
the token usage Envoy itself read from the response (dynamic metadata): so the
sidecar counts what each request cost without touching a response byte.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc
from envoy.data.accesslog.v3 import accesslog_pb2
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc

from meshroute.api import contract
from meshroute.ext_proc.metrics import SidecarMetrics

log = logging.getLogger("meshroute.ext_proc")


ENTRIES_PER_STREAM = 10_000
"""Entries read on one stream before the sidecar ends it (Envoy opens a new one at its
next flush). grpc keeps what a call receives until the call ends: on the endless
stream Envoy would otherwise keep open, the sidecar grew by about the size of every
entry it ever read (measured: ~120 bytes per request, without end)."""


class AccessLogReceiver(als_pb2_grpc.AccessLogServiceServicer):  # type: ignore[misc]
    def __init__(
        self, metrics: SidecarMetrics, entries_per_stream: int = ENTRIES_PER_STREAM
    ) -> None:
        self._metrics = metrics
        self._entries_per_stream = entries_per_stream

    async def StreamAccessLogs(
        self,
        messages: AsyncIterator[als_pb2.StreamAccessLogsMessage],
        context: grpc.aio.ServicerContext,
    ) -> als_pb2.StreamAccessLogsResponse:
        log_name = ""
        read = 0
        async for message in messages:
            if message.HasField("identifier"):  # the first message of each stream
                log_name = message.identifier.log_name
            for entry in message.http_logs.log_entry:
                self.record(log_name, entry)
            read += len(message.http_logs.log_entry)
            if read >= self._entries_per_stream:
                break  # right after Envoy's flush: its next one goes to a new stream
        return als_pb2.StreamAccessLogsResponse()

    def record(self, gateway: str, entry: accesslog_pb2.HTTPAccessLogEntry) -> None:
        common = entry.common_properties
        headers = entry.request.request_headers
        target = (
            headers.get(contract.AGENT_HEADER)
            or headers.get(contract.MODEL_HEADER)
            or common.upstream_cluster
            or "none"
        )
        code = entry.response.response_code.value
        status = f"{code // 100}xx" if code else "none"
        metrics = self._metrics
        metrics.requests.labels(gateway, target, status).inc()
        if common.HasField("time_to_last_downstream_tx_byte"):
            seconds = common.time_to_last_downstream_tx_byte.ToTimedelta().total_seconds()
            metrics.request_seconds.labels(gateway, target).observe(seconds)
        usage = common.metadata.filter_metadata.get(contract.USAGE_METADATA_NAMESPACE)
        if usage is None:
            return
        fields = usage.fields
        model = (
            fields[contract.USAGE_RESPONSE_MODEL].string_value
            if (contract.USAGE_RESPONSE_MODEL in fields)
            else ""
        )
        for key, token_type in (
            (contract.USAGE_INPUT_TOKENS, "input"),
            (contract.USAGE_OUTPUT_TOKENS, "output"),
        ):
            if key in fields:
                metrics.tokens.labels(gateway, target, token_type, model).observe(
                    fields[key].number_value
                )
