"""Gateway `auth`: what the config accepts, where client keys come from, and the Envoy
filters and cluster it becomes (the same requests against a real Envoy are in
tests/integration/test_gateway_auth.py)."""

from __future__ import annotations

import base64
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.http.api_key_auth.v3 import api_key_auth_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from meshroute.control_plane.config import ConfigErrors, load_config
from meshroute.control_plane.config.model import Config
from meshroute.control_plane.credentials import (
    ClientKey,
    MissingCredentials,
    read_credentials,
)
from meshroute.control_plane.envoy_gate import envoy_refusal
from meshroute.control_plane.k8s.acceptance import Candidate, config_document, decide
from meshroute.control_plane.k8s.feed import ApiSecrets, _fingerprint
from meshroute.control_plane.render import render_resources
from meshroute.control_plane.translate.snapshot import Resources, translate
from tests.support.tokens import Issuer

AGENT = """\
apiVersion: meshroute.io/v1alpha1
kind: Agent
metadata: {name: echo}
spec:
  description: Answers everything.
  endpoints: ["http://127.0.0.1:9100"]
"""
KEY_AUTH = """\
apiKeys:
  - {client: team-a, fromEnv: MESHROUTE_TEST_TEAM_A_KEY}
  - {client: team-b, secretRef: {name: gw-keys, key: team-b}}
"""
JWT_REMOTE = """\
jwt:
  issuer: https://issuer.example
  audiences: [meshroute]
  jwksUri: https://issuer.example/.well-known/jwks.json
  jwksCacheDuration: 10m
"""


def gateway(name: str, port: int, auth: str | None, *, model: bool = False) -> str:
    kind = "type: model\n  defaultModel: m1\n" if model else "agents: [{name: echo}]\n"
    text = (
        "apiVersion: meshroute.io/v1alpha1\nkind: Gateway\n"
        f"metadata: {{name: {name}}}\nspec:\n  port: {port}\n  {kind}"
    )
    if auth is not None:
        text += "  auth:\n" + textwrap.indent(auth, "    ")
    return text


PROVIDER = """\
apiVersion: meshroute.io/v1alpha1
kind: LLMProvider
metadata: {name: local}
spec:
  endpoint: http://127.0.0.1:9200
  models: {m1: m1}
"""


def load(tmp_path: Path, *documents: str) -> Config:
    path = tmp_path / "config.yaml"
    path.write_text("---\n".join([AGENT, PROVIDER, *documents]))
    return load_config([path])


def errors_of(tmp_path: Path, auth: str) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        load(tmp_path, gateway("travel", 8001, auth))
    return [str(error) for error in caught.value.errors]


@pytest.fixture
def secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """team-a's key in the environment, team-b's in a mounted Secret."""
    monkeypatch.setenv("MESHROUTE_TEST_TEAM_A_KEY", "key-a-from-env")
    directory = tmp_path / "secrets"
    (directory / "gw-keys").mkdir(parents=True)
    (directory / "gw-keys" / "team-b").write_text("key-b-from-file\n")
    return directory


def filters_of(listener: listener_pb2.Listener) -> list[hcm_pb2.HttpFilter]:
    manager = hcm_pb2.HttpConnectionManager()
    assert listener.filter_chains[0].filters[0].typed_config.Unpack(manager)
    return list(manager.http_filters)


