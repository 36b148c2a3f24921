"""The ExternalProcessor gRPC service Envoy calls for every chat request."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc

from meshroute.api import contract
from meshroute.ext_proc import responses
from meshroute.ext_proc.routing import GatewayRouting

log = logging.getLogger("meshroute.ext_proc")

_EMPTY_BODY = responses.error(
    400, "empty_body", "the request body is empty; send a JSON chat request"
)


class RoutingTables:
    """The routing of every Gateway, swapped whole when the control plane sends more."""

    def __init__(self) -> None:
        self.by_gateway: Mapping[str, GatewayRouting] = {}
        self.version: str | None = None

    def replace(self, by_gateway: Mapping[str, GatewayRouting], version: str) -> None:
        self.by_gateway = by_gateway  # one assignment: requests see old or new, never a mix
        self.version = version


class ExternalProcessor(ep_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    def __init__(self, tables: RoutingTables) -> None:
        self._tables = tables

    async def Process(
        self, requests: AsyncIterator[ep.ProcessingRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ep.ProcessingResponse]:
        gateway = _gateway_of(context)
        async for request in requests:
            phase = request.WhichOneof("request")
            if phase == "request_headers":
                if request.request_headers.end_of_stream:
                    yield _EMPTY_BODY  # no body will follow: nothing to route
                else:
                    yield responses.CONTINUE_HEADERS
            elif phase == "request_body":
                routing = self._tables.by_gateway.get(gateway)
                if routing is None:
                    yield _no_table(gateway)
                else:
                    yield routing.answer(request.request_body.body)
            else:
                # Our processing mode never sends other phases; if a future Envoy
                # does, fail this request loudly rather than guess.
                log.error("unexpected ext_proc phase %r for gateway %s", phase, gateway)
                yield responses.error(
                    500,
                    "unexpected_processing_phase",
                    "the routing sidecar got an unexpected message",
                )


def _gateway_of(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
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
