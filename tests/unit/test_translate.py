"""Config -> Envoy resources: the facts the data path relies on, checked on the messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.ext_proc.v3 import ext_proc_pb2, processing_mode_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from meshroute.api import contract
from meshroute.control_plane.bootstrap import (
    BootstrapSettings,
    message_to_dict,
    static_bootstrap,
    to_yaml,
)
from meshroute.control_plane.config import load_config
from meshroute.control_plane.translate.deployment import DeploymentSettings
from meshroute.control_plane.translate.snapshot import Resources, translate
from meshroute.envoy_binary import validate_config
from tests.support.configs import QUICKSTART, agent_yaml, documents, gateway_yaml


@pytest.fixture
def quickstart() -> Resources:
    return translate(load_config([QUICKSTART]), DeploymentSettings(bind_address="127.0.0.1"))


def manager_of(resources: Resources, name: str = "gateway_travel") -> hcm_pb2.HttpConnectionManager:
    [listener] = [listener for listener in resources.listeners if listener.name == name]
    manager = hcm_pb2.HttpConnectionManager()
    assert listener.filter_chains[0].filters[0].typed_config.Unpack(manager)
    return manager


def test_one_listener_per_gateway_on_its_port_with_the_body_limit(quickstart: Resources) -> None:
    listeners = {listener.name: listener for listener in quickstart.listeners}
    assert sorted(listeners) == ["gateway_llm", "gateway_travel", "meshroute_internal"]
    listener = listeners["gateway_travel"]
    assert listener.address.socket_address.address == "127.0.0.1"
    assert listener.address.socket_address.port_value == 8001
    assert listener.per_connection_buffer_limit_bytes.value == 8 * 2**20


def test_filter_chain_strips_client_headers_then_asks_ext_proc_then_routes(
    quickstart: Resources,
) -> None:
    manager = manager_of(quickstart)
    assert [f.name for f in manager.http_filters] == [
        "meshroute.strip_client_headers",
        "envoy.filters.http.ext_proc",
        "meshroute.usage_json",  # read the response only: no effect on routing
        "meshroute.usage_sse",
        "envoy.filters.http.router",
    ]
    assert manager.rds.route_config_name == "gateway_travel"
    assert manager.rds.config_source.HasField("ads")


def test_ext_proc_sees_headers_and_the_buffered_body_and_names_the_gateway(
    quickstart: Resources,
) -> None:
    processor = ext_proc_pb2.ExternalProcessor()
    assert manager_of(quickstart).http_filters[1].typed_config.Unpack(processor)
    mode = processing_mode_pb2.ProcessingMode
    assert processor.processing_mode.request_header_mode == mode.SEND
    assert processor.processing_mode.request_body_mode == mode.BUFFERED
    assert processor.processing_mode.response_header_mode == mode.SKIP
    assert processor.processing_mode.response_body_mode == mode.NONE
    assert processor.grpc_service.envoy_grpc.cluster_name == "meshroute_ext_proc"
    [metadata] = processor.grpc_service.initial_metadata
    assert (metadata.key, metadata.value) == (contract.GATEWAY_METADATA_KEY, "travel")
    assert not processor.failure_mode_allow
    assert processor.status_on_error.code == 503


def routes_by_name(
    resources: Resources, name: str = "gateway_travel"
) -> dict[str, route_components_pb2.Route]:
    [config] = [config for config in resources.routes if config.name == name]
    [host] = config.virtual_hosts
    return {route.name: route for route in host.routes}


def test_one_header_match_route_per_agent_then_the_fallbacks(quickstart: Resources) -> None:
    routes = routes_by_name(quickstart)
    assert list(routes) == [
        "agent_weather",
        "agent_flights",
        "agent_currency",
        "undecided",
        "method_not_allowed/v1/chat/completions",
        "not_found",
    ]
    flights = routes["agent_flights"]
    assert flights.match.path == "/v1/chat/completions"
    method, agent = flights.match.headers
    assert (method.name, method.string_match.exact) == (":method", "POST")
    # The route serves the last agent of a sequence ("weather,flights").
    assert agent.name == contract.AGENT_HEADER
    assert agent.string_match.safe_regex.regex == "^([^,]+,)*flights$"
    assert flights.route.cluster == "agent_flights"
    assert flights.route.prefix_rewrite == "/agents/flights/v1/chat/completions"
    assert flights.route.timeout.ToSeconds() == 0  # streams are not cut
    assert flights.route.idle_timeout.ToSeconds() == 60
    echoed = {o.header.key: o.header.value for o in flights.response_headers_to_add}
    assert echoed == {
        contract.AGENT_HEADER: f"%REQ({contract.AGENT_HEADER})%",
        contract.ROUTE_REASON_HEADER: f"%REQ({contract.ROUTE_REASON_HEADER})%",
    }


def test_routes_that_need_no_decision_skip_the_sidecar(quickstart: Resources) -> None:
    routes = routes_by_name(quickstart)
    for name in ("method_not_allowed/v1/chat/completions", "not_found"):
        per_route = ext_proc_pb2.ExtProcPerRoute()
        assert routes[name].typed_per_filter_config["envoy.filters.http.ext_proc"].Unpack(per_route)
        assert per_route.disabled
    assert "envoy.filters.http.ext_proc" not in routes["undecided"].typed_per_filter_config


def test_failure_mode_decides_where_undecided_requests_go(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        documents(
            agent_yaml("a", "A", "http://10.0.0.1:80"),
            agent_yaml("b", "B", "http://10.0.0.2:80"),
            gateway_yaml("closed", 8000, ["a", "b"], "b"),
            gateway_yaml("open", 8001, ["a", "b"], "b", "failureMode: open"),
        )
    )
    resources = translate(load_config([path]))
    undecided = {
        config.name: next(r for r in config.virtual_hosts[0].routes if r.name == "undecided")
        for config in resources.routes
        if config.name.startswith("gateway_")
    }
    assert undecided["gateway_closed"].direct_response.status == 503
    assert undecided["gateway_open"].route.cluster == "agent_b"
    echoed = {
        o.header.key: o.header.value for o in undecided["gateway_open"].response_headers_to_add
    }
    assert echoed[contract.ROUTE_REASON_HEADER] == "fallback"


def test_clusters_static_for_ips_dns_for_names_tls_for_https(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        documents(
            agent_yaml("ip", "A", "http://10.0.0.1:8080"),
            agent_yaml("dns", "B", "http://flights.travel.svc:8080"),
            agent_yaml("tls", "C", "https://api.example.com"),
            gateway_yaml("g", 8000, ["ip", "dns", "tls"], "ip"),
        )
    )
    clusters = {c.name: c for c in translate(load_config([path])).clusters}
    assert clusters["agent_ip"].type == cluster_pb2.Cluster.STATIC
    assert clusters["agent_dns"].type == cluster_pb2.Cluster.STRICT_DNS
    endpoint = clusters["agent_tls"].load_assignment.endpoints[0].lb_endpoints[0].endpoint
    assert (
        endpoint.address.socket_address.address,
        endpoint.address.socket_address.port_value,
    ) == (
        "api.example.com",
        443,
    )
    tls = tls_pb2.UpstreamTlsContext()
    assert clusters["agent_tls"].transport_socket.typed_config.Unpack(tls)
    validation = tls.common_tls_context.validation_context
    assert tls.sni == "api.example.com"
    assert validation.trusted_ca.filename  # the system's bundle, as a file
    [san] = validation.match_typed_subject_alt_names
    assert san.matcher.exact == "api.example.com"
    assert not clusters["agent_ip"].HasField("transport_socket")


def test_routing_tables_carry_descriptions_examples_and_the_default(quickstart: Resources) -> None:
    table = next(t for t in quickstart.routing_tables if t.gateway == "travel")
    assert [agent.name for agent in table.agents] == ["weather", "flights", "currency"]
    assert table.default_agent == "weather"
    assert "Is UA 901 on time?" in table.agents[1].examples
    assert table.router.embedded.min_score == pytest.approx(0.1)


def test_a_gateway_description_overrides_the_agents_own(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        documents(
            agent_yaml("a", "The agent's own words", "http://10.0.0.1:80"),
            "apiVersion: meshroute.io/v1alpha1\nkind: Gateway\nmetadata: {name: g}\n"
            "spec: {port: 8000, agents: [{name: a, description: 'What this gateway says'}]}\n",
        )
    )
    [table] = translate(load_config([path])).routing_tables
    assert table.agents[0].description == "What this gateway says"


ORCHESTRATED = documents(
    agent_yaml("a", "A", "http://10.0.0.1:80"),
    agent_yaml("b", "B", "http://10.0.0.2:80"),
    "apiVersion: meshroute.io/v1alpha1\nkind: LLMProvider\nmetadata: {name: router}\n"
    "spec: {endpoint: 'https://models.example.com/openai', models: {plano: katanemo/Plano}}\n",
    gateway_yaml(
        "g",
        8000,
        ["a", "b"],
        "a",
        "router: {type: orchestrator, provider: router, model: plano, timeout: 3s}\n"
        "allowClientPinning: true",
    ),
)


@pytest.fixture
def orchestrated(tmp_path: Path) -> Resources:
    path = tmp_path / "c.yaml"
    path.write_text(ORCHESTRATED)
    return translate(load_config([path]), DeploymentSettings(internal_port=18123))


def test_envoy_waits_for_the_routing_model_and_for_sequences(orchestrated: Resources) -> None:
    processor = ext_proc_pb2.ExternalProcessor()
    assert manager_of(orchestrated, "gateway_g").http_filters[1].typed_config.Unpack(processor)
    assert processor.message_timeout.ToTimedelta().total_seconds() == 4  # 3s + margin
    assert processor.max_message_timeout.ToTimedelta().total_seconds() == 600


def test_pinning_keeps_only_the_agent_header_from_clients(orchestrated: Resources) -> None:
    import re

    from envoy.extensions.filters.http.header_mutation.v3 import header_mutation_pb2

    strip = header_mutation_pb2.HeaderMutation()
    assert manager_of(orchestrated, "gateway_g").http_filters[0].typed_config.Unpack(strip)
    [mutation] = strip.mutations.request_mutations
    regex = re.compile(mutation.remove_on_match.key_matcher.safe_regex.regex)
    removed = [
        name
        for name in (
            "x-meshroute-agent",
            "x-meshroute-route-reason",
            "x-meshroute-agents",
            "x-other",
        )
        if regex.match(name)
    ]
    assert removed == ["x-meshroute-route-reason", "x-meshroute-agents"]


def test_the_internal_listener_has_no_sidecar_and_routes_to_agents_and_providers(
    orchestrated: Resources,
) -> None:
    listener = next(item for item in orchestrated.listeners if item.name == "meshroute_internal")
    assert listener.address.socket_address.address == "127.0.0.1"
    assert listener.address.socket_address.port_value == 18123
    manager = manager_of(orchestrated, "meshroute_internal")
    assert [f.name for f in manager.http_filters] == [
        "meshroute.usage_json",
        "meshroute.usage_sse",
        "envoy.filters.http.router",
    ]
    routes = routes_by_name(orchestrated, "meshroute_internal")
    assert routes["agent_b"].match.path == "/agents/b"
    assert routes["agent_b"].route.cluster == "agent_b"
    assert routes["provider_router"].match.prefix == "/providers/router/"
    assert routes["provider_router"].route.prefix_rewrite == "/openai/"
    clusters = {cluster.name for cluster in orchestrated.clusters}
    assert {"agent_a", "agent_b", "provider_router"} <= clusters


def test_the_routing_table_points_the_sidecar_through_envoy(orchestrated: Resources) -> None:
    [table] = orchestrated.routing_tables
    router = table.router.orchestrator
    assert router.url == "http://127.0.0.1:18123/providers/router/v1/chat/completions"
    assert router.model == "katanemo/Plano"
    assert router.timeout.ToTimedelta().total_seconds() == 3
    assert (router.max_turns, router.max_tokens, router.max_concurrency) == (16, 8192, 64)
    assert router.cache_ttl.ToTimedelta().total_seconds() == 60
    assert table.allow_client_pinning
    assert table.agents[1].url == "http://127.0.0.1:18123/agents/b"
    assert table.agents[1].timeout.ToTimedelta().total_seconds() == 60


def test_envoy_accepts_an_orchestrated_gateway_with_a_tls_provider(orchestrated: Resources) -> None:
    bootstrap = static_bootstrap(orchestrated, BootstrapSettings())
    validate_config(to_yaml(message_to_dict(bootstrap)))
