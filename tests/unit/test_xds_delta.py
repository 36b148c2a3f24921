"""The incremental (Delta) xDS stream state machine, without gRPC."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import pytest
from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from meshroute.control_plane.bootstrap import (
    BootstrapSettings,
    XdsProtocol,
    parse_bootstrap,
    render_bootstrap,
)
from meshroute.control_plane.config import load_config
from meshroute.control_plane.translate.snapshot import Resources, translate
from meshroute.control_plane.xds import type_urls
from meshroute.control_plane.xds.delta import DeltaStream, resource_version
from meshroute.control_plane.xds.snapshot import Snapshot, SnapshotCache
from meshroute.control_plane.xds.sotw import ProtocolError
from tests.support.configs import QUICKSTART

NODE = base_pb2.Node(id="envoy-1")
CLUSTERS = ["agent_currency", "agent_flights", "agent_weather"]


def quickstart() -> Resources:
    """The quickstart's agent gateway alone: three agent clusters, one gateway."""
    return translate(load_config([QUICKSTART / "agents.yaml", QUICKSTART / "gateway.yaml"]))


def request(
    type_url: str,
    *,
    nonce: str = "",
    subscribe: tuple[str, ...] = (),
    unsubscribe: tuple[str, ...] = (),
    initial: Mapping[str, str] | None = None,
    error: str | None = None,
    node: base_pb2.Node | None = None,
) -> discovery_pb2.DeltaDiscoveryRequest:
    message = discovery_pb2.DeltaDiscoveryRequest(
        type_url=type_url,
        response_nonce=nonce,
        resource_names_subscribe=subscribe,
        resource_names_unsubscribe=unsubscribe,
        initial_resource_versions=initial or {},
    )
    if node is not None:
        message.node.CopyFrom(node)
    if error is not None:
        message.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
    return message


def ack(
    response: discovery_pb2.DeltaDiscoveryResponse,
    *,
    subscribe: tuple[str, ...] = (),
    unsubscribe: tuple[str, ...] = (),
) -> discovery_pb2.DeltaDiscoveryRequest:
    """The client's ACK of `response`, perhaps carrying subscription changes."""
    return request(
        response.type_url, nonce=response.nonce, subscribe=subscribe, unsubscribe=unsubscribe
    )


def names(response: discovery_pb2.DeltaDiscoveryResponse) -> list[str]:
    return [resource.name for resource in response.resources]


def subscribed_stream(
    snapshot: Snapshot, *type_url_names: tuple[str, tuple[str, ...]]
) -> DeltaStream:
    """A stream that subscribed to each (type, names) and ACKed the first answer."""
    stream = DeltaStream(stream_id=1)
    for type_url, subscribe in type_url_names:
        [response] = stream.on_request(request(type_url, subscribe=subscribe, node=NODE), snapshot)
        assert stream.on_request(ack(response), snapshot) == []
    return stream


def test_the_first_wildcard_request_gets_everything_with_resource_versions() -> None:
    snapshot = SnapshotCache().set_resources(quickstart())
    stream = DeltaStream(stream_id=1)
    [response] = stream.on_request(request(type_urls.CLUSTER, node=NODE), snapshot)
    assert stream.node_id == "envoy-1"
    assert response.type_url == type_urls.CLUSTER
    assert response.system_version_info == "1"
    assert names(response) == CLUSTERS
    assert list(response.removed_resources) == []
    packed = snapshot.types[type_urls.CLUSTER].by_name
    for resource in response.resources:
        assert resource.version == resource_version(packed[resource.name])
        assert resource.resource == packed[resource.name]
    assert stream.types[type_urls.CLUSTER].wildcard
    # "*" is the explicit way to ask for the same.
    [explicit] = DeltaStream(stream_id=2).on_request(
        request(type_urls.CLUSTER, subscribe=("*",), node=NODE), snapshot
    )
    assert names(explicit) == CLUSTERS


def test_an_ack_gets_nothing_and_records_the_version() -> None:
    snapshot = SnapshotCache().set_resources(quickstart())
    stream = DeltaStream(stream_id=1)
    [response] = stream.on_request(request(type_urls.CLUSTER, node=NODE), snapshot)
    assert stream.acked_version(type_urls.CLUSTER) is None
    assert stream.on_request(ack(response), snapshot) == []
    assert stream.acked_version(type_urls.CLUSTER) == "1"
    assert stream.subscribes(type_urls.CLUSTER)
    assert not stream.subscribes(type_urls.ROUTE)


