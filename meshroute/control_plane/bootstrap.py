"""Envoy's bootstrap (envoy/bootstrap.yaml) filled in, and whole static configs for checks.

The template is the one file a Kubernetes ConfigMap also carries, so `meshroute up`
fills the very same file rather than building a second bootstrap in code.
"""

from __future__ import annotations

import logging
import string
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import yaml
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.credential_injector.v3 import credential_injector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.http.injected_credentials.generic.v3 import generic_pb2

# Imported for their types: the template names them inside Any fields.
from envoy.extensions.resource_monitors.downstream_connections.v3 import (  # noqa: F401
    downstream_connections_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import json_format

from meshroute.control_plane.translate.clusters import set_transport_tls, upstream_tls_context
from meshroute.control_plane.translate.names import EXT_PROC_CLUSTER
from meshroute.control_plane.translate.snapshot import Resources
from meshroute.data_files import bootstrap_template
from meshroute.envoy_binary import validate_config
from meshroute.xds_tls import XdsClientTls, is_ip_address

log = logging.getLogger("meshroute.control_plane")

XdsProtocol = Literal["sotw", "delta"]

API_TYPES: Final[dict[XdsProtocol, str]] = {"sotw": "GRPC", "delta": "DELTA_GRPC"}
"""The bootstrap's `ads_config.api_type` for each ADS flavour the control plane serves."""

XDS_CLUSTER: Final = "meshroute_xds"
"""The bootstrap's static cluster for the control plane (named in the template)."""


@dataclass(frozen=True)
class BootstrapSettings:
    node_id: str = "meshroute-envoy"
    node_cluster: str = "meshroute"
    admin_address: str = "127.0.0.1"
    admin_port: int = 9901
    xds_address: str = "127.0.0.1"
    xds_port: int = 18000
    ext_proc_address: str = "127.0.0.1"
    ext_proc_port: int = 18001
    ext_proc_workers: int = 1
    """Sidecar processes on ext_proc_port, ext_proc_port + 1, ... (`ext-proc --workers`)."""
    xds_protocol: XdsProtocol = "sotw"
    """State-of-the-World or incremental (delta) ADS; the control plane serves both."""
    health_address: str = "127.0.0.1"
    """Where Envoy answers GET /ready for probes (0.0.0.0 in a pod)."""
    health_port: int = 15021
    xds_tls: XdsClientTls | None = None
    """Reach the control plane over TLS (mutual, with a client certificate); None:
    plaintext. Its paths are read by Envoy, not here."""


def render_bootstrap(settings: BootstrapSettings) -> str:
    """The bootstrap template with `settings` written in, as YAML for `envoy -c`."""
    if settings.xds_protocol not in API_TYPES:  # a Literal is not checked at run time
        raise ValueError(
            f"unknown xDS protocol {settings.xds_protocol!r}; expected one of {sorted(API_TYPES)}"
        )
    template = string.Template(bootstrap_template().read_text(encoding="utf-8"))
    text = template.substitute(
        NODE_ID=settings.node_id,
        NODE_CLUSTER=settings.node_cluster,
        ADMIN_ADDRESS=settings.admin_address,
        ADMIN_PORT=settings.admin_port,
        XDS_ADDRESS=settings.xds_address,
        XDS_PORT=settings.xds_port,
        EXT_PROC_ADDRESS=settings.ext_proc_address,
        EXT_PROC_PORT=settings.ext_proc_port,
        XDS_API_TYPE=API_TYPES[settings.xds_protocol],
        HEALTH_ADDRESS=settings.health_address,
        HEALTH_PORT=settings.health_port,
    )
    bootstrap = parse_bootstrap(text)  # fail here, with a clear error, rather than in Envoy
    if settings.ext_proc_workers <= 1 and settings.xds_tls is None:
        return text  # the template as it is, comments and all
    if settings.ext_proc_workers > 1:
        _add_workers(bootstrap, settings)
    if settings.xds_tls is not None:
        _use_xds_tls(bootstrap, settings.xds_tls, settings.xds_address)
    return "# Generated from envoy/bootstrap.yaml.\n" + to_yaml(message_to_dict(bootstrap))


def _static_cluster(bootstrap: bootstrap_pb2.Bootstrap, name: str) -> cluster_pb2.Cluster:
    [cluster] = [c for c in bootstrap.static_resources.clusters if c.name == name]
    return cluster


def _add_workers(bootstrap: bootstrap_pb2.Bootstrap, settings: BootstrapSettings) -> None:
    """Every worker an endpoint of the ext_proc cluster (the template names one)."""
    [locality] = _static_cluster(bootstrap, EXT_PROC_CLUSTER).load_assignment.endpoints
    [first] = locality.lb_endpoints
    for index in range(1, settings.ext_proc_workers):
        worker = locality.lb_endpoints.add()
        worker.CopyFrom(first)
        worker.endpoint.address.socket_address.port_value = settings.ext_proc_port + index


def _use_xds_tls(bootstrap: bootstrap_pb2.Bootstrap, tls: XdsClientTls, xds_host: str) -> None:
    """TLS on the xDS cluster: the control plane's certificate checked against the CA
    and the expected name, and Envoy's own certificate presented when it has one."""
    set_transport_tls(_static_cluster(bootstrap, XDS_CLUSTER), xds_tls_context(tls, xds_host))


def xds_tls_context(tls: XdsClientTls, xds_host: str) -> tls_pb2.UpstreamTlsContext:
    """Envoy's side of the xDS TLS handshake.

    The expected name is matched as a DNS SAN, or an IP SAN for an address literal
    (which TLS may not send as SNI). ALPN h2: gRPC servers refuse TLS without it.
    """
    name = tls.expected_name(xds_host).strip("[]")
    ip = is_ip_address(name)
    san = common_pb2.SubjectAltNameMatcher(
        san_type=(
            common_pb2.SubjectAltNameMatcher.IP_ADDRESS
            if ip
            else common_pb2.SubjectAltNameMatcher.DNS
        ),
        matcher=string_pb2.StringMatcher(exact=name),
    )
    certificate = None
    if tls.cert_file is not None and tls.key_file is not None:
        certificate = common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(filename=tls.cert_file),
            private_key=base_pb2.DataSource(filename=tls.key_file),
        )
    return upstream_tls_context(
        sni="" if ip else name,
        san=san,
        trusted_ca=base_pb2.DataSource(filename=tls.server_ca_file),
        alpn_protocols=["h2"],
        certificate=certificate,
    )


