"""Deployment facts the config files do not say, which translation needs."""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

from meshroute.control_plane.config.model import Endpoint, parse_base_url

DEFAULT_SECRETS_DIR = "/var/run/secrets/meshroute"
DEFAULT_TRACING_SERVICE_NAME = "meshroute-envoy"

# The standard OpenTelemetry environment (the SDK specification's names), which the
# sidecar's own tracer reads too: one setting for the whole deployment.
_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_PROTOCOL_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
_SAMPLER_VARIABLE = "OTEL_TRACES_SAMPLER"
_SAMPLER_ARG_VARIABLE = "OTEL_TRACES_SAMPLER_ARG"
_SERVICE_NAME_VARIABLE = "OTEL_SERVICE_NAME"

# Samplers whose ratio is fixed. Envoy's tracer always follows the sampled flag of an
# incoming traceparent and applies its ratio to new traces only, so the plain and the
# `parentbased_` names mean the same thing to it.
_FIXED_RATIO_SAMPLERS = {
    "always_on": 1.0,
    "parentbased_always_on": 1.0,
    "always_off": 0.0,
    "parentbased_always_off": 0.0,
}
# Samplers whose ratio is OTEL_TRACES_SAMPLER_ARG (1.0 when unset, as the SDKs do).
_RATIO_SAMPLERS = ("traceidratio", "parentbased_traceidratio")

# Where operating systems keep the CA bundle, most common first.
_CA_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine (and our image)
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL
    "/etc/ssl/cert.pem",  # macOS, some BSDs
)


def default_ca_bundle() -> str:
    """The system CA bundle on this machine (Envoy in a pod runs on the same image)."""
    found = ssl.get_default_verify_paths().cafile
    if found and os.path.isfile(found):
        return found
    return next((path for path in _CA_BUNDLES if os.path.isfile(path)), _CA_BUNDLES[0])


@dataclass(frozen=True)
class TracingSettings:
    """Envoy's tracing: where its spans go, which share of new traces it keeps, and
    the service its spans are from. From the environment, or a Gateway's `tracing`."""

    endpoint: Endpoint
    """An OpenTelemetry collector taking OTLP over gRPC (https: over TLS)."""
    sampling_ratio: float = 1.0
    """0.0 to 1.0: the share of new traces kept."""
    service_name: str = DEFAULT_TRACING_SERVICE_NAME

    def __post_init__(self) -> None:
        if not 0.0 <= self.sampling_ratio <= 1.0:
            raise ValueError(f"a sampling ratio is between 0.0 and 1.0, not {self.sampling_ratio}")


def tracing_from_environment(environ: Mapping[str, str]) -> TracingSettings | None:
    """Envoy's tracing from the standard OpenTelemetry variables; None (no tracing)
    when they name no collector. ValueError says which variable is wrong and why."""
    found = _first_set(environ, _ENDPOINT_VARIABLES)
    if found is None:
        return None
    variable, url = found
    _require_grpc_protocol(environ)
    return TracingSettings(
        endpoint=_collector_endpoint(variable, url),
        sampling_ratio=_sampling_ratio(environ),
        service_name=_variable(environ, _SERVICE_NAME_VARIABLE) or DEFAULT_TRACING_SERVICE_NAME,
    )


def _variable(environ: Mapping[str, str], name: str) -> str | None:
    """The variable's value; None when unset or empty (OpenTelemetry treats an empty
    value as unset)."""
    value = environ.get(name, "").strip()
    return value or None


def _first_set(environ: Mapping[str, str], names: tuple[str, ...]) -> tuple[str, str] | None:
    """The first of `names` that is set, most specific first, with its value."""
    return next(
        ((name, value) for name in names if (value := _variable(environ, name)) is not None),
        None,
    )


def _collector_endpoint(variable: str, url: str) -> Endpoint:
    """scheme://host:port of the collector; a path means nothing to OTLP over gRPC, and
    is ignored as the OpenTelemetry SDKs' gRPC exporters ignore it."""
    try:
        endpoint = parse_base_url(url)
    except ValueError as error:
        raise ValueError(f"{variable}: {error}") from None
    return Endpoint(scheme=endpoint.scheme, host=endpoint.host, port=endpoint.port)


def _require_grpc_protocol(environ: Mapping[str, str]) -> None:
    """Envoy's tracer is configured to speak OTLP over gRPC only; pointed at an
    OTLP/HTTP port it would lose every span without a word, so refuse instead."""
    found = _first_set(environ, _PROTOCOL_VARIABLES)
    if found is not None and found[1].lower() != "grpc":
        variable, protocol = found
        raise ValueError(
            f"{variable}={protocol!r}: Envoy exports spans over OTLP/gRPC only; "
            "set it to 'grpc' and point the endpoint at the collector's gRPC port (4317)"
        )


def _sampling_ratio(environ: Mapping[str, str]) -> float:
    """OTEL_TRACES_SAMPLER (default parentbased_always_on) and its argument, as the
    share of new traces Envoy keeps."""
    sampler = (_variable(environ, _SAMPLER_VARIABLE) or "parentbased_always_on").lower()
    if sampler in _FIXED_RATIO_SAMPLERS:
        return _FIXED_RATIO_SAMPLERS[sampler]
    if sampler not in _RATIO_SAMPLERS:
        known = ", ".join([*_FIXED_RATIO_SAMPLERS, *_RATIO_SAMPLERS])
        raise ValueError(f"{_SAMPLER_VARIABLE}={sampler!r} is not supported; use one of {known}")
    argument = _variable(environ, _SAMPLER_ARG_VARIABLE)
    if argument is None:
        return 1.0
    try:
        ratio = float(argument)
    except ValueError:
        ratio = -1.0  # reported below, with the range
    if not 0.0 <= ratio <= 1.0:  # also refuses nan
        raise ValueError(
            f"{_SAMPLER_ARG_VARIABLE}={argument!r}: a sampling ratio is a number from 0.0 to 1.0"
        )
    return ratio


@dataclass(frozen=True)
class DeploymentSettings:
    """Deployment facts the config files do not say: where listeners bind, where the
    system's CA bundle is, where Envoy's spans go."""

    bind_address: str = "0.0.0.0"
    """Where gateway listeners bind."""
    internal_address: str = "127.0.0.1"
    """Where the internal listener binds; the sidecar must reach it here."""
    internal_port: int = 18010
    ca_bundle: str | None = None
    """The CA bundle https upstreams are checked against unless they name their own
    (None: this system's). A file, because Envoy refuses to check certificate names
    against `system_root_certs`."""

    secrets_dir: str = DEFAULT_SECRETS_DIR
    """Where Kubernetes Secrets named by `auth.secretRef` are mounted, one directory per
    Secret and one file per key."""
    tracing: TracingSettings | None = None
    """Envoy's tracing for every Gateway that does not say otherwise, and for the
    internal listener (tracing_from_environment); None: only Gateways with their own
    `tracing.endpoint` are traced."""

    @property
    def system_ca_bundle(self) -> str:
        return self.ca_bundle or default_ca_bundle()

    @property
    def internal_url(self) -> str:
        return f"http://{self.internal_address}:{self.internal_port}"
