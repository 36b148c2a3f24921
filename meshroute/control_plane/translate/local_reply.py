"""Envoy's own replies (413, 503, no route, ...) in our error shape.

Clients get one JSON error shape, `{"error": {"type", "message", "code"}}`, whoever
answered: the ext_proc server's immediate responses and Envoy's local replies both
pass through this LocalReplyConfig. The ext_proc server therefore sends only the
message as the body and the code as the reply's details; this config adds the rest.

Replies whose cause we can recognise get a stable snake_case `code` (what clients
and dashboards key on) and, where Envoy's text would confuse, a message of ours.
Everything else keeps Envoy's response code details as the code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import base_pb2, substitution_format_string_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.access_loggers.filters.cel.v3 import cel_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from google.protobuf import struct_pb2

from meshroute.control_plane.translate.protos import pack

# The OpenAI/Anthropic-style error `type` for each status a gateway may answer.
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    431: "request_too_large",
    500: "api_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "timeout_error",
}
_OTHER_ERROR_TYPE = "api_error"
_ENVOY_BODY = "%LOCAL_REPLY_BODY%"
_ENVOY_DETAILS = "%RESPONSE_CODE_DETAILS%"


@dataclass(frozen=True)
class _UpstreamFailure:
    status: int
    flag: str
    """Envoy's response flag for the failure (as in access logs)."""
    code: str


# Upstream failures Envoy answers itself, by (status, response flag).
_UPSTREAM_FAILURES = (
    _UpstreamFailure(503, "UH", "no_healthy_upstream"),
    _UpstreamFailure(503, "UF", "upstream_connect_failure"),
    _UpstreamFailure(503, "UO", "upstream_overflow"),
    _UpstreamFailure(503, "URX", "upstream_retry_limit_exceeded"),
    _UpstreamFailure(503, "UC", "upstream_connection_terminated"),
    _UpstreamFailure(503, "NC", "upstream_cluster_not_found"),
    _UpstreamFailure(504, "UT", "upstream_timeout"),
    _UpstreamFailure(504, "SI", "upstream_idle_timeout"),
)

ROUTE_NOT_FOUND_CODE = "route_not_found"
METHOD_NOT_ALLOWED_CODE = "method_not_allowed"
PAYLOAD_TOO_LARGE_CODE = "request_too_large"
ROUTING_UNAVAILABLE_CODE = "routing_unavailable"
ROUTING_UNAVAILABLE_MESSAGE = (
    "the routing sidecar could not be reached or did not answer in time; retry shortly"
)

# Gateway authentication (`auth`): what Envoy's api_key_auth and jwt_authn filters say
# in a refusal's response code details, and what we say instead.
MISSING_API_KEY_CODE = "missing_api_key"
MISSING_API_KEY_MESSAGE = (
    "missing API key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
)
INVALID_API_KEY_CODE = "invalid_api_key"
INVALID_API_KEY_MESSAGE = "invalid API key"
MISSING_TOKEN_CODE = "missing_token"
MISSING_TOKEN_MESSAGE = (
    "missing token: send a JWT as 'Authorization: Bearer <token>' or 'x-api-key: <token>'"
)
INVALID_TOKEN_CODE = "invalid_token"
_API_KEY_MISSING_DETAILS = ("missing_api_key",)
# Envoy 1.40 spells it "unkonwn"; the right spelling too, for when that is fixed.
_API_KEY_UNKNOWN_DETAILS = ("unkonwn_api_key", "unknown_api_key")
_JWT_DETAILS_PREFIX = "jwt_authn_access_denied"
_JWT_MISSING_DETAILS = (f"{_JWT_DETAILS_PREFIX}{{Jwt_is_missing}}",)
# RFC 6750's challenge for a missing or wrong key (jwt_authn sends its own).
_API_KEY_CHALLENGE = base_pb2.HeaderValueOption(
    header=base_pb2.HeaderValue(key="www-authenticate", value='Bearer realm="meshroute"'),
    append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
)


def local_reply_config(served_paths: list[str], max_request_bytes: int) -> hcm_pb2.LocalReplyConfig:
    """JSON errors for every local reply of a listener serving exactly `served_paths`.

    A 404 for any other path can only come from the catch-all route, a 405 only from
    the method check, and a 413 only from the body limit; the ext_proc filter marks
    its own failures in the response code details.
    """
    mappers = [
        # Answers the gateway gives itself on purpose (the model list) keep their body.
        hcm_pb2.ResponseMapper(
            filter=_status_is(200),
            body_format_override=substitution_format_string_pb2.SubstitutionFormatString(
                text_format_source=base_pb2.DataSource(inline_string=_ENVOY_BODY),
                content_type="application/json",
            ),
        ),
        _mapper(
            _status_is(413),
            _error_body(
                413,
                code=PAYLOAD_TOO_LARGE_CODE,
                message=f"the request body is larger than this gateway accepts "
                f"(maxRequestBytes: {max_request_bytes} bytes)",
            ),
        ),
        _mapper(
            _all_of(_status_is(404), _path_is_not(served_paths))
            if served_paths
            else _status_is(404),
            _error_body(404, code=ROUTE_NOT_FOUND_CODE),
        ),
        _mapper(_status_is(405), _error_body(405, code=METHOD_NOT_ALLOWED_CODE)),
        *_authentication_mappers(),
        # The ext_proc stream failed (sidecar down, or too slow) and failureMode is
        # closed. Envoy's own text for this is empty; say what happened.
        _mapper(
            _all_of(_status_is(503), _details_start_with("ext_proc_error")),
            _error_body(503, code=ROUTING_UNAVAILABLE_CODE, message=ROUTING_UNAVAILABLE_MESSAGE),
        ),
    ]
    mappers += [
        _mapper(
            _all_of(_status_is(failure.status), _flag_is(failure.flag)),
            _error_body(failure.status, code=failure.code),
        )
        for failure in _UPSTREAM_FAILURES
    ]
    mappers += [_mapper(_status_is(status), _error_body(status)) for status in ERROR_TYPES]
    return hcm_pb2.LocalReplyConfig(mappers=mappers, body_format=_error_body(None))