def test_a_changed_resource_is_sent_alone() -> None:
    cache = SnapshotCache()
    stream = subscribed_stream(cache.set_resources(quickstart()), (type_urls.CLUSTER, ()))
    changed = quickstart()
    changed.clusters[1].connect_timeout.seconds = 9
    [response] = stream.on_snapshot(cache.set_resources(changed))
    assert names(response) == ["agent_flights"]
    assert response.system_version_info == "2"
    assert stream.on_request(ack(response), cache.current) == []
    assert stream.acked_version(type_urls.CLUSTER) == "2"
    # A snapshot that changes nothing this client holds sends nothing.
    assert stream.on_snapshot(cache.current) == []


def test_a_removed_resource_comes_in_removed_resources() -> None:
    cache = SnapshotCache()
    stream = subscribed_stream(cache.set_resources(quickstart()), (type_urls.CLUSTER, ()))
    smaller = quickstart()
    del smaller.clusters[0]  # agent_currency
    # Make before break: the dropped cluster is served on until every client took
    # routes without it; this client subscribes to no routes, so it may go at once.
    assert stream.on_snapshot(cache.set_resources(smaller)) == []
    pruned = cache.progress([stream])
    assert pruned is not None
    [response] = stream.on_snapshot(pruned)
    assert list(response.resources) == []
    assert list(response.removed_resources) == ["agent_currency"]
    assert "agent_currency" not in stream.types[type_urls.CLUSTER].known


def test_retiring_clusters_wait_for_a_delta_client_to_ack_its_routes() -> None:
    cache = SnapshotCache()
    stream = subscribed_stream(
        cache.set_resources(quickstart()),
        (type_urls.CLUSTER, ()),
        (type_urls.LISTENER, ()),
        (type_urls.ROUTE, ("gateway_travel", "meshroute_internal")),
    )
    smaller = quickstart()
    del smaller.clusters[0]
    smaller.routes[0].virtual_hosts[0].routes[0].route.idle_timeout.seconds = 5
    [routes] = stream.on_snapshot(cache.set_resources(smaller))
    assert names(routes) == ["gateway_travel"]
    assert cache.progress([stream]) is None  # the new routes are not accepted yet
    stream.on_request(ack(routes), cache.current)
    pruned = cache.progress([stream])
    assert pruned is not None
    [clusters] = stream.on_snapshot(pruned)
    assert list(clusters.removed_resources) == ["agent_currency"]


def test_routes_are_subscribed_and_unsubscribed_by_name() -> None:
    cache = SnapshotCache()
    snapshot = cache.set_resources(quickstart())
    stream = DeltaStream(stream_id=1)
    # Routes are no wildcard type: asking for nothing gets an (empty) first answer.
    [nothing] = stream.on_request(request(type_urls.ROUTE, node=NODE), snapshot)
    assert (list(nothing.resources), list(nothing.removed_resources)) == ([], [])
    [travel] = stream.on_request(ack(nothing, subscribe=("gateway_travel",)), snapshot)
    assert names(travel) == ["gateway_travel"]
    # A name we do not serve is answered as removed, so the client need not wait.
    [unknown] = stream.on_request(ack(travel, subscribe=("unknown",)), snapshot)
    assert (names(unknown), list(unknown.removed_resources)) == ([], ["unknown"])
    # Subscribing again to what the client holds sends it again (it may have dropped it).
    [again] = stream.on_request(ack(unknown, subscribe=("gateway_travel",)), snapshot)
    assert names(again) == ["gateway_travel"]
    # Unsubscribing needs no answer, and later changes to that route are not sent.
    assert stream.on_request(ack(again, unsubscribe=("gateway_travel",)), snapshot) == []
    changed = quickstart()
    changed.routes[0].virtual_hosts[0].routes[0].route.idle_timeout.seconds = 5
    assert stream.on_snapshot(cache.set_resources(changed)) == []
    assert stream.types[type_urls.ROUTE].names == {"unknown"}


