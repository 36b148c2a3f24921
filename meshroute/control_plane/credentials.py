"""API keys: read once per config load, handed to Envoy, never printed.

Two kinds, read the same way. Provider keys (LLMProvider `auth`) go upstream; Gateway
client keys (Gateway `auth.apiKeys`) are what clients must present. A key lives in
the control plane's environment (`fromEnv`) or in a Kubernetes Secret (`secretRef`):
mounted as files (`<secrets dir>/<secret name>/<key>`), or read from the API server
when the control plane watches Kubernetes.

Envoy receives a provider key as a generic secret over ADS and injects it upstream
itself (credential_injector), so the sidecar and the request path never hold it, and
Envoy's /config_dump shows it as [redacted]. Client keys go inline into the
Gateway's api_key_auth filter (which has no SDS form); Envoy marks them sensitive, so
/config_dump shows those as [redacted] too (measured on Envoy 1.40). `meshroute
render` shows REDACTED for both.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from meshroute.control_plane.config.model import Config, Gateway, KeySource, LLMProvider

REDACTED = "REDACTED"

# How each provider API wants its key: header name, and the value around the key.
KEY_HEADERS = {
    "openai": ("Authorization", "Bearer {key}"),
    "azure-openai": ("api-key", "{key}"),
    "anthropic": ("x-api-key", "{key}"),
}


class MissingCredentials(Exception):
    """Keys the config asks for that are not there (or not usable); the message names
    where each was looked for (never a value)."""

    def __init__(self, by_object: Mapping[str, str]) -> None:
        self.by_object = dict(by_object)
        """`Kind/name` (an LLMProvider or a Gateway) -> what is missing and where it was
        looked for."""
        super().__init__("; ".join(f"{ref}: {why}" for ref, why in sorted(by_object.items())))


class SecretStore(Protocol):
    """Where `auth.secretRef` keys are read from."""

    def read(self, secret: str, key: str) -> str | None:
        """The key's value, None if the Secret or the key is not there."""

    def describe(self, secret: str, key: str) -> str:
        """Where the key was looked for, for error messages."""


@dataclass(frozen=True)
class MountedSecrets:
    """Secrets mounted as files: `<directory>/<secret name>/<key>`."""

    directory: Path

    def read(self, secret: str, key: str) -> str | None:
        try:
            return (self.directory / secret / key).read_text(encoding="utf-8")
        except OSError:
            return None

    def describe(self, secret: str, key: str) -> str:
        return str(self.directory / secret / key)


@dataclass(frozen=True)
class Credential:
    provider: str
    header: str
    value: str
    """The whole header value, e.g. "Bearer sk-..."."""


@dataclass(frozen=True)
class ClientKey:
    """One key a Gateway accepts, and the client it names."""

    client: str
    key: str


@dataclass(frozen=True)
class Credentials:
    """Every key one config needs, read together so that no caller can hand Envoy the
    real provider keys but stand-ins for the Gateways' (or the other way round)."""

    providers: Mapping[str, Credential] = field(default_factory=dict)
    """LLMProvider name -> the key Envoy injects upstream."""
    client_keys: Mapping[str, tuple[ClientKey, ...]] = field(default_factory=dict)
    """Gateway name -> the keys it accepts (Gateways with `auth.apiKeys` only)."""


def injected(provider: LLMProvider) -> bool:
    """Envoy injects this provider's key (it has one, and does not pass the client's)."""
    auth = provider.spec.auth
    return auth is not None and not auth.passthrough


def read_credentials(config: Config, secrets: SecretStore | str | Path) -> Credentials:
    """Every injected provider's key and every Gateway client key; MissingCredentials
    naming all that are missing.

    `secrets`: where secretRef keys are; a directory means Secrets mounted as files.
    """
    store = MountedSecrets(Path(secrets)) if isinstance(secrets, str | Path) else secrets
    providers: dict[str, Credential] = {}
    client_keys: dict[str, tuple[ClientKey, ...]] = {}
    missing: dict[str, str] = {}
    for provider in config.providers.values():
        if not injected(provider):
            continue
        assert provider.spec.auth is not None
        key, where = _read_key(provider.spec.auth, store)
        if not key:
            missing[provider.ref] = f"no API key in {where}"
            continue
        providers[provider.name] = _credential(provider, key)
    for gateway in config.gateways.values():
        if _key_sources(gateway):
            try:
                client_keys[gateway.name] = _client_keys(gateway, store)
            except ValueError as problem:
                missing[gateway.ref] = str(problem)
    if missing:
        raise MissingCredentials(missing)
    return Credentials(providers=providers, client_keys=client_keys)


def redacted_credentials(config: Config) -> Credentials:
    """Stand-ins for showing a config without its keys. Each client's stand-in differs
    (Envoy refuses one key for two clients) and none is a secret."""
    return Credentials(
        providers={
            provider.name: _credential(provider, REDACTED)
            for provider in config.providers.values()
            if injected(provider)
        },
        client_keys={
            gateway.name: tuple(
                ClientKey(client, f"{REDACTED}-{client}") for client in _key_sources(gateway)
            )
            for gateway in config.gateways.values()
            if _key_sources(gateway)
        },
    )


def _credential(provider: LLMProvider, key: str) -> Credential:
    header, template = KEY_HEADERS[provider.spec.api]
    value = REDACTED if key == REDACTED else template.format(key=key)
    return Credential(provider=provider.name, header=header, value=value)


def _key_sources(gateway: Gateway) -> dict[str, KeySource]:
    """Client name -> where its key is, for a Gateway with `auth.apiKeys`; else empty."""
    auth = gateway.spec.auth
    if auth is None or auth.api_keys is None:
        return {}
    return {key.client: key for key in auth.api_keys}


def _client_keys(gateway: Gateway, secrets: SecretStore) -> tuple[ClientKey, ...]:
    """The Gateway's keys; ValueError naming every client whose key is missing, or
    shared (Envoy could not tell those clients apart), never a value."""
    keys: list[ClientKey] = []
    problems: list[str] = []
    holders: dict[str, str] = {}
    for client, source in _key_sources(gateway).items():
        key, where = _read_key(source, secrets)
        if not key:
            problems.append(f"client {client}: no API key in {where}")
        elif key in holders:
            problems.append(f"clients {holders[key]} and {client} have the same API key")
        else:
            holders[key] = client
            keys.append(ClientKey(client, key))
    if problems:
        raise ValueError("; ".join(problems))
    return tuple(keys)


def _read_key(source: KeySource, secrets: SecretStore) -> tuple[str, str]:
    """The key (stripped; empty when absent) and where it was looked for."""
    if source.from_env is not None:
        variable = source.from_env
        return os.environ.get(variable, "").strip(), f"environment variable {variable}"
    assert source.secret_ref is not None
    name, key = source.secret_ref.name, source.secret_ref.key
    return (secrets.read(name, key) or "").strip(), secrets.describe(name, key)
