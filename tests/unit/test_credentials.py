"""Provider keys: where they are read from, how Envoy gets them, and that they stay hidden."""

from __future__ import annotations

from pathlib import Path

import pytest
from envoy.extensions.filters.http.credential_injector.v3 import credential_injector_pb2
from envoy.extensions.http.injected_credentials.generic.v3 import generic_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from meshroute.control_plane.config import load_config
from meshroute.control_plane.config.model import Config
from meshroute.control_plane.credentials import (
    MissingCredentials,
    read_credentials,
    redacted_credentials,
)
from meshroute.control_plane.translate.snapshot import Resources, translate
from tests.support.configs import provider_yaml


def providers(tmp_path: Path, *auths: tuple[str, str, str]) -> Config:
    """(name, api, auth YAML) each."""
    documents = []
    for name, api, auth in auths:
        text = provider_yaml(name, "https://api.example.com", {f"{name}-model": f"{name}-id"})
        text = text.replace("spec:\n", f"spec:\n  api: {api}\n  auth: {auth}\n")
        if api == "azure-openai":
            text = text.replace("spec:\n", "spec:\n  apiVersion: '2024-10-21'\n")
        documents.append(text)
    path = tmp_path / "providers.yaml"
    path.write_text("---\n".join(documents))
    return load_config([path])


def test_keys_come_from_the_environment_or_a_mounted_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = tmp_path / "secrets"
    (secrets / "anthropic").mkdir(parents=True)
    (secrets / "anthropic" / "apiKey").write_text("sk-ant-from-file\n")
    monkeypatch.setenv("OPENAI_KEY", "sk-from-env")
    config = providers(
        tmp_path,
        ("openai", "openai", "{fromEnv: OPENAI_KEY}"),
        ("claude", "anthropic", "{secretRef: {name: anthropic, key: apiKey}}"),
        ("azure", "azure-openai", "{fromEnv: OPENAI_KEY}"),
        ("mine", "openai", "{passthrough: true}"),
    )
    keys = read_credentials(config, secrets).providers
    assert (keys["openai"].header, keys["openai"].value) == ("Authorization", "Bearer sk-from-env")
    assert (keys["claude"].header, keys["claude"].value) == ("x-api-key", "sk-ant-from-file")
    assert (keys["azure"].header, keys["azure"].value) == ("api-key", "sk-from-env")
    assert "mine" not in keys  # the client's own key passes through; nothing to inject


def test_missing_keys_are_all_named_without_a_value(tmp_path: Path) -> None:
    config = providers(
        tmp_path,
        ("openai", "openai", "{fromEnv: MESHROUTE_TEST_UNSET_VARIABLE}"),
        ("claude", "anthropic", "{secretRef: {name: nope, key: apiKey}}"),
    )
    with pytest.raises(MissingCredentials) as caught:
        read_credentials(config, tmp_path)
    message = str(caught.value)
    assert "LLMProvider/openai: no API key in environment variable MESHROUTE_TEST_UNSET" in message
    assert f"LLMProvider/claude: no API key in {tmp_path}/nope/apiKey" in message


def injector_of(resources: Resources, cluster: str) -> tuple[str, str] | None:
    """(header, secret name) Envoy injects for `cluster`, or None."""
    [built] = [c for c in resources.clusters if c.name == cluster]
    key = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    if key not in built.typed_extension_protocol_options:
        return None
    options = http_protocol_options_pb2.HttpProtocolOptions()
    built.typed_extension_protocol_options[key].Unpack(options)
    injector = credential_injector_pb2.CredentialInjector()
    assert options.http_filters[0].typed_config.Unpack(injector)
    assert options.http_filters[-1].name == "envoy.filters.http.upstream_codec"
    assert injector.overwrite  # a client's header of the same name is replaced
    generic = generic_pb2.Generic()
    injector.credential.typed_config.Unpack(generic)
    assert generic.credential.sds_config.HasField("ads")  # the value comes over SDS
    return generic.header, generic.credential.name


def test_envoy_injects_the_key_from_an_sds_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_KEY", "sk-from-env")
    config = providers(
        tmp_path,
        ("openai", "openai", "{fromEnv: OPENAI_KEY}"),
        ("mine", "openai", "{passthrough: true}"),
    )
    resources = translate(config, credentials=read_credentials(config, tmp_path))
    assert injector_of(resources, "provider_openai") == ("Authorization", "provider_openai_key")
    assert injector_of(resources, "provider_mine") is None
    [secret] = resources.secrets
    assert secret.name == "provider_openai_key"
    assert secret.generic_secret.secret.inline_string == "Bearer sk-from-env"


def test_without_credentials_the_secrets_are_stand_ins(tmp_path: Path) -> None:
    config = providers(tmp_path, ("openai", "openai", "{fromEnv: MESHROUTE_TEST_UNSET_VARIABLE}"))
    resources = translate(config)  # no keys read at all: for showing the config
    [secret] = resources.secrets
    assert secret.generic_secret.secret.inline_string == "REDACTED"
    assert redacted_credentials(config).providers["openai"].value == "REDACTED"
