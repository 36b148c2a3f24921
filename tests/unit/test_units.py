from __future__ import annotations

from datetime import timedelta

import pytest

from meshroute.control_plane.config.units import format_duration, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("2s", 2), ("1m30s", 90), ("1h", 3600), ("250us", 0.00025), (3, 3)],
)
def test_durations_read_as_kubernetes_and_envoy_users_write_them(
    text: object, seconds: float
) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "2", "2 s", "s", "1d", "-1s", "1.5.2s", True, None, [1]])
def test_bad_durations_are_refused_with_an_example(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize("value", ["100000000000000s", float("inf"), float("nan"), 1e300])
def test_durations_beyond_what_envoy_takes_are_refused_not_a_crash(value: object) -> None:
    with pytest.raises(ValueError, match="at most 10,000 years"):
        parse_duration(value)


def test_durations_format_back() -> None:
    assert format_duration(timedelta(seconds=2)) == "2s"
    assert format_duration(timedelta(milliseconds=1500)) == "1500ms"


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("8Mi", 8 * 2**20),
        ("512Ki", 512 * 1024),
        ("1Gi", 2**30),
        ("1000", 1000),
        ("2K", 2000),
        (64, 64),
    ],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["8MB", "1.5Mi", "", "-1", "0", True, 1.5])
def test_bad_sizes_are_refused(text: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)
