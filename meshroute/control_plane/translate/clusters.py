"""Agent or LLMProvider -> Cluster(s): where Envoy sends a request, and how it treats
the hosts there (balancing, ejection, limits, health checks, TLS).

An agent with variants becomes one cluster per variant, all with the agent's policy;
the route splits traffic between them by weight.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import (
    address_pb2,
    base_pb2,
    config_source_pb2,
    extension_pb2,
    health_check_pb2,
    protocol_pb2,
)
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.filters.http.credential_injector.v3 import credential_injector_pb2
from envoy.extensions.filters.http.upstream_codec.v3 import upstream_codec_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.http.injected_credentials.generic.v3 import generic_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.matcher.v3 import string_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import wrappers_pb2

from meshroute.control_plane.config.model import Agent, Config, Endpoint, LLMProvider
from meshroute.control_plane.config.policies import ResolvedPolicy, TlsSpec
from meshroute.control_plane.credentials import Credential
from meshroute.control_plane.translate.names import (
    agent_cluster,
    provider_cluster,
    provider_key_secret,
    variant_cluster,
)
from meshroute.control_plane.translate.protos import Built, duration, pack, value_key

HTTP_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

_LB_POLICIES = {
    "ROUND_ROBIN": cluster_pb2.Cluster.ROUND_ROBIN,
    "LEAST_REQUEST": cluster_pb2.Cluster.LEAST_REQUEST,
    "RING_HASH": cluster_pb2.Cluster.RING_HASH,
}


def agent_clusters(agent: Agent, config: Config, ca_bundle: str) -> list[cluster_pb2.Cluster]:
    policy = config.policies[agent.ref]
    if agent.spec.variants:
        return [
            _upstream_cluster(variant_cluster(agent.name, v.name), v.endpoints, policy, ca_bundle)
            for v in agent.spec.variants
        ]
    return [_upstream_cluster(agent_cluster(agent.name), agent.spec.endpoints, policy, ca_bundle)]


def provider_cluster_resource(
    provider: LLMProvider, config: Config, ca_bundle: str, credential: Credential | None
) -> cluster_pb2.Cluster:
    cluster = _upstream_cluster(
        provider_cluster(provider.name),
        [provider.spec.endpoint],
        config.policies[provider.ref],
        ca_bundle,
    )
    if credential is not None:
        _inject_key(cluster, credential)
    return cluster


def key_secret(credential: Credential) -> secret_pb2.Secret:
    """The provider's key as Envoy holds it: a generic secret, served over ADS (SDS)."""
    return secret_pb2.Secret(
        name=provider_key_secret(credential.provider),
        generic_secret=secret_pb2.GenericSecret(
            secret=base_pb2.DataSource(inline_string=credential.value)
        ),
    )


def _inject_key(cluster: cluster_pb2.Cluster, credential: Credential) -> None:
    """Every request to this provider gets the key, added by Envoy on the way out (an
    upstream filter of this cluster only), whatever route or path it came by."""
    generic = generic_pb2.Generic(
        credential=secret_pb2.SdsSecretConfig(
            name=provider_key_secret(credential.provider),
            sds_config=config_source_pb2.ConfigSource(
                ads=config_source_pb2.AggregatedConfigSource(),
                resource_api_version=config_source_pb2.V3,
            ),
        ),
        header=credential.header,
    )
    injector = credential_injector_pb2.CredentialInjector(
        overwrite=True,
        credential=extension_pb2.TypedExtensionConfig(
            name="envoy.http.injected_credentials.generic", typed_config=pack(generic)
        ),
    )
    options = http_protocol_options_pb2.HttpProtocolOptions(
        explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
            http_protocol_options=protocol_pb2.Http1ProtocolOptions()
        ),
        http_filters=[
            hcm_pb2.HttpFilter(
                name="envoy.filters.http.credential_injector", typed_config=pack(injector)
            ),
            hcm_pb2.HttpFilter(
                name="envoy.filters.http.upstream_codec",
                typed_config=pack(upstream_codec_pb2.UpstreamCodec()),
            ),
        ],
    )
    cluster.typed_extension_protocol_options[HTTP_OPTIONS_KEY].CopyFrom(pack(options))