def parse_bootstrap(text: str) -> bootstrap_pb2.Bootstrap:
    return json_format.ParseDict(yaml.safe_load(text), bootstrap_pb2.Bootstrap())


def static_bootstrap(resources: Resources, settings: BootstrapSettings) -> bootstrap_pb2.Bootstrap:
    """One self-contained bootstrap holding every resource of a snapshot, for Envoy to check.

    The listeners' RDS references become inline route configs, and secrets fetched
    over SDS become static secrets with stand-in values (validation mode crashes on
    SDS references; the real values never reach this file), so `envoy --mode
    validate` sees exactly what it would be served.
    """
    bootstrap = parse_bootstrap(render_bootstrap(settings))
    bootstrap.ClearField("dynamic_resources")
    del bootstrap.static_resources.listeners[:]  # only what the control plane serves
    routes = {route.name: route for route in resources.routes}
    for listener in resources.listeners:
        bootstrap.static_resources.listeners.append(inlined_listener(listener, routes))
    for cluster in resources.clusters:
        bootstrap.static_resources.clusters.append(with_static_secrets(cluster))
    for secret in resources.secrets:
        stand_in = bootstrap.static_resources.secrets.add(name=secret.name)
        stand_in.generic_secret.secret.inline_string = "REDACTED"
    return bootstrap


def inlined_listener(
    listener: listener_pb2.Listener, routes: Mapping[str, route_pb2.RouteConfiguration]
) -> listener_pb2.Listener:
    """A copy of `listener` whose RDS references are the route configs themselves:
    what Envoy would run once RDS answered, in a form a static config can hold."""
    inlined = listener_pb2.Listener()
    inlined.CopyFrom(listener)
    for chain in inlined.filter_chains:
        for network_filter in chain.filters:
            manager = hcm_pb2.HttpConnectionManager()
            if not network_filter.typed_config.Unpack(manager):
                continue
            if manager.HasField("rds"):
                name = manager.rds.route_config_name
                manager.route_config.CopyFrom(routes[name])
            # Deterministic: the bytes are how envoy_gate recognises what Envoy accepted.
            network_filter.typed_config.Pack(manager, deterministic=True)
    return inlined


def rds_names(listener: listener_pb2.Listener) -> list[str]:
    """The route configs `listener` asks for over RDS, in filter-chain order."""
    names = []
    for chain in listener.filter_chains:
        for network_filter in chain.filters:
            manager = hcm_pb2.HttpConnectionManager()
            if network_filter.typed_config.Unpack(manager) and manager.HasField("rds"):
                names.append(manager.rds.route_config_name)
    return names


def with_static_secrets(cluster: cluster_pb2.Cluster) -> cluster_pb2.Cluster:
    """`cluster` with its credential injector reading a static secret, not SDS."""
    key = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    if key not in cluster.typed_extension_protocol_options:
        return cluster
    copy = cluster_pb2.Cluster()
    copy.CopyFrom(cluster)
    options = http_protocol_options_pb2.HttpProtocolOptions()
    copy.typed_extension_protocol_options[key].Unpack(options)
    for http_filter in options.http_filters:
        injector = credential_injector_pb2.CredentialInjector()
        if not http_filter.typed_config.Unpack(injector):
            continue
        generic = generic_pb2.Generic()
        injector.credential.typed_config.Unpack(generic)
        generic.credential.ClearField("sds_config")
        injector.credential.typed_config.Pack(generic)
        http_filter.typed_config.Pack(injector)
    copy.typed_extension_protocol_options[key].Pack(options)
    return copy


class _Dumper(yaml.SafeDumper):
    """Safe YAML that also writes the OrderedDicts protobuf's JSON conversion makes."""


_Dumper.add_representer(OrderedDict, lambda dumper, data: dumper.represent_dict(data.items()))


def to_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)


def message_to_dict(message: Any) -> dict[str, Any]:
    result: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return result


def check_with_envoy(resources: Resources) -> None:
    """Ask Envoy itself (`--mode validate`) whether it would accept these resources.

    Our own checks catch what users get wrong; this last gate catches whatever they
    miss (an unreadable CA bundle, a value out of Envoy's range), before a snapshot
    is served rather than as a NACK after. EnvoyRejected says why.

    This checks everything, every time; the control plane's reloads go through
    `envoy_gate.envoy_refusal`, which asks Envoy only about what it has not accepted.
    """
    validate_config(static_bootstrap(resources, BootstrapSettings()).SerializeToString())
