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
        routing: GatewayRouting | None = None
        pinned: str | None = None
        async for request in requests:
            phase = request.WhichOneof("request")
            if phase == "request_headers":
                # The table is taken once per request: a new one arriving mid-request
                # does not change the rules under it.
                routing = self._tables.by_gateway.get(gateway)
                if routing is None:
                    yield _no_table(gateway)
                    return
                if request.request_headers.end_of_stream:
                    yield _EMPTY_BODY  # no body will follow: nothing to route
                    return
                if routing.allow_client_pinning:
                    pinned = _header(request.request_headers, contract.AGENT_HEADER)
                    if pinned is not None and not routing.knows(pinned):
                        yield responses.error(
                            404,
                            "agent_not_found",
                            f"no agent {pinned!r} on gateway {gateway!r}",
                        )
                        return
                yield responses.CONTINUE_HEADERS
            elif phase == "request_body" and routing is not None:
                async for answer in routing.respond(request.request_body.body, pinned):
                    yield answer
            else:
                # Our processing mode never sends other phases; if a future Envoy
                # does, fail this request loudly rather than guess.
                log.error("unexpected ext_proc phase %r for gateway %s", phase, gateway)
                yield responses.error(
                    500,
                    "unexpected_processing_phase",
                    "the routing sidecar got an unexpected message",
                )
                return


def _gateway_of(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == contract.GATEWAY_METADATA_KEY:
            return str(value)
    return ""


def _header(headers: ep.HttpHeaders, name: str) -> str | None:
    for header in headers.headers.headers:
        if header.key == name:
            raw: bytes = header.raw_value or header.value.encode()
            return raw.decode(errors="replace")
    return None


def _no_table(gateway: str) -> ep.ProcessingResponse:
    if not gateway:
        message = "Envoy did not name the gateway; its ext_proc config lacks initial_metadata"
    else:
        message = f"the routing sidecar has no routing table for gateway {gateway!r} yet"
    log.warning("%s", message)
    return responses.error(503, "routing_table_unavailable", message)
