"""The ext_proc server and its routing-table subscription, over real gRPC (no Envoy).

Envoy's side of each conversation is played by a gRPC client sending the messages
Envoy sends in our processing mode: request headers, then the buffered body.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc
import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc

from meshroute.api import contract
from meshroute.api.v1alpha1 import routing_table_pb2 as rt
from meshroute.control_plane.config import load_config
from meshroute.control_plane.translate.snapshot import Resources, translate
from meshroute.control_plane.xds import type_urls
from meshroute.control_plane.xds.server import AggregatedDiscoveryService, start_xds_server
from meshroute.control_plane.xds.snapshot import SnapshotCache
from meshroute.ext_proc.gateways import build_routing
from meshroute.ext_proc.server import ExternalProcessor, RoutingTables
from meshroute.ext_proc.table_client import TableClient
from tests.support.configs import QUICKSTART


def quickstart() -> Resources:
    return translate(load_config([QUICKSTART]))


def travel(resources: Resources) -> rt.RoutingTable:
    return next(table for table in resources.routing_tables if table.gateway == "travel")


async def until(condition: Callable[[], object]) -> None:
    """Wait, letting the event loop run, until condition() holds (a hang fails by timeout)."""
    while not condition():  # noqa: ASYNC110  (the state lives in another component)
        await asyncio.sleep(0.01)


@dataclass
class ControlPlane:
    cache: SnapshotCache
    service: AggregatedDiscoveryService
    server: grpc.aio.Server
    port: int


@pytest.fixture
async def control_plane() -> AsyncIterator[ControlPlane]:
    cache = SnapshotCache()
    cache.set_resources(quickstart())
    server, service, port = await start_xds_server(cache, "127.0.0.1", 0)
    yield ControlPlane(cache, service, server, port)
    await server.stop(grace=0)


@pytest.fixture
async def tables(control_plane: ControlPlane) -> AsyncIterator[RoutingTables]:
    port = control_plane.port
    tables = RoutingTables()
    ready = asyncio.Event()

    async def on_first() -> None:
        ready.set()

    client = asyncio.create_task(
        TableClient(f"127.0.0.1:{port}", "unit-ext-proc", tables, build_routing, on_first).run()
    )
    await ready.wait()
    yield tables
    client.cancel()


@pytest.fixture
async def processor(tables: RoutingTables) -> AsyncIterator[ep_grpc.ExternalProcessorStub]:
    server = grpc.aio.server()
    ep_grpc.add_ExternalProcessorServicer_to_server(ExternalProcessor(tables), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield ep_grpc.ExternalProcessorStub(channel)
    await server.stop(grace=0)


async def process(
    stub: ep_grpc.ExternalProcessorStub, body: bytes | None, gateway: str = "travel"
) -> list[ep.ProcessingResponse]:
    """Play Envoy: headers (end_of_stream if no body), then the body; collect answers."""
    call = stub.Process(metadata=[(contract.GATEWAY_METADATA_KEY, gateway)])
    headers = ep.HttpHeaders(end_of_stream=body is None)
    headers.headers.headers.add(key=":path", raw_value=b"/v1/chat/completions")
    await call.write(ep.ProcessingRequest(request_headers=headers))
    answers = [await call.read()]
    if body is not None and answers[0].WhichOneof("response") == "request_headers":
        await call.write(
            ep.ProcessingRequest(request_body=ep.HttpBody(body=body, end_of_stream=True))
        )
        answers.append(await call.read())
    await call.done_writing()
    return answers


def decision_headers(answer: ep.ProcessingResponse) -> dict[str, str]:
    common = answer.request_body.response
    assert common.clear_route_cache  # without it Envoy keeps the route it picked first
    return {h.header.key: h.header.raw_value.decode() for h in common.header_mutation.set_headers}


def chat_body(text: str) -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": text}]}).encode()


async def test_a_chat_request_is_routed_with_headers_and_a_route_cache_clear(
    processor: ep_grpc.ExternalProcessorStub,
) -> None:
    headers_answer, body_answer = await process(processor, chat_body("Is UA 901 on time?"))
    assert headers_answer.WhichOneof("response") == "request_headers"
    assert decision_headers(body_answer) == {
        contract.AGENT_HEADER: "flights",
        contract.ROUTE_REASON_HEADER: "embedded",
    }


async def test_bad_json_is_answered_at_once_with_400(
    processor: ep_grpc.ExternalProcessorStub,
) -> None:
    _, answer = await process(processor, b'{"messages": [')
    immediate = answer.immediate_response
    assert immediate.status.code == 400
    assert immediate.details == "invalid_json"
    assert b"not valid JSON" in immediate.body


async def test_no_body_is_answered_at_the_headers(processor: ep_grpc.ExternalProcessorStub) -> None:
    [answer] = await process(processor, None)
    assert answer.immediate_response.status.code == 400
    assert answer.immediate_response.details == "empty_body"


async def test_an_unknown_gateway_is_a_503_not_a_crash(
    processor: ep_grpc.ExternalProcessorStub,
) -> None:
    [answer] = await process(processor, chat_body("hi"), gateway="nope")  # refused at headers
    assert answer.immediate_response.status.code == 503
    assert answer.immediate_response.details == "routing_table_unavailable"


async def test_the_subscription_acks_and_follows_new_snapshots(
    control_plane: ControlPlane, tables: RoutingTables
) -> None:
    cache, service = control_plane.cache, control_plane.service
    assert tables.version == "1"
    assert sorted(tables.by_gateway) == ["llm", "travel"]

    def acked(version: str) -> bool:
        states = [s.types.get(type_urls.ROUTING_TABLE) for s in service.streams.values()]
        return any(state is not None and state.acked_version == version for state in states)

    await until(lambda: acked("1"))
    changed = quickstart()
    travel(changed).default_agent = "flights"
    cache.set_resources(changed)
    await until(lambda: tables.version == "2")
    assert tables.by_gateway["travel"].default_agent == "flights"
    await until(lambda: acked("2"))


async def test_an_unusable_table_is_nacked_and_the_last_good_one_kept(
    control_plane: ControlPlane, tables: RoutingTables
) -> None:
    cache, service = control_plane.cache, control_plane.service
    broken = quickstart()
    travel(broken).default_agent = "nobody"
    cache.set_resources(broken)

    def nacked() -> str | None:
        for stream in service.streams.values():
            state = stream.types.get(type_urls.ROUTING_TABLE)
            if state is not None and state.nacked_version == "2":
                return state.nack_detail
        return None

    await until(lambda: nacked() is not None)
    assert "default agent 'nobody' is not among the agents" in (nacked() or "")
    assert tables.version == "1"
    assert tables.by_gateway["travel"].default_agent == "weather"


async def test_tables_survive_the_control_plane_going_away(
    control_plane: ControlPlane, processor: ep_grpc.ExternalProcessorStub
) -> None:
    await control_plane.server.stop(grace=0)
    await until(lambda: not control_plane.service.streams)
    _, answer = await process(processor, chat_body("Will it snow in Oslo?"))
    assert decision_headers(answer)[contract.AGENT_HEADER] == "weather"
    _, answer = await process(processor, chat_body("Convert 20 pounds to yen"))
    assert decision_headers(answer)[contract.AGENT_HEADER] == "currency"


def test_the_contract_type_url_names_the_generated_message() -> None:
    full_name = rt.RoutingTable.DESCRIPTOR.full_name
    assert f"type.googleapis.com/{full_name}" == contract.ROUTING_TABLE_TYPE_URL
