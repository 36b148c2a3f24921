"""The model gateway's decisions in the sidecar, phase by phase, without Envoy."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

from meshroute.api.v1alpha1 import routing_table_pb2 as rt
from meshroute.control_plane.config import load_config
from meshroute.control_plane.translate.snapshot import translate
from meshroute.ext_proc.model_routing import ModelExchange, ModelRouting
from tests.support.configs import QUICKSTART, provider_yaml


def table(tmp_path: Path, extra: str = "") -> rt.RoutingTable:
    path = tmp_path / "extra.yaml"
    path.write_text(extra or "---\n")
    config = load_config([QUICKSTART / "models.yaml", *([path] if extra else [])])
    return next(t for t in translate(config).routing_tables if t.gateway == "llm")


def headers(path: str, **more: str) -> ep.HttpHeaders:
    message = ep.HttpHeaders()
    for key, value in {":path": path, **more}.items():
        message.headers.headers.append(base_pb2.HeaderValue(key=key, raw_value=value.encode()))
    return message


def run_exchange(
    routing: ModelRouting, path: str, body: dict[str, object], **more: str
) -> tuple[ModelExchange, list[ep.ProcessingResponse]]:
    """The request side of one exchange, and every answer it gave."""
    exchange = routing.start()
    answers = [exchange.request_headers(headers(path, **more))]

    async def collect() -> None:
        async for answer in exchange.request_body(json.dumps(body).encode()):
            answers.append(answer)

    asyncio.run(collect())
    return exchange, answers


def run(
    routing: ModelRouting, path: str, body: dict[str, object], **more: str
) -> list[ep.ProcessingResponse]:
    return run_exchange(routing, path, body, **more)[1]


def set_headers(answer: ep.ProcessingResponse) -> dict[str, str]:
    mutation = answer.request_body.response.header_mutation
    return {h.header.key: h.header.raw_value.decode() for h in mutation.set_headers}


def test_an_alias_is_rewritten_to_the_provider_id_and_path(tmp_path: Path) -> None:
    routing = ModelRouting(table(tmp_path))
    _, answer = run(
        routing,
        "/v1/chat/completions",
        {"model": "fast", "messages": [{"role": "user", "content": "hi"}]},
    )
    sent = set_headers(answer)
    assert sent[":path"] == "/openai/v1/chat/completions"
    assert sent["x-meshroute-provider"] == "demo-openai"
    assert sent["x-meshroute-route-reason"] == "alias"
    body = json.loads(answer.request_body.response.body_mutation.body)
    assert body["model"] == "gpt-demo-mini"
    assert int(sent["content-length"]) == len(answer.request_body.response.body_mutation.body)
    assert answer.request_body.response.clear_route_cache


def test_azure_takes_the_deployment_path_and_a_passed_through_key_moves(tmp_path: Path) -> None:
    azure = provider_yaml("azure", "https://corp.openai.azure.com", {"corp-gpt": "gpt4o-prod"})
    azure = azure.replace(
        "spec:\n",
        "spec:\n  api: azure-openai\n  apiVersion: '2024-10-21'\n  auth: {passthrough: true}\n",
    )
    routing = ModelRouting(table(tmp_path, azure))
    _, answer = run(
        routing,
        "/v1/chat/completions",
        {"model": "corp-gpt", "messages": [{"role": "user", "content": "hi"}]},
        authorization="Bearer client-own-key",
    )
    sent = set_headers(answer)
    assert sent[":path"] == "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21"
    assert sent["api-key"] == "client-own-key"  # where Azure reads it


def test_an_anthropic_client_to_an_openai_provider_is_translated_and_watched(
    tmp_path: Path,
) -> None:
    routing = ModelRouting(table(tmp_path))
    exchange, (_, answer) = run_exchange(
        routing,
        "/v1/messages",
        {
            "model": "gpt-demo",
            "max_tokens": 50,
            "system": "be brief",
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    assert not exchange.finished  # the response comes back in OpenAI's shape: it is awaited
    body = json.loads(answer.request_body.response.body_mutation.body)
    assert body["messages"][0] == {"role": "system", "content": "be brief"}
    assert set_headers(answer)[":path"] == "/openai/v1/chat/completions"


@pytest.mark.parametrize("model", ["fast", "claude-demo"])
def test_a_provider_of_the_clients_own_api_ends_the_exchange_at_the_body(
    tmp_path: Path, model: str
) -> None:
    """Nothing to translate back: the sidecar is done once it has routed the body, so
    the server ends the stream and Envoy skips the response phases."""
    client_path = "/v1/messages" if model.startswith("claude") else "/v1/chat/completions"
    exchange, (first, answer) = run_exchange(
        ModelRouting(table(tmp_path)),
        client_path,
        {"model": model, "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert not first.HasField("immediate_response")
    assert answer.request_body.response.clear_route_cache
    assert exchange.finished


@pytest.mark.parametrize(
    ("model", "code"),
    [("gpt-9", "model_not_found"), (42, "invalid_model")],
)
def test_bad_models_are_answered_at_once(tmp_path: Path, model: object, code: str) -> None:
    _, answer = run(
        ModelRouting(table(tmp_path)),
        "/v1/chat/completions",
        {"model": model, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert answer.immediate_response.details == code