def test_a_route_change_the_client_does_not_subscribe_to_moves_its_version_silently() -> None:
    cache = SnapshotCache()
    stream = subscribed_stream(
        cache.set_resources(quickstart()), (type_urls.ROUTE, ("meshroute_internal",))
    )
    changed = quickstart()
    changed.routes[0].virtual_hosts[0].routes[0].route.idle_timeout.seconds = 5  # gateway_travel
    assert stream.on_snapshot(cache.set_resources(changed)) == []
    # It holds all of version 2 it asked for, so retiring clusters need not wait for it.
    assert stream.acked_version(type_urls.ROUTE) == "2"


def test_unsubscribing_a_name_a_wildcard_covers_is_answered() -> None:
    snapshot = SnapshotCache().set_resources(quickstart())
    stream = subscribed_stream(snapshot, (type_urls.CLUSTER, ()))
    [both] = stream.on_request(
        request(type_urls.CLUSTER, subscribe=("agent_weather", "extra")), snapshot
    )
    assert (names(both), list(both.removed_resources)) == (["agent_weather"], ["extra"])
    assert stream.types[type_urls.CLUSTER].wildcard  # names added to a wildcard keep it
    # Still covered by the wildcard: sent again, so the client knows to keep it; not
    # served at all: removed.
    [answer] = stream.on_request(ack(both, unsubscribe=("agent_weather", "extra")), snapshot)
    assert (names(answer), list(answer.removed_resources)) == (["agent_weather"], ["extra"])


def test_initial_resource_versions_suppress_unchanged_resources() -> None:
    cache = SnapshotCache()
    snapshot = cache.set_resources(quickstart())
    [before] = DeltaStream(stream_id=1).on_request(request(type_urls.CLUSTER, node=NODE), snapshot)
    held = {resource.name: resource.version for resource in before.resources}

    changed = quickstart()
    changed.clusters[1].connect_timeout.seconds = 9
    snapshot = cache.set_resources(changed)
    # The client reconnects holding what it had, and a cluster we no longer serve.
    reconnected = DeltaStream(stream_id=2)
    [response] = reconnected.on_request(
        request(type_urls.CLUSTER, initial={**held, "agent_gone": "0123"}, node=NODE), snapshot
    )
    assert names(response) == ["agent_flights"]  # the only one that changed
    assert list(response.removed_resources) == ["agent_gone"]

    # Nothing changed at all: a first answer with nothing in it, for Envoy to ACK.
    current = {r.name: r.version for r in response.resources} | {
        name: version for name, version in held.items() if name != "agent_flights"
    }
    [empty] = DeltaStream(stream_id=3).on_request(
        request(type_urls.CLUSTER, initial=current, node=NODE), snapshot
    )
    assert (list(empty.resources), list(empty.removed_resources)) == ([], [])

    # Initial versions count on a stream's first request of a type only.
    later = request(type_urls.CLUSTER, nonce=response.nonce, initial={"agent_weather": "old"})
    assert reconnected.on_request(later, snapshot) == []


def test_a_nack_is_recorded_and_the_rejected_content_is_not_sent_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = SnapshotCache()
    stream = subscribed_stream(cache.set_resources(quickstart()), (type_urls.CLUSTER, ()))
    bad = quickstart()
    bad.clusters[0].connect_timeout.seconds = -1
    [rejected] = stream.on_snapshot(cache.set_resources(bad))
    nack = ack(rejected)
    nack.error_detail.CopyFrom(status_pb2.Status(code=3, message="bad\nduration"))
    with caplog.at_level(logging.WARNING):
        assert stream.on_request(nack, cache.current) == []
    state = stream.types[type_urls.CLUSTER]
    assert (state.acked_version, state.nacked_version, state.nack_detail) == (
        "1",
        "2",
        "bad duration",
    )
    assert (
        "node envoy-1 REJECTED clusters version 2 (agent_currency; keeps what it had): "
        "bad duration" in caplog.text
    )

    # Another change is sent without the rejected cluster; the client's ACK of it does
    # not make it current, since it still holds the old agent_currency.
    other = quickstart()
    other.clusters[0].connect_timeout.seconds = -1
    other.clusters[2].connect_timeout.seconds = 7
    [next_change] = stream.on_snapshot(cache.set_resources(other))
    assert names(next_change) == ["agent_weather"]
    assert stream.on_request(ack(next_change), cache.current) == []
    assert stream.acked_version(type_urls.CLUSTER) == "1"

    # A fixed agent_currency is sent as usual, and its ACK brings the client up to date.
    fixed = quickstart()
    fixed.clusters[0].connect_timeout.seconds = 3
    fixed.clusters[2].connect_timeout.seconds = 7
    [next_try] = stream.on_snapshot(cache.set_resources(fixed))
    assert names(next_try) == ["agent_currency"]
    stream.on_request(ack(next_try), cache.current)
    assert stream.acked_version(type_urls.CLUSTER) == "4"


