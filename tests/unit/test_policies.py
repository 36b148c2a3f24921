"""Upstream policies: how they are written, defaulted, checked, and translated for Envoy."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from meshroute.control_plane.config import ConfigError, ConfigErrors, load_config
from meshroute.control_plane.translate.deployment import DeploymentSettings
from meshroute.control_plane.translate.snapshot import Resources, translate
from tests.support.configs import agent_yaml, documents, gateway_yaml

ENDPOINT = "http://10.0.0.1:80"


def load(tmp_path: Path, *parts: str) -> Resources:
    path = tmp_path / "config.yaml"
    path.write_text(documents(*parts))
    return translate(load_config([path]), DeploymentSettings(ca_bundle="/etc/test-ca.pem"))


def errors(tmp_path: Path, *parts: str) -> list[ConfigError]:
    path = tmp_path / "config.yaml"
    path.write_text(documents(*parts))
    with pytest.raises(ConfigErrors) as caught:
        load_config([path])
    return caught.value.errors


def agent_with(name: str, policy: str, endpoints: str = f'["{ENDPOINT}"]') -> str:
    return (
        textwrap.dedent(
            f"""\
        apiVersion: meshroute.io/v1alpha1
        kind: Agent
        metadata: {{name: {name}}}
        spec:
          description: the {name} agent
          endpoints: {endpoints}
        """
        )
        + textwrap.indent(textwrap.dedent(policy).strip("\n"), "  ")
        + "\n"
    )


def cluster(resources: Resources, name: str) -> cluster_pb2.Cluster:
    return next(c for c in resources.clusters if c.name == name)


def gateway_route(resources: Resources, name: str) -> route_components_pb2.Route:
    config = next(c for c in resources.routes if c.name.startswith("gateway_"))
    return next(r for r in config.virtual_hosts[0].routes if r.name == name)


def test_defaults_are_safe_for_model_calls(tmp_path: Path) -> None:
    resources = load(tmp_path, agent_yaml("a", "A", ENDPOINT), gateway_yaml("g", 8000, ["a"], "a"))
    built = cluster(resources, "agent_a")
    assert built.lb_policy == cluster_pb2.Cluster.LEAST_REQUEST
    assert built.connect_timeout.ToTimedelta().total_seconds() == 5
    assert built.outlier_detection.consecutive_5xx.value == 5
    assert built.outlier_detection.enforcing_consecutive_gateway_failure.value == 100
    assert built.circuit_breakers.thresholds[0].max_requests.value == 1024
    assert not built.health_checks  # not every agent has a health endpoint
    retry = gateway_route(resources, "agent_a").route.retry_policy
    # Only failures where the request never reached the agent: a model call is not free.
    assert retry.retry_on == "connect-failure,refused-stream,reset-before-request"
    assert retry.num_retries.value == 2
    assert retry.retry_host_predicate[0].name == "envoy.retry_host_predicates.previous_hosts"
    assert not retry.HasField("per_try_timeout")  # streams are not cut


def test_every_policy_reaches_envoy(tmp_path: Path) -> None:
    policy = """
    retries: {attempts: 3, retryOn: [5xx, reset, 429, 503], perTryTimeout: 20s,
              backoff: {base: 100ms, max: 1s}, otherHost: false}
    outlierDetection: {consecutive5xx: 7, consecutiveGatewayFailures: 4, interval: 2s,
                       baseEjectionTime: 45s, maxEjectionPercent: 33}
    circuitBreaker: {maxConnections: 10, maxPendingRequests: 11, maxRequests: 12,
                     retryBudget: {percent: 25, minConcurrency: 2}}
    healthCheck: {path: /ready, interval: 3s, timeout: 500ms, healthyThreshold: 2,
                  unhealthyThreshold: 4}
    loadBalancing: {policy: RING_HASH, hashOn: {header: X-Session-Id}}
    connectTimeout: 750ms
    """
    resources = load(tmp_path, agent_with("a", policy), gateway_yaml("g", 8000, ["a"], "a"))
    built = cluster(resources, "agent_a")
    assert built.lb_policy == cluster_pb2.Cluster.RING_HASH
    assert built.connect_timeout.ToMilliseconds() == 750
    detection = built.outlier_detection
    assert (detection.consecutive_5xx.value, detection.consecutive_gateway_failure.value) == (7, 4)
    assert detection.interval.seconds == 2
    assert detection.base_ejection_time.seconds == 45
    assert detection.max_ejection_percent.value == 33
    limits = built.circuit_breakers.thresholds[0]
    assert (limits.max_connections.value, limits.max_pending_requests.value) == (10, 11)
    assert limits.max_requests.value == 12
    assert limits.retry_budget.budget_percent.value == 25
    assert limits.retry_budget.min_retry_concurrency.value == 2
    [check] = built.health_checks
    assert check.http_health_check.path == "/ready"
    assert (check.interval.seconds, check.timeout.ToMilliseconds()) == (3, 500)
    assert check.no_traffic_interval.seconds == 3  # idle clusters are checked as often
    assert (check.healthy_threshold.value, check.unhealthy_threshold.value) == (2, 4)

    action = gateway_route(resources, "agent_a").route
    retry = action.retry_policy
    assert retry.retry_on == "5xx,reset,retriable-status-codes"
    assert list(retry.retriable_status_codes) == [429, 503]
    assert retry.num_retries.value == 3
    assert retry.per_try_timeout.seconds == 20
    assert retry.retry_back_off.base_interval.ToMilliseconds() == 100
    assert not retry.retry_host_predicate
    assert action.hash_policy[0].header.header_name == "x-session-id"


def test_variants_become_weighted_clusters_that_name_themselves(tmp_path: Path) -> None:
    variants = """
    variants:
      - {name: stable, weight: 90, endpoints: ["http://10.0.0.1:80"]}
      - {name: canary, weight: 10, endpoints: ["http://10.0.0.2:80"]}
    """
    agent = agent_with("a", variants, endpoints="[]").replace("  endpoints: []\n", "")
    resources = load(tmp_path, agent, gateway_yaml("g", 8000, ["a"], "a"))
    assert {c.name for c in resources.clusters} == {"agent_a_stable", "agent_a_canary"}
    weighted = gateway_route(resources, "agent_a").route.weighted_clusters.clusters
    assert [(w.name, w.weight.value) for w in weighted] == [
        ("agent_a_stable", 90),
        ("agent_a_canary", 10),
    ]
    assert weighted[1].response_headers_to_add[0].header.key == "x-meshroute-variant"
    assert weighted[1].response_headers_to_add[0].header.value == "canary"


def test_https_trusts_the_system_bundle_or_the_given_ca(tmp_path: Path) -> None:
    resources = load(
        tmp_path,
        agent_with("system", "", endpoints='["https://a.example.com"]'),
        agent_with("own", "tls: {caFile: /etc/own-ca.pem}", endpoints='["https://b.example.com"]'),
        gateway_yaml("g", 8000, ["system", "own"], "system"),
    )

    def trusted(name: str) -> str:
        context = tls_pb2.UpstreamTlsContext()
        assert cluster(resources, name).transport_socket.typed_config.Unpack(context)
        return str(context.common_tls_context.validation_context.trusted_ca.filename)

    assert trusted("agent_system") == "/etc/test-ca.pem"
    assert trusted("agent_own") == "/etc/own-ca.pem"


def test_gateway_defaults_fill_what_an_agent_leaves_unset(tmp_path: Path) -> None:
    gateway = gateway_yaml(
        "g",
        8000,
        ["a", "b"],
        "a",
        "defaults: {retries: {attempts: 5}, connectTimeout: 2s}",
    )
    resources = load(
        tmp_path,
        agent_yaml("a", "A", ENDPOINT),
        agent_with("b", "retries: {attempts: 1}"),
        gateway,
    )
    assert gateway_route(resources, "agent_a").route.retry_policy.num_retries.value == 5
    assert gateway_route(resources, "agent_b").route.retry_policy.num_retries.value == 1
    assert cluster(resources, "agent_b").connect_timeout.seconds == 2


def test_two_gateways_cannot_default_one_agent_differently(tmp_path: Path) -> None:
    found = errors(
        tmp_path,
        agent_yaml("a", "A", ENDPOINT),
        gateway_yaml("g1", 8000, ["a"], "a", "defaults: {connectTimeout: 1s}"),
        gateway_yaml("g2", 8001, ["a"], "a", "defaults: {connectTimeout: 2s}"),
    )
    [error] = found
    assert error.field == "spec.defaults.connectTimeout"
    assert "Agent/a is used by Gateways g1, g2" in error.message
    assert "set it on Agent/a itself" in error.message


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("loadBalancing: {policy: RING_HASH}", "RING_HASH needs `hashOn"),
        ("loadBalancing: {hashOn: {header: x-id}}", "`hashOn` only applies"),
        ("retries: {retryOn: [teapot]}", "Input should be"),
        ("retries: {retryOn: [200]}", "greater than or equal to 400"),
        ("tls: {caFile: /a, caPem: b}", "not both"),
        ("outlierDetection: {maxEjectionPercent: 150}", "less than or equal to 100"),
    ],
)
def test_bad_policies_are_refused(tmp_path: Path, policy: str, message: str) -> None:
    found = errors(tmp_path, agent_with("a", policy), gateway_yaml("g", 8000, ["a"], "a"))
    assert any(message in error.message for error in found), found


def test_https_endpoints_of_one_variant_share_a_hostname(tmp_path: Path) -> None:
    found = errors(
        tmp_path,
        agent_with("a", "", endpoints='["https://a.example.com", "https://b.example.com"]'),
        gateway_yaml("g", 8000, ["a"], "a"),
    )
    assert any("share one hostname" in error.message for error in found), found
