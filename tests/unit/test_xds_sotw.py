"""The State-of-the-World stream state machine and the snapshot cache, without gRPC."""

from __future__ import annotations

import logging

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from google.rpc import status_pb2

from meshroute.control_plane.config import load_config
from meshroute.control_plane.translate.snapshot import Resources, translate
from meshroute.control_plane.xds import type_urls
from meshroute.control_plane.xds.snapshot import Snapshot, SnapshotCache
from meshroute.control_plane.xds.sotw import ProtocolError, SotwStream
from tests.support.configs import QUICKSTART

NODE = base_pb2.Node(id="envoy-1")


def quickstart() -> Resources:
    """The quickstart's agent gateway alone: three agent clusters, one gateway."""
    return translate(load_config([QUICKSTART / "agents.yaml", QUICKSTART / "gateway.yaml"]))


def request(
    type_url: str,
    *,
    nonce: str = "",
    version: str = "",
    names: tuple[str, ...] = (),
    error: str | None = None,
    node: base_pb2.Node | None = None,
) -> discovery_pb2.DiscoveryRequest:
    message = discovery_pb2.DiscoveryRequest(
        type_url=type_url, response_nonce=nonce, version_info=version, resource_names=names
    )
    if node is not None:
        message.node.CopyFrom(node)
    if error is not None:
        message.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
    return message


def test_cache_versions_move_only_when_content_changes() -> None:
    cache = SnapshotCache()
    first = cache.set_resources(quickstart())
    assert first.version == "1"
    assert cache.set_resources(quickstart()) is first  # same content, same snapshot

    changed = quickstart()
    changed.clusters[0].connect_timeout.seconds = 9
    second = cache.set_resources(changed)
    assert second.version == "2"
    assert second.types[type_urls.CLUSTER].version == "2"
    # Types that did not change keep the version they last changed at.
    assert second.types[type_urls.LISTENER].version == "1"
    assert second.types[type_urls.ROUTE].version == "1"
    assert second.types[type_urls.ROUTING_TABLE].version == "1"


def test_first_request_gets_everything_then_an_ack_gets_nothing() -> None:
    snapshot = SnapshotCache().set_resources(quickstart())
    stream = SotwStream(stream_id=1)
    [response] = stream.on_request(request(type_urls.CLUSTER, node=NODE), snapshot)
    assert response.version_info == "1"
    assert response.type_url == type_urls.CLUSTER
    assert len(response.resources) == 3
    assert stream.node_id == "envoy-1"

    ack = request(type_urls.CLUSTER, nonce=response.nonce, version=response.version_info)
    assert stream.on_request(ack, snapshot) == []
    assert stream.types[type_urls.CLUSTER].acked_version == "1"


def test_routes_are_sent_by_name() -> None:
    snapshot = SnapshotCache().set_resources(quickstart())
    stream = SotwStream(stream_id=1)
    stream.on_request(request(type_urls.CLUSTER, node=NODE), snapshot)
    [nothing] = stream.on_request(request(type_urls.ROUTE, names=("unknown",)), snapshot)
    assert list(nothing.resources) == []
    [response] = stream.on_request(
        request(type_urls.ROUTE, nonce=nothing.nonce, names=("gateway_travel",)), snapshot
    )
    assert len(response.resources) == 1  # the subscription changed, so it is answered


def test_the_first_request_must_name_the_node() -> None:
    snapshot = SnapshotCache().set_resources(quickstart())
    with pytest.raises(ProtocolError, match="node"):
        SotwStream(stream_id=1).on_request(request(type_urls.CLUSTER), snapshot)


def test_stale_nonces_are_ignored() -> None:
    cache = SnapshotCache()
    snapshot = cache.set_resources(quickstart())
    stream = SotwStream(stream_id=1)
    [first] = stream.on_request(request(type_urls.CLUSTER, node=NODE), snapshot)
    changed = quickstart()
    changed.clusters[0].connect_timeout.seconds = 9
    [second] = stream.on_snapshot(cache.set_resources(changed))
    # An ACK of the first response arrives after we sent the second: it is stale.
    late = request(type_urls.CLUSTER, nonce=first.nonce, version=first.version_info)
    assert stream.on_request(late, cache.current) == []
    assert stream.types[type_urls.CLUSTER].acked_version is None
    assert second.version_info == "2"


