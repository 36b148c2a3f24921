"""The ExternalProcessor gRPC service Envoy calls for every request that needs deciding."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from meshroute.api import contract
from meshroute.ext_proc import responses
from meshroute.ext_proc.exchange import header_value
from meshroute.ext_proc.gateways import AnyRouting
from meshroute.ext_proc.metrics import SidecarMetrics
from meshroute.ext_proc.telemetry import TRACER, attach, context_from_metadata, tracing
from meshroute.lifecycle import REQUEST_ID

log = logging.getLogger("meshroute.ext_proc")


class RoutingTables:
    """The routing of every Gateway, swapped whole when the control plane sends more."""

    def __init__(self) -> None:
        self.by_gateway: Mapping[str, AnyRouting] = {}
        self.version: str | None = None

    def replace(self, by_gateway: Mapping[str, AnyRouting], version: str) -> None:
        self.by_gateway = by_gateway  # one assignment: requests see old or new, never a mix
        self.version = version


class ExternalProcessor(ep_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    def __init__(self, tables: RoutingTables, metrics: SidecarMetrics | None = None) -> None:
        self._tables = tables
        self._metrics = metrics or SidecarMetrics()

    async def Process(
        self, requests: AsyncIterator[ep.ProcessingRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ep.ProcessingResponse]:
        metadata = context.invocation_metadata()
        gateway = _gateway_of(metadata)
        span = _request_span(gateway, metadata) if tracing() else None
        try:
            async for answer in self._process(gateway, requests):
                yield answer
        except asyncio.CancelledError:
            self._metrics.streams.labels(gateway, "cancelled").inc()
            raise
        finally:
            if span is not None:
                span.end()

    async def _process(
        self, gateway: str, requests: AsyncIterator[ep.ProcessingRequest]
    ) -> AsyncIterator[ep.ProcessingResponse]:
        # The table is taken once per request: a new one arriving mid-request does not
        # change the rules under it.
        routing = self._tables.by_gateway.get(gateway)
        if routing is None:
            # Answer Envoy's first message, as the protocol goes: answering before it is
            # read races the client's write against the end of the stream.
            async for _ in requests:
                break
            yield _no_table(gateway)
            self._metrics.streams.labels(gateway, "ended").inc()
            return
        exchange = routing.start()
        timings = self._metrics.message_seconds
        async for request in requests:
            started = time.perf_counter()
            phase = request.WhichOneof("request")
            if phase == "request_headers":
                REQUEST_ID.set(header_value(request.request_headers, "x-request-id"))
                yield exchange.request_headers(request.request_headers)
            elif phase == "request_body":
                async for answer in exchange.request_body(request.request_body.body):
                    yield answer
            elif phase == "response_headers":
                yield exchange.response_headers(request.response_headers)
            elif phase == "response_body":
                body = request.response_body
                yield exchange.response_body(body.body, body.end_of_stream)
            else:
                # Our processing modes never send trailers; if a future Envoy does,
                # fail this request loudly rather than guess.
                log.error("unexpected ext_proc phase %r for gateway %s", phase, gateway)
                yield exchange.finish(
                    responses.error(
                        500,
                        "unexpected_processing_phase",
                        "the routing sidecar got an unexpected message",
                    )
                )
            timings.labels(gateway, phase).observe(time.perf_counter() - started)
            if exchange.finished:
                # Ending the stream here, not waiting for Envoy to, is what spares
                # the sidecar a cancelled call per request (see Exchange).
                self._metrics.streams.labels(gateway, "ended").inc()
                return
        self._metrics.streams.labels(gateway, "closed").inc()


def _request_span(gateway: str, metadata: Iterable[tuple[str, Any]] | None) -> Span:
    """One span per request, a child of Envoy's (its context is in the stream's
    metadata), made current for the rest of this RPC so the spans and calls below
    join the same trace. It is never detached: each RPC runs in a task of its own,
    whose context ends with it, and detaching could only fail when grpc finalizes an
    abandoned stream from another task."""
    span = TRACER.start_span(
        "meshroute ext_proc",
        context=context_from_metadata(metadata),
        kind=SpanKind.SERVER,
        attributes={"meshroute.gateway": gateway},
    )
    attach(trace.set_span_in_context(span))
    return span


def _gateway_of(metadata: Iterable[tuple[str, Any]] | None) -> str:
    for key, value in metadata or ():
        if key == contract.GATEWAY_METADATA_KEY:
            return str(value)
    return ""


def _no_table(gateway: str) -> ep.ProcessingResponse:
    if not gateway:
        message = "Envoy did not name the gateway; its ext_proc config lacks initial_metadata"
    else:
        message = f"the routing sidecar has no routing table for gateway {gateway!r} yet"
    log.warning("%s", message)
    return responses.error(503, "routing_table_unavailable", message)
