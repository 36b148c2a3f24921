import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProviderApi(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROVIDER_API_UNSPECIFIED: _ClassVar[ProviderApi]
    OPENAI: _ClassVar[ProviderApi]
    ANTHROPIC: _ClassVar[ProviderApi]
    AZURE_OPENAI: _ClassVar[ProviderApi]
PROVIDER_API_UNSPECIFIED: ProviderApi
OPENAI: ProviderApi
ANTHROPIC: ProviderApi
AZURE_OPENAI: ProviderApi

class RoutingTable(_message.Message):
    __slots__ = ("gateway", "agents", "default_agent", "router", "allow_client_pinning", "models")
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_AGENT_FIELD_NUMBER: _ClassVar[int]
    ROUTER_FIELD_NUMBER: _ClassVar[int]
    ALLOW_CLIENT_PINNING_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    gateway: str
    agents: _containers.RepeatedCompositeFieldContainer[AgentTarget]
    default_agent: str
    router: Router
    allow_client_pinning: bool
    models: ModelRouting
    def __init__(self, gateway: _Optional[str] = ..., agents: _Optional[_Iterable[_Union[AgentTarget, _Mapping]]] = ..., default_agent: _Optional[str] = ..., router: _Optional[_Union[Router, _Mapping]] = ..., allow_client_pinning: _Optional[bool] = ..., models: _Optional[_Union[ModelRouting, _Mapping]] = ...) -> None: ...

class ModelRouting(_message.Message):
    __slots__ = ("targets", "aliases", "default_model", "preferences")
    class TargetsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ModelTarget
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ModelTarget, _Mapping]] = ...) -> None: ...
    class AliasesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    PREFERENCES_FIELD_NUMBER: _ClassVar[int]
    targets: _containers.MessageMap[str, ModelTarget]
    aliases: _containers.ScalarMap[str, str]
    default_model: str
    preferences: _containers.RepeatedCompositeFieldContainer[ModelPreference]
    def __init__(self, targets: _Optional[_Mapping[str, ModelTarget]] = ..., aliases: _Optional[_Mapping[str, str]] = ..., default_model: _Optional[str] = ..., preferences: _Optional[_Iterable[_Union[ModelPreference, _Mapping]]] = ...) -> None: ...

class ModelTarget(_message.Message):
    __slots__ = ("name", "provider", "model_id", "api", "path", "passthrough_auth")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    API_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    PASSTHROUGH_AUTH_FIELD_NUMBER: _ClassVar[int]
    name: str
    provider: str
    model_id: str
    api: ProviderApi
    path: str
    passthrough_auth: bool
    def __init__(self, name: _Optional[str] = ..., provider: _Optional[str] = ..., model_id: _Optional[str] = ..., api: _Optional[_Union[ProviderApi, str]] = ..., path: _Optional[str] = ..., passthrough_auth: _Optional[bool] = ...) -> None: ...

class ModelPreference(_message.Message):
    __slots__ = ("name", "description", "model")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    model: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class AgentTarget(_message.Message):
    __slots__ = ("name", "description", "examples", "url", "timeout")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    examples: _containers.RepeatedScalarFieldContainer[str]
    url: str
    timeout: _duration_pb2.Duration
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., examples: _Optional[_Iterable[str]] = ..., url: _Optional[str] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class Router(_message.Message):
    __slots__ = ("embedded", "orchestrator")
    EMBEDDED_FIELD_NUMBER: _ClassVar[int]
    ORCHESTRATOR_FIELD_NUMBER: _ClassVar[int]
    embedded: EmbeddedRouter
    orchestrator: OrchestratorRouter
    def __init__(self, embedded: _Optional[_Union[EmbeddedRouter, _Mapping]] = ..., orchestrator: _Optional[_Union[OrchestratorRouter, _Mapping]] = ...) -> None: ...

class EmbeddedRouter(_message.Message):
    __slots__ = ("min_score",)
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    min_score: float
    def __init__(self, min_score: _Optional[float] = ...) -> None: ...

class OrchestratorRouter(_message.Message):
    __slots__ = ("url", "model", "timeout", "max_turns", "max_tokens", "max_concurrency", "cache_ttl", "cache_max_entries")
    URL_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    MAX_TURNS_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    CACHE_TTL_FIELD_NUMBER: _ClassVar[int]
    CACHE_MAX_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    url: str
    model: str
    timeout: _duration_pb2.Duration
    max_turns: int
    max_tokens: int
    max_concurrency: int
    cache_ttl: _duration_pb2.Duration
    cache_max_entries: int
    def __init__(self, url: _Optional[str] = ..., model: _Optional[str] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_turns: _Optional[int] = ..., max_tokens: _Optional[int] = ..., max_concurrency: _Optional[int] = ..., cache_ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., cache_max_entries: _Optional[int] = ...) -> None: ...