def _authentication_mappers() -> list[hcm_pb2.ResponseMapper]:
    """Refusals of the Gateway's `auth` filter, as 401 authentication_error with a code
    a client can act on. jwt_authn answers a token for another audience with 403; that
    is one more invalid token here, so 401 as well (and RFC 6750 agrees)."""
    mappers = [
        _mapper(
            _details_in(_API_KEY_MISSING_DETAILS),
            _error_body(401, code=MISSING_API_KEY_CODE, message=MISSING_API_KEY_MESSAGE),
        ),
        _mapper(
            _details_in(_API_KEY_UNKNOWN_DETAILS),
            _error_body(401, code=INVALID_API_KEY_CODE, message=INVALID_API_KEY_MESSAGE),
        ),
        _mapper(
            _details_in(_JWT_MISSING_DETAILS),
            _error_body(401, code=MISSING_TOKEN_CODE, message=MISSING_TOKEN_MESSAGE),
        ),
        _mapper(
            _details_start_with(_JWT_DETAILS_PREFIX),
            _error_body(401, code=INVALID_TOKEN_CODE, message=f"invalid token: {_ENVOY_BODY}"),
        ),
    ]
    for mapper in mappers:
        mapper.status_code.value = 401
    for mapper in mappers[:2]:
        mapper.headers_to_add.append(_API_KEY_CHALLENGE)
    return mappers


def _error_body(
    status: int | None, code: str = _ENVOY_DETAILS, message: str = _ENVOY_BODY
) -> substitution_format_string_pb2.SubstitutionFormatString:
    body = struct_pb2.Struct()
    body.get_or_create_struct("error").update(
        {
            "type": ERROR_TYPES.get(status, _OTHER_ERROR_TYPE) if status else _OTHER_ERROR_TYPE,
            "message": message,
            "code": code,
        }
    )
    return substitution_format_string_pb2.SubstitutionFormatString(
        json_format=body, content_type="application/json"
    )


def _mapper(
    condition: accesslog_pb2.AccessLogFilter,
    body: substitution_format_string_pb2.SubstitutionFormatString,
) -> hcm_pb2.ResponseMapper:
    return hcm_pb2.ResponseMapper(filter=condition, body_format_override=body)


def _status_is(status: int) -> accesslog_pb2.AccessLogFilter:
    return accesslog_pb2.AccessLogFilter(
        status_code_filter=accesslog_pb2.StatusCodeFilter(
            comparison=accesslog_pb2.ComparisonFilter(
                op=accesslog_pb2.ComparisonFilter.EQ,
                # Envoy requires a runtime key here; nothing sets it, so the default holds.
                value=base_pb2.RuntimeUInt32(
                    default_value=status, runtime_key="meshroute.local_reply.status"
                ),
            )
        )
    )


def _flag_is(flag: str) -> accesslog_pb2.AccessLogFilter:
    return accesslog_pb2.AccessLogFilter(
        response_flag_filter=accesslog_pb2.ResponseFlagFilter(flags=[flag])
    )


def _details_start_with(prefix: str) -> accesslog_pb2.AccessLogFilter:
    return _cel(f"response.code_details.startsWith('{prefix}')")


def _details_in(values: tuple[str, ...]) -> accesslog_pb2.AccessLogFilter:
    listed = ", ".join(f"'{value}'" for value in values)
    return _cel(f"response.code_details in [{listed}]")


def _cel(expression: str) -> accesslog_pb2.AccessLogFilter:
    return accesslog_pb2.AccessLogFilter(
        extension_filter=accesslog_pb2.ExtensionFilter(
            name="envoy.access_loggers.extension_filters.cel",
            typed_config=pack(cel_pb2.ExpressionFilter(expression=expression)),
        )
    )


def _path_is_not(paths: list[str]) -> accesslog_pb2.AccessLogFilter:
    alternatives = "|".join(re.escape(path) for path in paths)
    return accesslog_pb2.AccessLogFilter(
        header_filter=accesslog_pb2.HeaderFilter(
            header=route_components_pb2.HeaderMatcher(
                name=":path",
                string_match=string_pb2.StringMatcher(
                    safe_regex=regex_pb2.RegexMatcher(regex=rf"^({alternatives})(\?.*)?$")
                ),
                invert_match=True,
            )
        )
    )


def _all_of(*filters: accesslog_pb2.AccessLogFilter) -> accesslog_pb2.AccessLogFilter:
    return accesslog_pb2.AccessLogFilter(and_filter=accesslog_pb2.AndFilter(filters=filters))