def _upstream_cluster(
    name: str, endpoints: Sequence[Endpoint], policy: ResolvedPolicy, ca_bundle: str
) -> cluster_pb2.Cluster:
    """Built once per distinct input (protos.Built): a reload rebuilds every cluster,
    and most are what they were."""
    key = (name, tuple(endpoints), value_key(policy), ca_bundle)
    return _CLUSTERS.get(key, lambda: _build_cluster(name, endpoints, policy, ca_bundle))


_CLUSTERS: Built[cluster_pb2.Cluster] = Built()


def _build_cluster(
    name: str, endpoints: Sequence[Endpoint], policy: ResolvedPolicy, ca_bundle: str
) -> cluster_pb2.Cluster:
    cluster = cluster_pb2.Cluster(
        name=name,
        connect_timeout=duration(policy.connect_timeout),
        lb_policy=_LB_POLICIES[policy.load_balancing.policy],
        load_assignment=load_assignment(name, endpoints),
        outlier_detection=_outlier_detection(policy),
        circuit_breakers=_circuit_breakers(policy),
    )
    if all(endpoint.is_ip for endpoint in endpoints):
        cluster.type = cluster_pb2.Cluster.STATIC
    else:
        cluster.type = cluster_pb2.Cluster.STRICT_DNS
        cluster.dns_lookup_family = cluster_pb2.Cluster.V4_PREFERRED
    if policy.health_check is not None:
        check = policy.health_check
        cluster.health_checks.append(
            health_check_pb2.HealthCheck(
                timeout=duration(check.timeout),
                interval=duration(check.interval),
                # Envoy checks idle clusters only once a minute unless told otherwise;
                # `interval` means the interval.
                no_traffic_interval=duration(check.interval),
                no_traffic_healthy_interval=duration(check.interval),
                healthy_threshold=wrappers_pb2.UInt32Value(value=check.healthy_threshold),
                unhealthy_threshold=wrappers_pb2.UInt32Value(value=check.unhealthy_threshold),
                http_health_check=health_check_pb2.HealthCheck.HttpHealthCheck(path=check.path),
            )
        )
    if any(endpoint.tls for endpoint in endpoints):
        use_tls(cluster, policy.tls, endpoints[0].host, ca_bundle)
    return cluster


def _outlier_detection(policy: ResolvedPolicy) -> outlier_detection_pb2.OutlierDetection:
    spec = policy.outlier_detection
    return outlier_detection_pb2.OutlierDetection(
        consecutive_5xx=wrappers_pb2.UInt32Value(value=spec.consecutive_5xx),
        consecutive_gateway_failure=wrappers_pb2.UInt32Value(
            value=spec.consecutive_gateway_failures
        ),
        # Envoy counts gateway failures but does not act on them unless told to.
        enforcing_consecutive_gateway_failure=wrappers_pb2.UInt32Value(value=100),
        interval=duration(spec.interval),
        base_ejection_time=duration(spec.base_ejection_time),
        max_ejection_percent=wrappers_pb2.UInt32Value(value=spec.max_ejection_percent),
    )


def _circuit_breakers(policy: ResolvedPolicy) -> circuit_breaker_pb2.CircuitBreakers:
    spec = policy.circuit_breaker
    thresholds = circuit_breaker_pb2.CircuitBreakers.Thresholds(
        priority=base_pb2.DEFAULT,
        max_connections=wrappers_pb2.UInt32Value(value=spec.max_connections),
        max_pending_requests=wrappers_pb2.UInt32Value(value=spec.max_pending_requests),
        max_requests=wrappers_pb2.UInt32Value(value=spec.max_requests),
        max_retries=wrappers_pb2.UInt32Value(value=spec.max_retries),
    )
    if spec.retry_budget is not None:
        thresholds.retry_budget.budget_percent.CopyFrom(
            percent_pb2.Percent(value=spec.retry_budget.percent)
        )
        thresholds.retry_budget.min_retry_concurrency.value = spec.retry_budget.min_concurrency
    return circuit_breaker_pb2.CircuitBreakers(thresholds=[thresholds])


