"""Agent or LLMProvider -> Cluster: where Envoy sends a request, and how it connects."""

from __future__ import annotations

from datetime import timedelta

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from meshroute.control_plane.config.model import Agent, Endpoint, LLMProvider
from meshroute.control_plane.translate.names import agent_cluster, provider_cluster
from meshroute.control_plane.translate.protos import duration, pack

CONNECT_TIMEOUT = timedelta(seconds=5)
_HTTP_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def agent_cluster_resource(agent: Agent) -> cluster_pb2.Cluster:
    return _upstream_cluster(agent_cluster(agent.name), agent.spec.endpoints)


def provider_cluster_resource(provider: LLMProvider) -> cluster_pb2.Cluster:
    return _upstream_cluster(provider_cluster(provider.name), [provider.spec.endpoint])


def _upstream_cluster(name: str, endpoints: list[Endpoint]) -> cluster_pb2.Cluster:
    cluster = cluster_pb2.Cluster(
        name=name,
        connect_timeout=duration(CONNECT_TIMEOUT),
        # Model and agent calls are long and uneven; least-request keeps one slow
        # answer from piling more requests onto the same host.
        lb_policy=cluster_pb2.Cluster.LEAST_REQUEST,
        load_assignment=_load_assignment(name, endpoints),
    )
    if all(endpoint.is_ip for endpoint in endpoints):
        cluster.type = cluster_pb2.Cluster.STATIC
    else:
        cluster.type = cluster_pb2.Cluster.STRICT_DNS
        cluster.dns_lookup_family = cluster_pb2.Cluster.V4_PREFERRED
    if any(endpoint.tls for endpoint in endpoints):
        _use_tls(cluster)
    return cluster


def _load_assignment(
    cluster_name: str, endpoints: list[Endpoint]
) -> endpoint_pb2.ClusterLoadAssignment:
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=cluster_name,
        endpoints=[
            endpoint_components_pb2.LocalityLbEndpoints(
                lb_endpoints=[
                    endpoint_components_pb2.LbEndpoint(
                        endpoint=endpoint_components_pb2.Endpoint(
                            address=address_pb2.Address(
                                socket_address=address_pb2.SocketAddress(
                                    address=endpoint.host, port_value=endpoint.port
                                )
                            ),
                            # The Host header and TLS SNI for this endpoint (routes
                            # use auto_host_rewrite).
                            hostname=endpoint.host,
                        )
                    )
                    for endpoint in endpoints
                ]
            )
        ],
    )


def _use_tls(cluster: cluster_pb2.Cluster) -> None:
    """TLS to the upstream, verified against the system's CA bundle.

    SNI and the certificate's expected name follow each request's Host header, which
    the route rewrites to the chosen endpoint's hostname, so one cluster can hold
    endpoints with different names.
    """
    tls = tls_pb2.UpstreamTlsContext(
        common_tls_context=tls_pb2.CommonTlsContext(
            validation_context=common_pb2.CertificateValidationContext(
                system_root_certs=common_pb2.CertificateValidationContext.SystemRootCerts()
            )
        )
    )
    cluster.transport_socket.name = "envoy.transport_sockets.tls"
    cluster.transport_socket.typed_config.Pack(tls)
    options = http_protocol_options_pb2.HttpProtocolOptions(
        upstream_http_protocol_options=protocol_pb2.UpstreamHttpProtocolOptions(
            auto_sni=True, auto_san_validation=True
        ),
        explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
            http_protocol_options=protocol_pb2.Http1ProtocolOptions()
        ),
    )
    cluster.typed_extension_protocol_options[_HTTP_OPTIONS_KEY].CopyFrom(pack(options))
