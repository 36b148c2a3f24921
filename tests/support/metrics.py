"""Reading metrics in tests and benches: a Prometheus endpoint, as Prometheus itself
parses it, and Envoy's own stats from its admin."""

from __future__ import annotations

import re

import httpx
from prometheus_client.parser import text_string_to_metric_families

Sample = tuple[str, dict[str, str], float]


def metric_samples(url: str) -> list[Sample]:
    text = httpx.get(url, timeout=10).text
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of `name` over the samples whose labels include `labels`."""
    return sum(
        value
        for sample_name, sample_labels, value in samples
        if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items())
    )


def envoy_stats(admin: str, pattern: str) -> dict[str, int]:
    """Envoy's counters and gauges whose names match `pattern` (a regular expression,
    as Envoy's /stats filter reads it), from its admin at `admin` (a base URL)."""
    text = httpx.get(f"{admin}/stats", params={"filter": pattern}, timeout=10).text
    stats = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if value.isdigit():  # histograms print quantiles instead
            stats[name] = int(value)
    return stats


def envoy_counter(admin: str, name: str, *, missing: int | None = None) -> int:
    """One of Envoy's stats.

    Envoy creates some stats only when first used: `missing` is what their absence
    means; without it, a missing stat fails the test, so a misspelt name cannot pass
    as zero."""
    value = envoy_stats(admin, f"^{re.escape(name)}$").get(name, missing)
    if value is None:
        raise AssertionError(f"Envoy has no stat {name}")
    return value