def service_cluster(
    name: str,
    endpoint: Endpoint,
    connect_timeout: timedelta,
    ca_bundle: str,
    alpn_protocols: Sequence[str] = (),
) -> cluster_pb2.Cluster:
    """A cluster for a service Envoy itself calls (an OpenTelemetry collector, a JWKS
    endpoint): one address, found by DNS as a Service is, over TLS checked against
    the system CA bundle (with SNI) when it is https. No policy of ours applies."""
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.STRICT_DNS,
        dns_lookup_family=cluster_pb2.Cluster.V4_PREFERRED,
        connect_timeout=duration(connect_timeout),
        load_assignment=load_assignment(name, [endpoint]),
    )
    if endpoint.tls:
        use_tls(cluster, TlsSpec(), endpoint.host, ca_bundle, alpn_protocols=alpn_protocols)
    return cluster


def speak_http2(cluster: cluster_pb2.Cluster) -> None:
    """HTTP/2 to the cluster's hosts whatever the client spoke: gRPC services need it."""
    options = http_protocol_options_pb2.HttpProtocolOptions(
        explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
            http2_protocol_options=protocol_pb2.Http2ProtocolOptions()
        )
    )
    cluster.typed_extension_protocol_options[HTTP_OPTIONS_KEY].CopyFrom(pack(options))


def load_assignment(
    cluster_name: str, endpoints: Sequence[Endpoint]
) -> endpoint_pb2.ClusterLoadAssignment:
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=cluster_name,
        endpoints=[
            endpoint_components_pb2.LocalityLbEndpoints(
                lb_endpoints=[_lb_endpoint(endpoint) for endpoint in endpoints]
            )
        ],
    )


def _lb_endpoint(endpoint: Endpoint) -> endpoint_components_pb2.LbEndpoint:
    return endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(
            address=address_pb2.Address(
                socket_address=address_pb2.SocketAddress(
                    address=endpoint.host, port_value=endpoint.port
                )
            ),
            # The Host header and TLS SNI for this endpoint (routes use
            # auto_host_rewrite), and for its health checks.
            hostname=endpoint.host,
            health_check_config=endpoint_components_pb2.Endpoint.HealthCheckConfig(
                hostname=endpoint.host
            ),
        )
    )


def use_tls(
    cluster: cluster_pb2.Cluster,
    spec: TlsSpec,
    hostname: str,
    ca_bundle: str,
    alpn_protocols: Sequence[str] = (),
) -> None:
    """TLS to the upstream: SNI `hostname`, and a certificate for it signed by the
    system's CA bundle or the one given. `alpn_protocols` for upstreams that insist
    on ALPN (gRPC servers want "h2").

    The name is fixed per cluster (the config loader requires one hostname per set of
    https endpoints): Envoy picks SNI before it picks a host, so it cannot follow the
    Host header that auto_host_rewrite sets later.
    """
    trusted_ca = (
        base_pb2.DataSource(inline_string=spec.ca_pem)
        if spec.ca_pem
        else base_pb2.DataSource(filename=spec.ca_file or ca_bundle)
    )
    san = common_pb2.SubjectAltNameMatcher(
        san_type=common_pb2.SubjectAltNameMatcher.DNS,
        matcher=string_pb2.StringMatcher(exact=hostname),
    )
    set_transport_tls(cluster, upstream_tls_context(hostname, san, trusted_ca, alpn_protocols))


def upstream_tls_context(
    sni: str,
    san: common_pb2.SubjectAltNameMatcher,
    trusted_ca: base_pb2.DataSource,
    alpn_protocols: Sequence[str] = (),
    certificate: common_pb2.TlsCertificate | None = None,
) -> tls_pb2.UpstreamTlsContext:
    """Envoy's side of TLS to an upstream: the server's certificate must be signed by
    `trusted_ca` and carry `san`; `sni` ("" for none) names the server in the
    handshake; `certificate` is the one Envoy presents (mutual TLS)."""
    common = tls_pb2.CommonTlsContext(
        validation_context=common_pb2.CertificateValidationContext(
            trusted_ca=trusted_ca, match_typed_subject_alt_names=[san]
        ),
        alpn_protocols=alpn_protocols,
    )
    if certificate is not None:
        common.tls_certificates.append(certificate)
    return tls_pb2.UpstreamTlsContext(sni=sni, common_tls_context=common)


def set_transport_tls(cluster: cluster_pb2.Cluster, tls: tls_pb2.UpstreamTlsContext) -> None:
    cluster.transport_socket.name = "envoy.transport_sockets.tls"
    cluster.transport_socket.typed_config.Pack(tls)
