"""Small conversions every translator needs: Any packing, durations, header options."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable
from datetime import timedelta
from typing import Generic, TypeVar

from envoy.config.core.v3 import base_pb2
from google.protobuf import any_pb2, duration_pb2, message
from pydantic import BaseModel

M = TypeVar("M", bound=message.Message)


def pack(msg: message.Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(msg)
    return packed


def duration(value: timedelta) -> duration_pb2.Duration:
    result = duration_pb2.Duration()
    result.FromTimedelta(value)
    return result


def set_header(name: str, value: str) -> base_pb2.HeaderValueOption:
    """Overwrite (or add) one header; a client cannot smuggle in a second value."""
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=name, value=value),
        append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
    )


class Built(Generic[M]):
    """Messages built from equal inputs, built once and then copied.

    Translating 1,000 agents builds the same retry policy, route action or cluster
    shape thousands of times (every route to an upstream carries its policy), and
    building protobuf messages field by field in Python was most of a reload's
    translation. The key must hold every input of `build` by value (`value_key`
    for config models), so equal keys mean equal messages; a copy is handed out,
    so callers may change it. Forgets everything past `limit` entries.
    """

    def __init__(self, limit: int = 16384) -> None:
        self._limit = limit
        self._by_key: dict[Hashable, M] = {}

    def get(self, key: Hashable, build: Callable[[], M]) -> M:
        built = self._by_key.get(key)
        if built is None:
            if len(self._by_key) >= self._limit:
                self._by_key.clear()
            built = self._by_key[key] = build()
        copy = type(built)()
        copy.CopyFrom(built)
        return copy


_value_keys: dict[int, tuple[weakref.ref[BaseModel], str]] = {}


def value_key(model: BaseModel) -> str:
    """Every field of a frozen config model, as one string (its JSON): a cache key
    that cannot miss a field added later. Remembered per object while it lives (it is
    the same object for every route to one upstream); the entry goes with it."""
    entry = _value_keys.get(id(model))
    if entry is not None and entry[0]() is model:
        return entry[1]
    key = model.model_dump_json()
    identity = id(model)

    def forget(_: weakref.ref[BaseModel]) -> None:
        current = _value_keys.get(identity)
        if current is not None and current[0]() is None:
            _value_keys.pop(identity, None)

    _value_keys[identity] = (weakref.ref(model, forget), key)
    return key