def test_a_nack_is_logged_and_the_rejected_version_is_not_sent_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = SnapshotCache()
    stream = SotwStream(stream_id=1)
    [accepted] = stream.on_request(
        request(type_urls.CLUSTER, node=NODE), cache.set_resources(quickstart())
    )
    stream.on_request(request(type_urls.CLUSTER, nonce=accepted.nonce, version="1"), cache.current)

    bad = quickstart()
    bad.clusters[0].connect_timeout.seconds = -1
    [rejected] = stream.on_snapshot(cache.set_resources(bad))
    nack = request(type_urls.CLUSTER, nonce=rejected.nonce, version="1", error="bad\nduration")
    with caplog.at_level(logging.WARNING):
        assert stream.on_request(nack, cache.current) == []
    state = stream.types[type_urls.CLUSTER]
    assert (state.acked_version, state.nacked_version, state.nack_detail) == (
        "1",
        "2",
        "bad duration",
    )
    assert "node envoy-1 REJECTED clusters version 2 (keeps version 1): bad duration" in caplog.text

    # Envoy asking again (say, after a reconnect of another type) earns no resend...
    again = request(type_urls.CLUSTER, nonce=rejected.nonce, version="1")
    assert stream.on_request(again, cache.current) == []
    # ...but the next snapshot is sent as usual.
    fixed = quickstart()
    fixed.clusters[0].connect_timeout.seconds = 3
    [next_try] = stream.on_snapshot(cache.set_resources(fixed))
    assert next_try.version_info == "3"


def test_a_change_pushes_only_the_types_that_changed_in_push_order() -> None:
    cache = SnapshotCache()
    stream = SotwStream(stream_id=1)
    snapshot = cache.set_resources(quickstart())
    for type_url in (type_urls.LISTENER, type_urls.CLUSTER, type_urls.ROUTE):
        names = ("gateway_travel",) if type_url == type_urls.ROUTE else ()
        request_for = request(type_url, names=names, node=NODE)
        [response] = stream.on_request(request_for, snapshot)
        stream.on_request(
            request(type_url, nonce=response.nonce, version="1", names=names), snapshot
        )

    changed = quickstart()
    changed.clusters[0].connect_timeout.seconds = 9
    changed.routes[0].virtual_hosts[0].routes[0].route.idle_timeout.seconds = 5
    responses = stream.on_snapshot(cache.set_resources(changed))
    assert [r.type_url for r in responses] == [type_urls.CLUSTER, type_urls.ROUTE]
    assert {r.version_info for r in responses} == {"2"}
    nonces = [r.nonce for r in responses]
    assert len(set(nonces)) == len(nonces)


def test_unknown_types_get_an_empty_answer_so_the_client_does_not_wait() -> None:
    snapshot = SnapshotCache().set_resources(quickstart())
    secret_type = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
    [response] = SotwStream(stream_id=1).on_request(request(secret_type, node=NODE), snapshot)
    assert list(response.resources) == []


class Client:
    """A client as the cache sees it: which types it asked for, what it accepted."""

    def __init__(self, **acked: str) -> None:
        self.acked = {getattr(type_urls, name.upper()): version for name, version in acked.items()}

    def acked_version(self, type_url: str) -> str | None:
        return self.acked.get(type_url)

    def subscribes(self, type_url: str) -> bool:
        return type_url in self.acked


def without_agent(name: str) -> Resources:
    """The quickstart, minus one agent's cluster and routes."""
    resources = quickstart()
    cluster = f"agent_{name}"
    kept = [c for c in resources.clusters if c.name != cluster]
    del resources.clusters[:]
    resources.clusters.extend(kept)
    for config in resources.routes:
        for host in config.virtual_hosts:
            routes = [r for r in host.routes if r.name != cluster]
            del host.routes[:]
            host.routes.extend(routes)
    return resources


def cluster_names(snapshot: object) -> set[str]:
    return set(snapshot.types[type_urls.CLUSTER].by_name)  # type: ignore[attr-defined]


def test_a_dropped_cluster_stays_until_every_envoy_accepted_routes_without_it() -> None:
    cache = SnapshotCache()
    cache.set_resources(quickstart())
    dropped = cache.set_resources(without_agent("currency"))
    assert "agent_currency" in cluster_names(dropped)  # still served...
    assert cache.retiring == {"agent_currency"}
    route_version = dropped.types[type_urls.ROUTE].version
    listener_version = dropped.types[type_urls.LISTENER].version

    behind = Client(route="1", listener=listener_version, cluster=dropped.version)
    caught_up = Client(route=route_version, listener=listener_version, cluster="1")
    ext_proc = Client(routing_table="1")  # takes no routes: does not hold anything up
    assert cache.progress([behind, caught_up, ext_proc]) is None
    assert "agent_currency" in cluster_names(cache.current)

    pruned = cache.progress([caught_up, ext_proc])
    assert pruned is not None
    assert "agent_currency" not in cluster_names(pruned)
    assert int(pruned.version) > int(dropped.version)
    assert cache.retiring == frozenset()


