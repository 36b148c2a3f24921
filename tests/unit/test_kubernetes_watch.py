"""List-then-watch against a server speaking the Kubernetes protocol: the initial list,
events, bookmarks, 410 Gone, dropped connections, errors, and both ways to log in."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from kubernetes_asyncio import client

from meshroute.control_plane.k8s.api import (
    AGENTS,
    GATEWAYS,
    SECRETS,
    ClusterAccess,
    KubeApiError,
    ResourceClient,
    ResourceKind,
    connect,
)
from meshroute.control_plane.k8s.informer import Informer
from meshroute.lifecycle import Backoff
from tests.support.fake_kube import FakeKubeApi, query_flag
from tests.support.processes import READY_TIMEOUT

NAMESPACE = "team-a"


def agent(name: str, description: str = "Answers questions about flights.") -> dict[str, Any]:
    return {
        "apiVersion": "meshroute.io/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": name},
        "spec": {"description": description, "endpoints": ["http://127.0.0.1:9"]},
    }


@pytest.fixture
def api() -> Iterator[FakeKubeApi]:
    server = FakeKubeApi(namespace=NAMESPACE)
    yield server
    server.close()


@pytest.fixture
async def kube(api: FakeKubeApi, tmp_path: Path) -> AsyncIterator[client.ApiClient]:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(api.kubeconfig())
    connection, namespace = await connect(ClusterAccess(kubeconfig=str(kubeconfig)))
    assert namespace == NAMESPACE  # the context's namespace
    async with connection:
        yield connection


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {READY_TIMEOUT}s")
        await asyncio.sleep(0.01)


class Running:
    """An informer running in the background, counting the changes it reports."""

    def __init__(self, informer: Informer) -> None:
        self.informer = informer
        self.task = asyncio.create_task(informer.run())

    async def stop(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


@pytest.fixture
async def agents(kube: client.ApiClient, api: FakeKubeApi) -> AsyncIterator[Running]:
    api.apply(agent("flights"))
    api.apply(agent("hotels", "Books hotel rooms."))
    informer = Informer(
        ResourceClient(kube, AGENTS, NAMESPACE), lambda: None, Backoff(initial=0.01)
    )
    running = Running(informer)
    await informer.synced.wait()
    await until(lambda: api.open_watches("Agent") == 1, "watching")
    yield running
    await running.stop()


def lists(api: FakeKubeApi, plural: str) -> list[dict[str, str]]:
    return [
        dict(r.query)
        for r in api.requests
        if r.path.endswith(f"/{plural}") and not query_flag(r.query.get("watch"))
    ]


def watches(api: FakeKubeApi, plural: str) -> list[dict[str, str]]:
    return [
        dict(r.query)
        for r in api.requests
        if r.path.endswith(f"/{plural}") and query_flag(r.query.get("watch"))
    ]


async def test_the_first_list_then_every_event_is_followed(
    agents: Running, api: FakeKubeApi
) -> None:
    informer = agents.informer
    assert sorted(informer.objects) == ["flights", "hotels"]

    api.apply(agent("trains", "Train times."))
    api.apply(agent("flights", "Flight status, delays and gates."))
    api.delete("Agent", "hotels")
    await until(lambda: sorted(informer.objects) == ["flights", "trains"], "add and delete")
    flights = informer.objects["flights"]
    assert flights["spec"]["description"] == "Flight status, delays and gates."
    assert flights["metadata"]["generation"] == 2
    assert informer.resource_version == api.resource_version  # the delete's
    # It watched from the list's version, with bookmarks, and never listed again.
    assert len(lists(api, "agents")) == 1
    [watch] = watches(api, "agents")
    assert query_flag(watch["allowWatchBookmarks"])
    assert int(watch["resourceVersion"]) < int(flights["metadata"]["resourceVersion"])


async def test_a_bookmark_moves_the_resume_point(agents: Running, api: FakeKubeApi) -> None:
    informer = agents.informer
    api.apply({**agent("x"), "kind": "Gateway", "spec": {"port": 8001, "agents": []}})
    gateway_version = api.get("Gateway", "x")["metadata"]["resourceVersion"]  # type: ignore[index]
    assert informer.resource_version != gateway_version  # nothing the agent watch saw

    api.bookmark()
    await until(lambda: informer.resource_version == gateway_version, "bookmark applied")
    assert sorted(informer.objects) == ["flights", "hotels"]  # a bookmark is no change

    api.drop_watches()
    await until(lambda: len(watches(api, "agents")) == 2, "watching again")
    assert watches(api, "agents")[-1]["resourceVersion"] == gateway_version


async def test_a_dropped_watch_resumes_where_it_was_without_listing(
    agents: Running, api: FakeKubeApi
) -> None:
    informer = agents.informer
    # Made after the cut, before the client can watch again: only a watch resumed
    # from the last version seen delivers these.
    api.while_disconnected(apply=[agent("trains")], delete=[("Agent", "hotels")])
    await until(lambda: sorted(informer.objects) == ["flights", "trains"], "missed changes")
    assert len(lists(api, "agents")) == 1


async def test_410_gone_lists_again_and_forgets_what_was_deleted(
    agents: Running, api: FakeKubeApi
) -> None:
    informer = agents.informer
    api.while_disconnected(apply=[agent("trains")], delete=[("Agent", "hotels")], compact=True)
    await until(lambda: sorted(informer.objects) == ["flights", "trains"], "relisted")
    assert len(lists(api, "agents")) == 2
    # The watch from the compacted version got 410, and the next one starts from the
    # new list. The informer opens it after taking the list in, so wait for it.
    await until(lambda: len(watches(api, "agents")) == 3, "watching after the relist")
    first, from_old_version, from_new_list = watches(api, "agents")
    assert from_old_version["resourceVersion"] == first["resourceVersion"]
    assert int(from_new_list["resourceVersion"]) > int(from_old_version["resourceVersion"])
    assert from_new_list["resourceVersion"] == informer.resource_version


async def test_server_errors_are_retried_with_backoff(
    kube: client.ApiClient, api: FakeKubeApi
) -> None:
    api.apply(agent("flights"))
    api.fail_next(3, status=503)
    changes: list[int] = []
    informer = Informer(
        ResourceClient(kube, AGENTS, NAMESPACE),
        lambda: changes.append(1),
        Backoff(initial=0.01, maximum=0.05),
    )
    running = Running(informer)
    try:
        await asyncio.wait_for(informer.synced.wait(), READY_TIMEOUT)
        assert list(informer.objects) == ["flights"]
        assert len(lists(api, "agents")) == 4  # three refused, then one answered
        assert changes  # the list was reported as a change
    finally:
        await running.stop()


def test_backoff_doubles_up_to_its_ceiling_and_resets() -> None:
    backoff = Backoff(initial=1.0, maximum=5.0)
    delays = [backoff.next_delay() for _ in range(5)]
    for delay, nominal in zip(delays, [1, 2, 4, 5, 5], strict=True):
        assert nominal * 0.8 <= delay <= nominal * 1.2
    backoff.reset()
    assert backoff.next_delay() <= 1.2


async def test_errors_name_the_cause(kube: client.ApiClient, api: FakeKubeApi) -> None:
    # A kind the server does not have (the CRDs are not installed) is a 404.
    missing = ResourceClient(kube, ResourceKind("Thing", "things"), NAMESPACE)
    with pytest.raises(KubeApiError) as caught:
        await missing.list()
    assert caught.value.status == 404
    assert "could not find the requested resource" in str(caught.value)

    # Secrets come from the core API, and other namespaces' objects are not seen.
    api.apply(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "k"}, "data": {"a": "eA=="}}
    )
    secrets, _ = await ResourceClient(kube, SECRETS, NAMESPACE).list()
    assert [s["metadata"]["name"] for s in secrets] == ["k"]
    others, _ = await ResourceClient(kube, GATEWAYS, "elsewhere").list()
    assert others == []


async def test_a_wrong_token_is_refused(api: FakeKubeApi, tmp_path: Path) -> None:
    kubeconfig = json.loads(api.kubeconfig())
    kubeconfig["users"][0]["user"]["token"] = "wrong"
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(kubeconfig))
    connection, _ = await connect(ClusterAccess(kubeconfig=str(path)))
    async with connection:
        with pytest.raises(KubeApiError) as caught:
            await ResourceClient(connection, AGENTS, NAMESPACE).list()
    assert caught.value.status == 401


async def test_in_cluster_the_service_account_is_used(tmp_path: Path) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    api = FakeKubeApi(
        namespace="pods-own", token="service-account-token", ssl_context=server_context
    )
    try:
        api.apply(agent("flights"))
        account = tmp_path / "serviceaccount"
        account.mkdir()
        (account / "token").write_text("service-account-token")
        (account / "namespace").write_text("pods-own\n")
        ca.cert_pem.write_to_path(str(account / "ca.crt"))
        access = ClusterAccess(
            service_account_dir=account,
            environ={
                "KUBERNETES_SERVICE_HOST": "127.0.0.1",
                "KUBERNETES_SERVICE_PORT": str(api.url.rsplit(":", 1)[1]),
            },
        )
        assert access.in_cluster
        connection, namespace = await connect(access)
        assert namespace == "pods-own"
        async with connection:
            items, _ = await ResourceClient(connection, AGENTS, namespace).list()
        assert [item["metadata"]["name"] for item in items] == ["flights"]
    finally:
        api.close()


async def test_no_credentials_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KubeApiError, match="cannot load the kubeconfig"):
        await connect(ClusterAccess(kubeconfig=str(tmp_path / "absent"), environ={}))
    empty = tmp_path / "serviceaccount"
    empty.mkdir()
    with pytest.raises(KubeApiError, match="in-cluster service account"):
        await connect(
            ClusterAccess(
                service_account_dir=empty,
                environ={"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"},
            )
        )
