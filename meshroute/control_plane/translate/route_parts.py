"""Route pieces both kinds of gateway (and the internal listener) are built from."""

from __future__ import annotations

from datetime import timedelta

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.ext_proc.v3 import ext_proc_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import wrappers_pb2

from meshroute.control_plane.config.policies import ResolvedPolicy, RetriesSpec
from meshroute.control_plane.translate import names
from meshroute.control_plane.translate.protos import Built, duration, pack, set_header, value_key

EXT_PROC_OFF = pack(ext_proc_pb2.ExtProcPerRoute(disabled=True))
"""Per-route config for routes that need no decision: the sidecar is not asked."""


def echo(header: str) -> base_pb2.HeaderValueOption:
    """Copy a request header (set by the sidecar) onto the response."""
    return set_header(header, f"%REQ({header})%")


def method_is(method: str) -> route_components_pb2.HeaderMatcher:
    return route_components_pb2.HeaderMatcher(
        name=":method", string_match=string_pb2.StringMatcher(exact=method)
    )


def post_to(
    path: str, *headers: route_components_pb2.HeaderMatcher
) -> route_components_pb2.RouteMatch:
    return route_components_pb2.RouteMatch(path=path, headers=[method_is("POST"), *headers])


def forward(
    path: str | None, idle_timeout: timedelta, policy: ResolvedPolicy
) -> route_components_pb2.RouteAction:
    """To an upstream, with its policy; `path` replaces the matched path (or prefix).
    Built once per distinct input (protos.Built): every route to an upstream asks."""
    return _ACTIONS.get(
        (path, idle_timeout, value_key(policy)), lambda: _forward(path, idle_timeout, policy)
    )


_ACTIONS: Built[route_components_pb2.RouteAction] = Built()


def _forward(
    path: str | None, idle_timeout: timedelta, policy: ResolvedPolicy
) -> route_components_pb2.RouteAction:
    action = route_components_pb2.RouteAction(
        auto_host_rewrite=wrappers_pb2.BoolValue(value=True),
        # No total timeout: a long stream is not cut. The idle timeout bounds silence.
        timeout=duration(timedelta(0)),
        idle_timeout=duration(idle_timeout),
    )
    if path is not None:
        action.prefix_rewrite = path
    if policy.retries.attempts:
        action.retry_policy.CopyFrom(retry_policy(policy.retries))
    hash_on = policy.load_balancing.hash_on
    if hash_on is not None:
        action.hash_policy.append(
            route_components_pb2.RouteAction.HashPolicy(
                header=route_components_pb2.RouteAction.HashPolicy.Header(
                    header_name=hash_on.header.lower()
                )
            )
        )
    return action


def retry_policy(spec: RetriesSpec) -> route_components_pb2.RetryPolicy:
    conditions: list[str] = [c for c in spec.retry_on if isinstance(c, str)]
    codes = [code for code in spec.retry_on if isinstance(code, int)]
    if codes:
        conditions.append("retriable-status-codes")
    policy = route_components_pb2.RetryPolicy(
        retry_on=",".join(conditions),
        num_retries=wrappers_pb2.UInt32Value(value=spec.attempts),
        retriable_status_codes=codes,
        retry_back_off=route_components_pb2.RetryPolicy.RetryBackOff(
            base_interval=duration(spec.backoff.base), max_interval=duration(spec.backoff.max)
        ),
    )
    if spec.per_try_timeout is not None:
        policy.per_try_timeout.CopyFrom(duration(spec.per_try_timeout))
    if spec.other_host:
        policy.retry_host_predicate.append(
            route_components_pb2.RetryPolicy.RetryHostPredicate(
                name="envoy.retry_host_predicates.previous_hosts",
                typed_config=pack(previous_hosts_pb2.PreviousHostsPredicate()),
            )
        )
        policy.host_selection_retry_max_attempts = 5
    return policy


def method_not_allowed(path: str, allowed: str) -> route_components_pb2.Route:
    route = route_components_pb2.Route(
        name=f"method_not_allowed{path}",
        match=route_components_pb2.RouteMatch(path=path),
        direct_response=route_components_pb2.DirectResponseAction(status=405),
        typed_per_filter_config={names.EXT_PROC_FILTER: EXT_PROC_OFF},
    )
    route.direct_response.body.inline_string = f"use {allowed} for {path}"
    route.response_headers_to_add.append(set_header("allow", allowed))
    return route


def not_found(message: str) -> route_components_pb2.Route:
    route = route_components_pb2.Route(
        name="not_found",
        match=route_components_pb2.RouteMatch(prefix="/"),
        direct_response=route_components_pb2.DirectResponseAction(status=404),
        typed_per_filter_config={names.EXT_PROC_FILTER: EXT_PROC_OFF},
    )
    route.direct_response.body.inline_string = message
    return route