def listener(resources: Resources, name: str) -> listener_pb2.Listener:
    return next(item for item in resources.listeners if item.name == name)


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ("{}", "give exactly one of `apiKeys`, `jwt`"),
        (
            KEY_AUTH + "jwt: {issuer: x, audiences: [y], jwks: '{\"keys\": [{}]}'}\n",
            "give exactly one of `apiKeys`, `jwt`",
        ),
        ("apiKeys: []\n", "at least 1 item"),
        (
            "apiKeys: [{client: a, fromEnv: A}, {client: a, fromEnv: B}]\n",
            "client names in `apiKeys` must be unique",
        ),
        ("apiKeys: [{client: a}]\n", "give exactly one of `fromEnv`, `secretRef`"),
        (
            "apiKeys: [{client: a, fromEnv: A, secretRef: {name: s, key: k}}]\n",
            "give exactly one of `fromEnv`, `secretRef`",
        ),
        ("apiKeys: [{client: Team A, fromEnv: A}]\n", "client"),
        ("jwt: {issuer: x, audiences: [y]}\n", "give exactly one of `jwks`, `jwksUri`"),
        (
            "jwt: {issuer: x, audiences: [y], jwks: '{\"keys\": [{}]}', jwksUri: 'https://x/k'}\n",
            "give exactly one of `jwks`, `jwksUri`",
        ),
        ("jwt: {issuer: x, audiences: [y], jwks: 'not json'}\n", "`jwks` is a JSON document"),
        ("jwt: {issuer: x, audiences: [y], jwks: '{\"keys\": []}'}\n", "non-empty `keys`"),
        ("jwt: {issuer: x, audiences: [], jwksUri: 'https://x/k'}\n", "at least 1 item"),
        ("jwt: {issuer: x, jwksUri: 'https://x/k'}\n", "audiences"),
        ("jwt: {issuer: x, audiences: [y], jwksUri: 'ftp://x/k'}\n", "http:// or https://"),
    ],
)
def test_wrong_auth_is_refused_naming_the_gateway_and_field(
    tmp_path: Path, auth: str, message: str
) -> None:
    [error] = errors_of(tmp_path, auth)
    assert "Gateway/travel" in error
    assert "spec.auth" in error
    assert message in error


def test_api_keys_or_a_jwt_load(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        gateway("keys", 8001, KEY_AUTH),
        gateway("tokens", 8002, JWT_REMOTE, model=True),
        gateway("open", 8003, None),
    )
    keys = config.gateways["keys"].spec.auth
    assert keys is not None
    assert keys.api_keys is not None
    assert [key.client for key in keys.api_keys] == ["team-a", "team-b"]
    tokens = config.gateways["tokens"].spec.auth
    assert tokens is not None
    assert tokens.jwt is not None
    assert str(tokens.jwt.jwks_endpoint) == "https://issuer.example:443/.well-known/jwks.json"
    assert config.gateways["open"].spec.auth is None


# ------------------------------------------------------------------------- the keys


def test_client_keys_come_from_the_environment_or_a_mounted_secret(
    tmp_path: Path, secrets: Path
) -> None:
    config = load(tmp_path, gateway("keys", 8001, KEY_AUTH), gateway("open", 8002, None))
    credentials = read_credentials(config, secrets)
    assert credentials.client_keys == {
        "keys": (ClientKey("team-a", "key-a-from-env"), ClientKey("team-b", "key-b-from-file"))
    }


def test_missing_keys_name_the_gateway_the_client_and_where(tmp_path: Path) -> None:
    config = load(tmp_path, gateway("keys", 8001, KEY_AUTH))
    with pytest.raises(MissingCredentials) as caught:
        read_credentials(config, tmp_path)
    assert caught.value.by_object == {
        "Gateway/keys": "client team-a: no API key in environment variable "
        f"MESHROUTE_TEST_TEAM_A_KEY; client team-b: no API key in {tmp_path}/gw-keys/team-b"
    }