def test_a_cluster_that_comes_back_is_no_longer_retiring() -> None:
    cache = SnapshotCache()
    cache.set_resources(quickstart())
    cache.set_resources(without_agent("currency"))
    back = cache.set_resources(quickstart())
    assert cache.retiring == frozenset()
    assert "agent_currency" in cluster_names(back)


def subscribed(stream: SotwStream, snapshot: Snapshot) -> None:
    """`stream` asked for and accepted clusters, listeners and both route configs."""
    for type_url, names in (
        (type_urls.CLUSTER, ()),
        (type_urls.LISTENER, ()),
        (type_urls.ROUTE, ("gateway_travel", "meshroute_internal")),
    ):
        [response] = stream.on_request(request(type_url, names=names, node=NODE), snapshot)
        stream.on_request(
            request(type_url, nonce=response.nonce, version=response.version_info, names=names),
            snapshot,
        )


def with_travel_route_changed(seconds: int) -> Resources:
    changed = quickstart_with_internal()
    [travel] = [config for config in changed.routes if config.name == "gateway_travel"]
    travel.virtual_hosts[0].routes[0].route.idle_timeout.seconds = seconds
    return changed


def quickstart_with_internal() -> Resources:
    resources = quickstart()
    assert {config.name for config in resources.routes} == {"gateway_travel", "meshroute_internal"}
    return resources


def test_a_route_change_sends_only_the_route_configs_that_changed() -> None:
    cache = SnapshotCache()
    stream = SotwStream(stream_id=1)
    subscribed(stream, cache.set_resources(quickstart_with_internal()))

    [routes] = stream.on_snapshot(cache.set_resources(with_travel_route_changed(5)))
    assert routes.type_url == type_urls.ROUTE
    assert [resource_name(any_) for any_ in routes.resources] == ["gateway_travel"]

    # A client that has not accepted that yet gets every change since what it accepted.
    [again] = stream.on_snapshot(cache.set_resources(with_travel_route_changed(6)))
    assert [resource_name(any_) for any_ in again.resources] == ["gateway_travel"]


def test_after_a_nack_the_next_change_sends_what_changed_since_the_accepted_version() -> None:
    cache = SnapshotCache()
    stream = SotwStream(stream_id=1)
    subscribed(stream, cache.set_resources(quickstart_with_internal()))
    names = ("gateway_travel", "meshroute_internal")

    [rejected] = stream.on_snapshot(cache.set_resources(with_travel_route_changed(5)))
    nack = request(type_urls.ROUTE, nonce=rejected.nonce, version="1", names=names, error="no")
    assert stream.on_request(nack, cache.current) == []

    both = with_travel_route_changed(5)
    [internal] = [config for config in both.routes if config.name == "meshroute_internal"]
    internal.virtual_hosts[0].routes[0].route.idle_timeout.seconds = 7
    [response] = stream.on_snapshot(cache.set_resources(both))
    # The client kept version 1, so the travel routes it refused come again.
    assert sorted(resource_name(any_) for any_ in response.resources) == list(names)


def test_clusters_are_always_sent_whole() -> None:
    cache = SnapshotCache()
    stream = SotwStream(stream_id=1)
    first = cache.set_resources(quickstart_with_internal())
    subscribed(stream, first)
    changed = quickstart_with_internal()
    changed.clusters[0].connect_timeout.seconds = 9
    [clusters] = stream.on_snapshot(cache.set_resources(changed))
    assert len(clusters.resources) == len(first.types[type_urls.CLUSTER].by_name)


def test_streams_share_one_response_body_and_differ_by_nonce_on_the_wire() -> None:
    snapshot = SnapshotCache().set_resources(quickstart())
    one, two = SotwStream(stream_id=1), SotwStream(stream_id=2)
    two.on_request(request(type_urls.LISTENER, node=NODE), snapshot)  # a different nonce
    [first] = one.on_request(request(type_urls.CLUSTER, node=NODE), snapshot)
    [second] = two.on_request(request(type_urls.CLUSTER, node=NODE), snapshot)
    assert first.body is second.body
    assert first.nonce != second.nonce
    for response in (first, second):
        parsed = discovery_pb2.DiscoveryResponse.FromString(response.SerializeToString())
        assert parsed.nonce == response.nonce
        assert parsed.version_info == response.version_info == "1"
        assert parsed.type_url == type_urls.CLUSTER
        assert list(parsed.resources) == list(response.resources)
        assert parsed == response.message()


def resource_name(packed: any_pb2.Any) -> str:
    config = route_pb2.RouteConfiguration()
    assert packed.Unpack(config)
    return str(config.name)
