"""A model gateway's routing: which model serves a request, and talking to it in its API.

Requests reach the sidecar only when Envoy could not route them alone: an alias,
`auto`, no model, an unknown model, or a provider of the other API. The sidecar
picks the model, rewrites the body for the provider (model id, and the other API's
shape when needed), points Envoy at the provider (`:path`, x-meshroute-provider),
and, only when it translated the request, translates the response back.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from opentelemetry.util.types import AttributeValue

from meshroute.api import contract
from meshroute.api.v1alpha1 import routing_table_pb2 as rt
from meshroute.ext_proc import responses
from meshroute.ext_proc.chat_request import BadRequest, parse_chat_request
from meshroute.ext_proc.choosers import Chooser, NamedRoute, build_chooser
from meshroute.ext_proc.exchange import (
    CONTINUE_RESPONSE_BODY,
    CONTINUE_RESPONSE_HEADERS,
    Exchange,
    header_value,
    header_values,
)
from meshroute.ext_proc.metrics import SidecarMetrics
from meshroute.ext_proc.telemetry import child_span, request_attributes
from meshroute.ext_proc.translators import anthropic_client, openai_client

log = logging.getLogger("meshroute.ext_proc")

OPENAI, ANTHROPIC = "openai", "anthropic"
# The API family each provider API belongs to: Azure speaks OpenAI's bodies.
_FAMILY = {rt.OPENAI: OPENAI, rt.AZURE_OPENAI: OPENAI, rt.ANTHROPIC: ANTHROPIC}
_CLIENT_APIS = {contract.CHAT_COMPLETIONS_PATH: OPENAI, contract.MESSAGES_PATH: ANTHROPIC}
# Where a client may send its own key, in the order one is picked for passing through.
_CLIENT_KEY_HEADERS = ("authorization", "x-api-key", "api-key")
_READ_HEADERS = frozenset((":path", *_CLIENT_KEY_HEADERS))
# Where each API expects the key (and how), for passing a client's own key through.
_KEY_HEADERS = {rt.OPENAI: "authorization", rt.AZURE_OPENAI: "api-key", rt.ANTHROPIC: "x-api-key"}
_MODE = processing_mode_pb2.ProcessingMode


def _mode(response_headers: int, response_body: int) -> processing_mode_pb2.ProcessingMode:
    """A whole processing mode: an override replaces every field, not just one."""
    return _MODE(
        request_header_mode=_MODE.SEND,
        request_body_mode=_MODE.BUFFERED,
        request_trailer_mode=_MODE.SKIP,
        response_header_mode=response_headers,
        response_body_mode=response_body,
        response_trailer_mode=_MODE.SKIP,
    )


_TRANSLATE_STREAM = _mode(_MODE.SEND, _MODE.STREAMED)
_TRANSLATE_WHOLE = _mode(_MODE.SEND, _MODE.BUFFERED)
_EMPTY_BODY = responses.error(
    400, "empty_body", "the request body is empty; send a JSON chat request"
)


class StreamTranslator(Protocol):
    def feed(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


@dataclass(frozen=True)
class ModelChoice:
    target: rt.ModelTarget
    reason: str
    cause: str | None = None
    detail: str = ""
    model_seconds: float | None = None
    """How long the routing model took, for `model: auto`."""

    def attributes(self) -> dict[str, AttributeValue]:
        """The choice, as span attributes."""
        attributes: dict[str, AttributeValue] = {
            "meshroute.model": self.target.name,
            "meshroute.provider": self.target.provider,
            "meshroute.route_reason": self.reason,
        }
        if self.cause is not None:
            attributes["meshroute.fallback_cause"] = self.cause
        if self.model_seconds is not None:
            attributes["meshroute.orchestrator_ms"] = round(self.model_seconds * 1000, 2)
        return attributes


class ModelNotFound(Exception):
    pass


class ModelRouting:
    """A model gateway. Built from a RoutingTable; ValueError if the table is unusable."""

    def __init__(
        self,
        table: rt.RoutingTable,
        session: aiohttp.ClientSession | None = None,
        metrics: SidecarMetrics | None = None,
    ) -> None:
        models = table.models
        self.gateway = table.gateway
        self.targets: Mapping[str, rt.ModelTarget] = dict(models.targets)
        self.aliases: Mapping[str, str] = dict(models.aliases)
        if models.default_model not in self.targets:
            raise ValueError(
                f"gateway {self.gateway}: default model {models.default_model!r} unknown"
            )
        for alias, name in self.aliases.items():
            if name not in self.targets:
                raise ValueError(f"gateway {self.gateway}: alias {alias!r} names no model")
        self.default_model = models.default_model
        self._preferences = {p.name: p.model for p in models.preferences}
        self._chooser: Chooser | None = None
        if models.preferences:
            self._chooser = build_chooser(
                table.router,
                [NamedRoute(p.name, p.description) for p in models.preferences],
                session,
                f"gateway {self.gateway}",
            )
        self._metrics = metrics or SidecarMetrics()
        self._route_headers: dict[tuple[str, str], tuple[base_pb2.HeaderValueOption, ...]] = {}

    def start(self) -> ModelExchange:
        return ModelExchange(self)

    def route_headers(
        self, target: rt.ModelTarget, reason: str
    ) -> tuple[base_pb2.HeaderValueOption, ...]:
        """responses.model_route_headers, made once per target and reason of this table
        (at most targets x reasons entries) and kept with it."""
        key = (target.name, reason)
        headers = self._route_headers.get(key)
        if headers is None:
            headers = self._route_headers[key] = responses.model_route_headers(target, reason)
        return headers

    async def choose(self, payload: dict[str, Any], turns: Sequence[Any]) -> ModelChoice:
        """The model for this request; ModelNotFound for a name nobody serves."""
        named = payload.get("model")
        if named is None or named == "":
            return ModelChoice(self.targets[self.default_model], contract.REASON_DEFAULT)
        if not isinstance(named, str):
            raise BadRequest("invalid_model", "'model' must be a string")
        if named == contract.AUTO_MODEL:
            return await self._by_preference(turns)
        if named in self.aliases:
            return ModelChoice(self.targets[self.aliases[named]], contract.REASON_ALIAS)
        if named in self.targets:
            return ModelChoice(self.targets[named], contract.REASON_MODEL)
        raise ModelNotFound(named)

    async def _by_preference(self, turns: Sequence[Any]) -> ModelChoice:
        default = self.targets[self.default_model]
        if self._chooser is None:
            return ModelChoice(default, contract.REASON_DEFAULT)
        choice = await self._chooser.choose(turns)
        seconds = choice.model_seconds
        if choice.cause is not None:
            return ModelChoice(
                default, contract.REASON_FALLBACK, choice.cause, choice.detail, seconds
            )
        if not choice.names:
            return ModelChoice(default, contract.REASON_DEFAULT, model_seconds=seconds)
        model = self._preferences[choice.names[0]]
        return ModelChoice(self.targets[model], contract.REASON_PREFERENCE, model_seconds=seconds)

    def count(self, choice: ModelChoice) -> None:
        self._metrics.decided(
            self.gateway,
            choice.target.name,
            choice.reason,
            cause=choice.cause,
            detail=choice.detail,
            model_seconds=choice.model_seconds,
        )


class ModelExchange(Exchange):
    """One request on a model gateway, and its response when it needs translating."""

    def __init__(self, routing: ModelRouting) -> None:
        self._routing = routing
        self._client_api = OPENAI
        self._client_keys: dict[str, str] = {}
        self._model = ""
        self._translate_to: str | None = None
        """The client's API, when the provider speaks the other one."""
        self._streaming = False
        self._include_usage = False
        self._status = 200
        self._stream: StreamTranslator | None = None
        self._buffered = bytearray()

    # ----------------------------------------------------------------- request side

    def request_headers(self, headers: ep.HttpHeaders) -> ep.ProcessingResponse:
        found = header_values(headers, _READ_HEADERS)
        path = found.get(":path", "").split("?", 1)[0]
        client_api = _CLIENT_APIS.get(path)
        if client_api is None:
            return self.finish(
                responses.error(404, "route_not_found", f"{path} is not served by this gateway")
            )
        if headers.end_of_stream:
            return self.finish(_EMPTY_BODY)
        self._client_api = client_api
        for name in _CLIENT_KEY_HEADERS:  # in this order: the first found is passed on
            value = found.get(name)
            if value:
                self._client_keys[name] = value
        return responses.CONTINUE_HEADERS

    async def request_body(self, body: bytes) -> AsyncIterator[ep.ProcessingResponse]:
        routing = self._routing
        try:
            with child_span("parse request") as span:
                request = parse_chat_request(body)
                if span.is_recording():
                    span.set_attributes(request_attributes(request))
            with child_span("routing decision") as span:
                choice = await routing.choose(request.payload, request.turns)
                if span.is_recording():
                    span.set_attributes(choice.attributes())
        except BadRequest as bad:
            yield self.finish(responses.error(400, bad.code, bad.message))
            return
        except ModelNotFound as missing:
            yield self.finish(
                responses.error(
                    404,
                    "model_not_found",
                    f"model {missing.args[0]!r} is not served by this gateway; "
                    f"GET {contract.MODELS_PATH} lists the models",
                )
            )
            return
        routing.count(choice)
        target = choice.target
        self._model = target.name
        payload = request.payload
        self._streaming = bool(payload.get("stream"))
        options = payload.get("stream_options")
        self._include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        provider_family = _FAMILY[target.api]
        if provider_family == self._client_api:
            upstream = {**payload, "model": target.model_id}
        else:
            self._translate_to = self._client_api
            if self._client_api == ANTHROPIC:
                upstream = anthropic_client.request_to_openai(payload, target.model_id)
            else:
                upstream = openai_client.request_to_anthropic(payload, target.model_id)
        answer = responses.route_model(
            route_headers=routing.route_headers(target, choice.reason),
            body=json.dumps(upstream).encode(),
            key_headers=self._moved_key(target),
        )
        # A response in the client's own API needs nothing from us: ending the stream
        # here tells Envoy to skip the response phases.
        yield answer if self._translate_to is not None else self.finish(answer)

    def _moved_key(self, target: rt.ModelTarget) -> list[base_pb2.HeaderValueOption]:
        """A passed-through client key, in the header the provider's API reads."""
        if not target.passthrough_auth or not self._client_keys:
            return []
        key = next(iter(self._client_keys.values())).removeprefix("Bearer ").strip()
        header = _KEY_HEADERS[target.api]
        value = f"Bearer {key}" if header == "authorization" else key
        return [responses.header(header, value)]

    # ---------------------------------------------------------------- response side

    def response_headers(self, headers: ep.HttpHeaders) -> ep.ProcessingResponse:
        if self._translate_to is None or headers.end_of_stream:
            return self.finish(CONTINUE_RESPONSE_HEADERS)
        self._status = int(header_value(headers, ":status") or 200)
        content_type = header_value(headers, "content-type") or ""
        answer = ep.ProcessingResponse(response_headers=ep.HeadersResponse())
        answer.response_headers.response.header_mutation.remove_headers.append("content-length")
        if self._status == 200 and content_type.startswith("text/event-stream"):
            self._stream = (
                anthropic_client.StreamToAnthropic(self._model)
                if self._translate_to == ANTHROPIC
                else openai_client.StreamToOpenAI(self._model, self._include_usage)
            )
            answer.mode_override.CopyFrom(_TRANSLATE_STREAM)
        else:
            answer.mode_override.CopyFrom(_TRANSLATE_WHOLE)
            answer.response_headers.response.header_mutation.set_headers.append(
                responses.header("content-type", "application/json")
            )
        return answer

    def response_body(self, body: bytes, end_of_stream: bool) -> ep.ProcessingResponse:
        answer = self._response_body(body, end_of_stream)
        return self.finish(answer) if end_of_stream else answer

    def _response_body(self, body: bytes, end_of_stream: bool) -> ep.ProcessingResponse:
        if self._translate_to is None:
            return CONTINUE_RESPONSE_BODY
        if self._stream is not None:
            out = self._stream.feed(body)
            if end_of_stream:
                out += self._stream.finish()
            return responses.replace_response_body(out)
        translated = json.dumps(self._translate_whole(body)).encode()
        return responses.replace_response_body(translated, set_length=True)

    def _translate_whole(self, body: bytes) -> dict[str, Any]:
        if self._status >= 400:
            if self._translate_to == ANTHROPIC:
                return anthropic_client.error_from_openai(self._status, body)
            return openai_client.error_from_anthropic(self._status, body)
        try:
            parsed = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            parsed = None
        if not isinstance(parsed, dict):
            log.warning(
                "gateway %s: provider answered 200 with no JSON object", self._routing.gateway
            )
            bad = b'{"error": {"message": "the provider answered with something other than JSON"}}'
            if self._translate_to == ANTHROPIC:
                return anthropic_client.error_from_openai(502, bad)
            return openai_client.error_from_anthropic(502, bad)
        if self._translate_to == ANTHROPIC:
            return anthropic_client.response_from_openai(parsed, self._model)
        return openai_client.response_from_anthropic(parsed, self._model)
