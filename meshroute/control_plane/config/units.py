"""Durations ("500ms", "2s", "1m30s") and sizes ("8Mi", "512Ki") as users write them.

Kubernetes and Envoy users already read these forms every day; accepting exactly
them (and plain numbers of the base unit) means no one has to look anything up.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, PlainSerializer

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|s|m|h)")
_DURATION_UNITS_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = re.compile(r"^(\d+)(Ki|Mi|Gi|K|M|G)?$")
_SIZE_UNITS = {None: 1, "K": 10**3, "M": 10**6, "G": 10**9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


MAX_DURATION_SECONDS = 315_576_000_000
"""The longest protobuf Duration (10,000 years): what Envoy can be given."""


def parse_duration(value: object) -> timedelta:
    """A duration string such as "2s" or "1m30s"; a bare number means seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '500ms', '2s' or '1m'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        parts = _DURATION_PART.findall(text)
        if not parts or "".join(number + unit for number, unit in parts) != text:
            raise ValueError(f"{value!r} is not a duration; write e.g. '500ms', '2s', '1m30s'")
        seconds = sum(float(number) * _DURATION_UNITS_SECONDS[unit] for number, unit in parts)
    else:
        raise ValueError("expected a duration such as '500ms', '2s' or '1m'")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if not seconds <= MAX_DURATION_SECONDS:  # also catches NaN and infinity
        raise ValueError("a duration must be at most 10,000 years")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    milliseconds = round(value.total_seconds() * 1000)
    if milliseconds % 1000:
        return f"{milliseconds}ms"
    return f"{milliseconds // 1000}s"


def parse_size(value: object) -> int:
    """A byte size such as "8Mi" or "1000"; a bare integer means bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as '512Ki' or '8Mi'")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        match = _SIZE.match(value.strip())
        if not match:
            raise ValueError(f"{value!r} is not a size; write e.g. '512Ki', '8Mi' or '1Gi'")
        size = int(match.group(1)) * _SIZE_UNITS[match.group(2)]
    else:
        raise ValueError("expected a size such as '512Ki' or '8Mi'")
    if size <= 0:
        raise ValueError("a size must be positive")
    return size


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than zero")
    return value


Duration = Annotated[
    timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]
PositiveDuration = Annotated[Duration, AfterValidator(_positive)]
ByteSize = Annotated[int, BeforeValidator(parse_size)]
