from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RoutingTable(_message.Message):
    __slots__ = ("gateway", "agents", "default_agent", "router")
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_AGENT_FIELD_NUMBER: _ClassVar[int]
    ROUTER_FIELD_NUMBER: _ClassVar[int]
    gateway: str
    agents: _containers.RepeatedCompositeFieldContainer[AgentTarget]
    default_agent: str
    router: Router
    def __init__(self, gateway: _Optional[str] = ..., agents: _Optional[_Iterable[_Union[AgentTarget, _Mapping]]] = ..., default_agent: _Optional[str] = ..., router: _Optional[_Union[Router, _Mapping]] = ...) -> None: ...

class AgentTarget(_message.Message):
    __slots__ = ("name", "description", "examples")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    examples: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., examples: _Optional[_Iterable[str]] = ...) -> None: ...

class Router(_message.Message):
    __slots__ = ("embedded",)
    EMBEDDED_FIELD_NUMBER: _ClassVar[int]
    embedded: EmbeddedRouter
    def __init__(self, embedded: _Optional[_Union[EmbeddedRouter, _Mapping]] = ...) -> None: ...

class EmbeddedRouter(_message.Message):
    __slots__ = ("min_score",)
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    min_score: float
    def __init__(self, min_score: _Optional[float] = ...) -> None: ...
