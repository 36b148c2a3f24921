"""The ext_proc answers we send, built once and reused on every request.

An ext_proc answer is a protobuf message; building one per request is wasted work
when, for a given table, only a handful exist (one per agent and reason). These
helpers build them; `routing.GatewayRouting` keeps them per table.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.type.v3 import http_status_pb2

from meshroute.api import contract
from meshroute.api.v1alpha1 import routing_table_pb2 as rt

CONTINUE_HEADERS = ep.ProcessingResponse(request_headers=ep.HeadersResponse())


def route_to(agent: str, reason: str) -> ep.ProcessingResponse:
    """Set the decision headers and make Envoy match routes again (clear_route_cache)."""
    return ep.ProcessingResponse(request_body=ep.BodyResponse(response=_decision(agent, reason)))


def route_sequence(agents: Sequence[str], reason: str, body: bytes) -> ep.ProcessingResponse:
    """Hand the grown request to the last agent; the header names the whole sequence."""
    common = _decision(contract.AGENT_SEPARATOR.join(agents), reason)
    common.body_mutation.body = body
    # Envoy refuses a new body whose length the content-length header contradicts.
    common.header_mutation.set_headers.append(header("content-length", str(len(body))))
    return ep.ProcessingResponse(request_body=ep.BodyResponse(response=common))


def extend_timeout(seconds: float) -> ep.ProcessingResponse:
    """Ask Envoy to wait this long for our next answer (up to its max_message_timeout)."""
    answer = ep.ProcessingResponse()
    answer.override_message_timeout.FromTimedelta(timedelta(seconds=seconds))
    return answer


def model_route_headers(
    target: rt.ModelTarget, reason: str
) -> tuple[base_pb2.HeaderValueOption, ...]:
    """What sends a request to the target's provider, at the provider's path, whatever
    its body: built once per target and reason (see ModelRouting), not per request."""
    return (
        header(":path", target.path),
        header(contract.PROVIDER_HEADER, target.provider),
        header(contract.MODEL_HEADER, target.name),
        header(contract.ROUTE_REASON_HEADER, reason),
        header("content-type", "application/json"),
    )


def route_model(
    *,
    route_headers: Sequence[base_pb2.HeaderValueOption],
    body: bytes,
    key_headers: Sequence[base_pb2.HeaderValueOption] = (),
) -> ep.ProcessingResponse:
    """Send the rewritten request where `route_headers` (model_route_headers) say."""
    headers = ep.HeaderMutation(
        set_headers=[
            *route_headers,
            # Envoy refuses a new body whose length the content-length header contradicts.
            header("content-length", str(len(body))),
            *key_headers,
        ]
    )
    common = ep.CommonResponse(header_mutation=headers, clear_route_cache=True)
    common.body_mutation.body = body
    return ep.ProcessingResponse(request_body=ep.BodyResponse(response=common))


def replace_response_body(body: bytes, set_length: bool = False) -> ep.ProcessingResponse:
    """The response body (or this chunk of it), replaced by `body`."""
    common = ep.CommonResponse()
    common.body_mutation.body = body
    if set_length:
        common.header_mutation.set_headers.append(header("content-length", str(len(body))))
    return ep.ProcessingResponse(response_body=ep.BodyResponse(response=common))


def _decision(agents: str, reason: str) -> ep.CommonResponse:
    headers = ep.HeaderMutation(
        set_headers=[
            header(contract.AGENT_HEADER, agents),
            header(contract.ROUTE_REASON_HEADER, reason),
        ]
    )
    return ep.CommonResponse(header_mutation=headers, clear_route_cache=True)


def error(status: int, code: str, message: str) -> ep.ProcessingResponse:
    """Answer the client now. The listener's local-reply config wraps `message` and
    `code` (sent as the reply's details) into the JSON error shape."""
    return ep.ProcessingResponse(
        immediate_response=ep.ImmediateResponse(
            status=http_status_pb2.HttpStatus(code=status),
            body=message.encode(),
            details=code,
        )
    )


def header(name: str, value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=name, raw_value=value.encode()),
        append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
    )
