"""Provider API keys: read once per config load, handed to Envoy as SDS secrets, never
printed.

A key lives in the control plane's environment (`auth.fromEnv`) or in a Kubernetes
Secret (`auth.secretRef`): mounted as files (`<secrets dir>/<secret name>/<key>`), or
read from the API server when the control plane watches Kubernetes.
Envoy receives it as a generic secret over ADS and injects it upstream itself
(credential_injector), so the sidecar and the request path never hold it, and
Envoy's /config_dump shows it as [redacted]. `meshroute render` shows REDACTED.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from meshroute.control_plane.config.model import Config, LLMProvider

REDACTED = "REDACTED"

# How each provider API wants its key: header name, and the value around the key.
KEY_HEADERS = {
    "openai": ("Authorization", "Bearer {key}"),
    "azure-openai": ("api-key", "{key}"),
    "anthropic": ("x-api-key", "{key}"),
}


class MissingCredentials(Exception):
    """Keys the config asks for that are not there; the message names where each was
    looked for (never a value)."""

    def __init__(self, by_provider: Mapping[str, str]) -> None:
        self.by_provider = dict(by_provider)
        """LLMProvider name -> what is missing and where it was looked for."""
        super().__init__(
            "; ".join(f"LLMProvider/{name}: {why}" for name, why in sorted(by_provider.items()))
        )


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


def injected(provider: LLMProvider) -> bool:
    """Envoy injects this provider's key (it has one, and does not pass the client's)."""
    auth = provider.spec.auth
    return auth is not None and not auth.passthrough


def read_credentials(config: Config, secrets: SecretStore | str | Path) -> Mapping[str, Credential]:
    """Every injected provider's key; MissingCredentials naming all that are missing.

    `secrets`: where secretRef keys are; a directory means Secrets mounted as files.
    """
    store = MountedSecrets(Path(secrets)) if isinstance(secrets, str | Path) else secrets
    found: dict[str, Credential] = {}
    missing: dict[str, str] = {}
    for provider in config.providers.values():
        if not injected(provider):
            continue
        key, where = _read_key(provider, store)
        if not key:
            missing[provider.name] = f"no API key in {where}"
            continue
        found[provider.name] = _credential(provider, key)
    if missing:
        raise MissingCredentials(missing)
    return found


def redacted_credentials(config: Config) -> Mapping[str, Credential]:
    """Stand-ins for showing a config without its keys."""
    return {
        provider.name: _credential(provider, REDACTED)
        for provider in config.providers.values()
        if injected(provider)
    }


def _credential(provider: LLMProvider, key: str) -> Credential:
    header, template = KEY_HEADERS[provider.spec.api]
    value = REDACTED if key == REDACTED else template.format(key=key)
    return Credential(provider=provider.name, header=header, value=value)


def _read_key(provider: LLMProvider, secrets: SecretStore) -> tuple[str, str]:
    auth = provider.spec.auth
    assert auth is not None
    if auth.from_env is not None:
        return os.environ.get(auth.from_env, "").strip(), f"environment variable {auth.from_env}"
    assert auth.secret_ref is not None
    name, key = auth.secret_ref.name, auth.secret_ref.key
    return (secrets.read(name, key) or "").strip(), secrets.describe(name, key)
