"""Small conversions every translator needs: Any packing, durations, header options."""

from __future__ import annotations

from datetime import timedelta

from envoy.config.core.v3 import base_pb2
from google.protobuf import any_pb2, duration_pb2, message


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