def test_one_key_for_two_clients_is_refused_without_showing_it(
    tmp_path: Path, secrets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Envoy would refuse it too, but its message prints the key.
    monkeypatch.setenv("MESHROUTE_TEST_TEAM_A_KEY", "key-b-from-file")
    config = load(tmp_path, gateway("keys", 8001, KEY_AUTH))
    with pytest.raises(MissingCredentials) as caught:
        read_credentials(config, secrets)
    assert str(caught.value) == "Gateway/keys: clients team-a and team-b have the same API key"


def test_a_gateway_without_its_key_secret_is_refused_in_a_cluster() -> None:
    def candidate(kind: str, document: str) -> Candidate:
        raw = yaml.safe_load(document)
        raw["metadata"]["namespace"] = "team-a"
        return Candidate(f"{kind}/{raw['metadata']['name']}", 1, config_document(raw))

    auth = "apiKeys: [{client: team-b, secretRef: {name: gw-keys, key: team-b}}]\n"
    candidates = {
        c.ref: c
        for c in (candidate("Agent", AGENT), candidate("Gateway", gateway("keys", 8001, auth)))
    }
    missing = decide(candidates, {}, ApiSecrets("team-a", {}))
    verdict = missing.verdicts["Gateway/keys"]
    assert not verdict.accepted
    assert verdict.reason == "MissingCredentials"
    assert "client team-b: no API key in key 'team-b' of Secret team-a/gw-keys" in verdict.message

    secret = {"gw-keys": {"data": {"team-b": base64.b64encode(b"sk-b").decode()}}}
    present = decide(candidates, {}, ApiSecrets("team-a", secret))
    assert present.verdicts["Gateway/keys"].accepted
    assert present.credentials.client_keys["keys"] == (ClientKey("team-b", "sk-b"),)
    # A change to that Secret is a change to the config: the control plane rebuilds.
    rotated = {"gw-keys": {"data": {"team-b": base64.b64encode(b"sk-b2").decode()}}}
    assert _fingerprint(candidates, ApiSecrets("team-a", secret)) != _fingerprint(
        candidates, ApiSecrets("team-a", rotated)
    )


# ---------------------------------------------------------------------- translation


@pytest.mark.parametrize("model", [False, True])
def test_auth_runs_after_the_strip_and_before_everything_else(
    tmp_path: Path, secrets: Path, model: bool
) -> None:
    config = load(tmp_path, gateway("keys", 8001, KEY_AUTH, model=model))
    resources = translate(config, credentials=read_credentials(config, secrets))
    names = [item.name for item in filters_of(listener(resources, "gateway_keys"))]
    assert names[:3] == [
        "meshroute.strip_client_headers",
        "envoy.filters.http.api_key_auth",
        "meshroute.model_name" if model else "envoy.filters.http.ext_proc",
    ]
    internal = [item.name for item in filters_of(listener(resources, "meshroute_internal"))]
    assert not any("auth" in name for name in internal)  # the sidecar's own calls


def test_a_gateway_without_auth_has_no_auth_filter(tmp_path: Path) -> None:
    resources = translate(load(tmp_path, gateway("open", 8001, None)))
    names = [item.name for item in filters_of(listener(resources, "gateway_open"))]
    assert not any("auth" in name for name in names)


def test_api_keys_from_both_headers_hidden_and_the_client_forwarded(
    tmp_path: Path, secrets: Path
) -> None:
    config = load(tmp_path, gateway("keys", 8001, KEY_AUTH))
    resources = translate(config, credentials=read_credentials(config, secrets))
    built = api_key_auth_pb2.ApiKeyAuth()
    assert filters_of(listener(resources, "gateway_keys"))[1].typed_config.Unpack(built)
    assert [(c.client, c.key) for c in built.credentials] == [
        ("team-a", "key-a-from-env"),
        ("team-b", "key-b-from-file"),
    ]
    assert [source.header for source in built.key_sources] == ["authorization", "x-api-key"]
    assert built.forwarding.header == "x-meshroute-client"
    assert built.forwarding.hide_credentials


def jwt_config(resources: Resources, listener_name: str) -> jwt_pb2.JwtAuthentication:
    built = jwt_pb2.JwtAuthentication()
    assert filters_of(listener(resources, listener_name))[1].typed_config.Unpack(built)
    return built


def test_a_jwt_with_inline_keys(tmp_path: Path) -> None:
    jwks = Issuer().jwks
    auth = f"jwt: {{issuer: https://issuer.test, audiences: [a, b], jwks: '{jwks}'}}\n"
    resources = translate(load(tmp_path, gateway("tokens", 8001, auth)))
    built = jwt_config(resources, "gateway_tokens")
    provider = built.providers["gateway"]
    assert provider.issuer == "https://issuer.test"
    assert list(provider.audiences) == ["a", "b"]
    assert provider.local_jwks.inline_string == jwks
    assert [(h.name, h.value_prefix) for h in provider.from_headers] == [
        ("authorization", "Bearer "),
        ("x-api-key", ""),
    ]
    assert not provider.forward  # the token goes no further
    [claim] = provider.claim_to_headers
    assert (claim.claim_name, claim.header_name) == ("sub", "x-meshroute-client")
    assert provider.payload_in_metadata == "payload"
    [rule] = built.rules
    assert rule.match.prefix == "/"
    assert rule.requires.provider_name == "gateway"
    assert not any(cluster.name.endswith("_jwks") for cluster in resources.clusters)


def test_remote_keys_come_through_a_tls_cluster_of_their_own(tmp_path: Path) -> None:
    resources = translate(load(tmp_path, gateway("tokens", 8001, JWT_REMOTE, model=True)))
    remote = jwt_config(resources, "gateway_tokens").providers["gateway"].remote_jwks
    assert remote.http_uri.uri == "https://issuer.example/.well-known/jwks.json"
    assert remote.http_uri.cluster == "gateway_tokens_jwks"
    assert remote.cache_duration.seconds == 600
    assert remote.HasField("async_fetch")  # fetched before the listener takes traffic
    [cluster] = [c for c in resources.clusters if c.name == "gateway_tokens_jwks"]
    address = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address
    assert (address.socket_address.address, address.socket_address.port_value) == (
        "issuer.example",
        443,
    )
    tls = tls_pb2.UpstreamTlsContext()
    assert cluster.transport_socket.typed_config.Unpack(tls)
    assert tls.sni == "issuer.example"
    assert tls.common_tls_context.validation_context.trusted_ca.filename


def test_a_plain_http_jwks_cluster_has_no_tls(tmp_path: Path) -> None:
    auth = "jwt: {issuer: x, audiences: [y], jwksUri: 'http://127.0.0.1:8080/keys'}\n"
    resources = translate(load(tmp_path, gateway("tokens", 8001, auth)))
    [cluster] = [c for c in resources.clusters if c.name == "gateway_tokens_jwks"]
    assert not cluster.HasField("transport_socket")


def test_envoy_accepts_every_kind_of_auth(tmp_path: Path, secrets: Path) -> None:
    inline = f"jwt: {{issuer: x, audiences: [y], jwks: '{Issuer().jwks}'}}\n"
    config = load(
        tmp_path,
        gateway("keys", 8001, KEY_AUTH, model=True),
        gateway("remote", 8002, JWT_REMOTE),
        gateway("inline", 8003, inline),
    )
    assert envoy_refusal(translate(config, credentials=read_credentials(config, secrets))) is None
    assert envoy_refusal(translate(config)) is None  # the stand-ins, too


def test_render_shows_stand_ins_and_never_reads_a_key(tmp_path: Path, secrets: Path) -> None:
    config = load(tmp_path, gateway("keys", 8001, KEY_AUTH))
    rendered = render_resources(translate(config))  # as `meshroute render` does
    assert "key: REDACTED-team-a" in rendered
    assert "key: REDACTED-team-b" in rendered
    assert "key-a-from-env" not in rendered
    assert "key-b-from-file" not in rendered


def test_refusals_become_401_json_with_a_code(tmp_path: Path) -> None:
    resources = translate(load(tmp_path, gateway("open", 8001, None)))
    manager = hcm_pb2.HttpConnectionManager()
    assert (
        listener(resources, "gateway_open").filter_chains[0].filters[0].typed_config.Unpack(manager)
    )
    codes: dict[str, Any] = {}
    for mapper in manager.local_reply_config.mappers:
        error = mapper.body_format_override.json_format.fields.get("error")
        if error is not None and mapper.status_code.value == 401:
            codes[error.struct_value.fields["code"].string_value] = mapper
    assert set(codes) == {"missing_api_key", "invalid_api_key", "missing_token", "invalid_token"}