def test_stale_nonces_are_ignored_but_their_subscriptions_count() -> None:
    cache = SnapshotCache()
    snapshot = cache.set_resources(quickstart())
    stream = DeltaStream(stream_id=1)
    [first] = stream.on_request(request(type_urls.CLUSTER, node=NODE), snapshot)
    changed = quickstart()
    changed.clusters[0].connect_timeout.seconds = 9
    [second] = stream.on_snapshot(cache.set_resources(changed))
    # The ACK of the first response arrives after we sent the second: not yet current.
    assert stream.on_request(ack(first), cache.current) == []
    assert stream.acked_version(type_urls.CLUSTER) is None
    # A nonce we never sent, or one already answered, means nothing...
    assert stream.on_request(request(type_urls.CLUSTER, nonce="99"), cache.current) == []
    assert stream.on_request(ack(first), cache.current) == []
    assert stream.acked_version(type_urls.CLUSTER) is None
    assert stream.on_request(ack(second), cache.current) == []
    assert stream.acked_version(type_urls.CLUSTER) == "2"

    # ...but a subscription change carried with a stale nonce is honoured.
    [routes] = stream.on_request(
        request(type_urls.ROUTE, nonce=first.nonce, subscribe=("gateway_travel",)), cache.current
    )
    assert names(routes) == ["gateway_travel"]


def test_a_change_is_pushed_in_push_order() -> None:
    cache = SnapshotCache()
    stream = subscribed_stream(
        cache.set_resources(quickstart()),
        (type_urls.ROUTE, ("gateway_travel",)),
        (type_urls.LISTENER, ()),
        (type_urls.CLUSTER, ()),
    )
    changed = quickstart()
    changed.clusters[0].connect_timeout.seconds = 9
    changed.routes[0].virtual_hosts[0].routes[0].route.idle_timeout.seconds = 5
    responses = stream.on_snapshot(cache.set_resources(changed))
    assert [r.type_url for r in responses] == [type_urls.CLUSTER, type_urls.ROUTE]
    assert {r.system_version_info for r in responses} == {"2"}
    nonces = [r.nonce for r in responses]
    assert len(set(nonces)) == len(nonces)


def test_the_first_request_must_name_the_node_and_every_request_a_type() -> None:
    snapshot = SnapshotCache().set_resources(quickstart())
    with pytest.raises(ProtocolError, match="node"):
        DeltaStream(stream_id=1).on_request(request(type_urls.CLUSTER), snapshot)
    with pytest.raises(ProtocolError, match="type_url"):
        DeltaStream(stream_id=1).on_request(request("", node=NODE), snapshot)


def test_unknown_types_get_an_empty_first_answer_so_the_client_does_not_wait() -> None:
    snapshot = SnapshotCache().set_resources(quickstart())
    secret_type = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
    stream = DeltaStream(stream_id=1)
    [response] = stream.on_request(request(secret_type, subscribe=("tls",), node=NODE), snapshot)
    assert (list(response.resources), list(response.removed_resources)) == ([], ["tls"])


def test_the_bootstrap_picks_the_ads_flavour() -> None:
    api_type = config_source_pb2.ApiConfigSource
    flavours: list[tuple[XdsProtocol, int]] = [
        ("sotw", api_type.GRPC),
        ("delta", api_type.DELTA_GRPC),
    ]
    for protocol, expected in flavours:
        text = render_bootstrap(BootstrapSettings(xds_protocol=protocol))
        assert parse_bootstrap(text).dynamic_resources.ads_config.api_type == expected
    assert BootstrapSettings().xds_protocol == "sotw"
    with pytest.raises(ValueError, match="unknown xDS protocol 'incremental'"):
        render_bootstrap(BootstrapSettings(xds_protocol="incremental"))  # type: ignore[arg-type]
