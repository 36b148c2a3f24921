"""Gateway authentication through `meshroute up`: API keys and JWTs checked by Envoy,
with the real OpenAI and Anthropic SDKs, in front of a recording upstream.

Four gateways share one stack: a model gateway taking API keys (one from the
environment, one from a mounted Secret), an agent gateway taking JWTs checked against
an inline JWKS, a model gateway taking JWTs whose JWKS Envoy fetches over HTTPS from
a local server, and an agent gateway without `auth` (as before).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import pytest
import trustme
import yaml
from aiohttp import web

from tests.support.processes import ManagedProcess, free_port, meshroute_argv
from tests.support.stack import UpStack
from tests.support.threaded_server import ThreadedServer
from tests.support.tokens import AUDIENCE, ISSUER, Issuer
from tests.support.upstreams import Upstream, write_ca_pem

TEAM_A_KEY = "gw-key-team-a-5d1c9e"
TEAM_B_KEY = "gw-key-team-b-77a0f3"
KEYS = (TEAM_A_KEY, TEAM_B_KEY)
MODEL = "m1"
CLIENT_HEADER = "x-meshroute-client"
HELLO = [{"role": "user", "content": "hello"}]


@dataclass
class Stack:
    up: UpStack
    upstream: Upstream
    issuer: Issuer
    jwks_fetches: list[str]
    """One entry per JWKS request the JWKS server answered."""

    def url(self, gateway: str, path: str = "/v1/chat/completions") -> str:
        return self.up.url(gateway, path)

    def openai(self, gateway: str, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url(gateway, "/v1"), api_key=key, max_retries=0)

    def anthropic(self, gateway: str, key: str) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.url(gateway, ""), api_key=key, max_retries=0)

    def last_upstream_headers(self) -> dict[str, str]:
        return self.upstream.requests[-1].headers


def _gateway(name: str, port: int, auth: dict[str, Any] | None, **spec: Any) -> dict[str, Any]:
    if auth is not None:
        spec["auth"] = auth
    return {
        "apiVersion": "meshroute.io/v1alpha1",
        "kind": "Gateway",
        "metadata": {"name": name},
        "spec": {"port": port, **spec},
    }


def _config(upstream: Upstream, issuer: Issuer, jwks_url: str, ports: dict[str, int]) -> str:
    jwt = {"issuer": ISSUER, "audiences": [AUDIENCE, "other-audience"]}
    documents: list[dict[str, Any]] = [
        {
            "apiVersion": "meshroute.io/v1alpha1",
            "kind": "Agent",
            "metadata": {"name": "echo"},
            "spec": {
                "description": "Answers everything.",
                "endpoints": [upstream.url],
                "path": "/agents/echo/v1/chat/completions",
            },
        },
        {
            "apiVersion": "meshroute.io/v1alpha1",
            "kind": "LLMProvider",
            "metadata": {"name": "recorder"},
            "spec": {"endpoint": upstream.url, "models": {MODEL: MODEL}},
        },
        _gateway(
            "keys",
            ports["keys"],
            {
                "apiKeys": [
                    {"client": "team-a", "fromEnv": "TEAM_A_GATEWAY_KEY"},
                    {"client": "team-b", "secretRef": {"name": "gw-keys", "key": "team-b"}},
                ]
            },
            type="model",
            defaultModel=MODEL,
        ),
        _gateway(
            "jwt", ports["jwt"], {"jwt": {**jwt, "jwks": issuer.jwks}}, agents=[{"name": "echo"}]
        ),
        _gateway(
            "remote",
            ports["remote"],
            {"jwt": {**jwt, "jwksUri": jwks_url}},
            type="model",
            defaultModel=MODEL,
        ),
        _gateway("open", ports["open"], None, agents=[{"name": "echo"}]),
    ]
    return yaml.safe_dump_all(documents, sort_keys=False)


def _jwks_server(
    issuer: Issuer, fetches: list[str], ssl_context: ssl.SSLContext | None = None
) -> ThreadedServer:
    async def jwks(request: web.Request) -> web.Response:
        fetches.append(request.path)
        return web.Response(text=issuer.jwks, content_type="application/json")

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", jwks)
    return ThreadedServer(app, ssl_context=ssl_context)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("gateway-auth")
    secrets = directory / "secrets"
    (secrets / "gw-keys").mkdir(parents=True)
    (secrets / "gw-keys" / "team-b").write_text(TEAM_B_KEY + "\n")
    issuer = Issuer()
    fetches: list[str] = []
    upstream = Upstream("recorder")
    # The JWKS over HTTPS, as issuers serve it: Envoy checks the certificate for
    # `localhost` (SNI) against a CA made here, given as the deployment's CA bundle.
    ca = trustme.CA()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(tls)
    jwks_server = _jwks_server(issuer, fetches, tls)
    jwks_url = f"https://localhost:{jwks_server.port}/.well-known/jwks.json"
    ports = {name: free_port() for name in ("keys", "jwt", "remote", "open")}
    config = directory / "config.yaml"
    config.write_text(_config(upstream, issuer, jwks_url, ports))
    env = {
        "TEAM_A_GATEWAY_KEY": TEAM_A_KEY,
        "MESHROUTE_SECRETS_DIR": str(secrets),
        "MESHROUTE_CA_BUNDLE": str(write_ca_pem(ca, directory / "ca.pem")),
    }
    try:
        up = UpStack([config], ports, env=env)
    except BaseException:
        upstream.close()
        jwks_server.close()
        raise
    yield Stack(up, upstream, issuer, fetches)
    up.stop()
    upstream.close()
    jwks_server.close()


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = response.json()["error"]
    return error


# ---------------------------------------------------------------------------- API keys


def test_no_key_is_a_401_in_our_error_shape(stack: Stack) -> None:
    before = stack.upstream.chat_requests
    response = httpx.post(stack.url("keys"), json={"model": MODEL, "messages": HELLO}, timeout=30)
    assert response.status_code == 401
    assert error_of(response) == {
        "type": "authentication_error",
        "code": "missing_api_key",
        "message": "missing API key: send it as 'Authorization: Bearer <key>' or "
        "'x-api-key: <key>'",
    }
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert stack.upstream.chat_requests == before  # refused at the edge


@pytest.mark.parametrize("header", ["authorization", "x-api-key"])
def test_a_wrong_key_is_a_401(stack: Stack, header: str) -> None:
    value = "Bearer not-a-key" if header == "authorization" else "not-a-key"
    response = httpx.post(
        stack.url("keys"),
        json={"model": MODEL, "messages": HELLO},
        headers={header: value},
        timeout=30,
    )
    assert response.status_code == 401
    error = error_of(response)
    assert (error["type"], error["code"]) == ("authentication_error", "invalid_api_key")
    assert error["message"] == "invalid API key"


def test_the_openai_sdk_with_a_key_from_the_environment(stack: Stack) -> None:
    client = stack.openai("keys", TEAM_A_KEY)
    completion = client.chat.completions.create(model=MODEL, messages=HELLO)  # type: ignore[arg-type]
    assert completion.choices[0].message.content
    headers = stack.last_upstream_headers()
    assert headers[CLIENT_HEADER] == "team-a"
    assert "authorization" not in headers  # the gateway key stops at the gateway
    assert "x-api-key" not in headers


def test_the_anthropic_sdk_with_a_key_from_a_mounted_secret(stack: Stack) -> None:
    client = stack.anthropic("keys", TEAM_B_KEY)
    message = client.messages.create(model=MODEL, max_tokens=50, messages=HELLO)  # type: ignore[arg-type]
    assert message.content[0].type == "text"
    headers = stack.last_upstream_headers()
    assert headers[CLIENT_HEADER] == "team-b"
    assert "x-api-key" not in headers
    assert "authorization" not in headers


def test_the_sdks_raise_their_authentication_error(stack: Stack) -> None:
    with pytest.raises(openai.AuthenticationError) as refused:
        stack.openai("keys", "sk-wrong").chat.completions.create(model=MODEL, messages=HELLO)  # type: ignore[arg-type]
    assert refused.value.status_code == 401
    with pytest.raises(anthropic.AuthenticationError):
        stack.anthropic("keys", "sk-wrong").messages.create(
            model=MODEL,
            max_tokens=50,
            messages=HELLO,  # type: ignore[arg-type]
        )


def test_a_client_cannot_claim_to_be_another_client(stack: Stack) -> None:
    response = httpx.post(
        stack.url("keys"),
        json={"model": MODEL, "messages": HELLO},
        headers={"authorization": f"Bearer {TEAM_A_KEY}", CLIENT_HEADER: "team-b"},
        timeout=30,
    )
    assert response.status_code == 200
    assert stack.last_upstream_headers()[CLIENT_HEADER] == "team-a"


def test_the_model_list_needs_a_key_too(stack: Stack) -> None:
    refused = httpx.get(stack.url("keys", "/v1/models"), timeout=30)
    assert refused.status_code == 401
    assert error_of(refused)["code"] == "missing_api_key"
    names = [model.id for model in stack.openai("keys", TEAM_B_KEY).models.list()]
    assert MODEL in names


def test_up_says_which_gateways_want_a_credential(stack: Stack) -> None:
    banner = stack.up.process.output
    assert "[auth: API key, 2 clients]" in banner
    assert f"[auth: JWT from {ISSUER}]" in banner


def test_a_gateway_without_auth_still_takes_anyone(stack: Stack) -> None:
    response = httpx.post(
        stack.url("open"), json={"messages": HELLO}, headers={CLIENT_HEADER: "team-a"}, timeout=30
    )
    assert response.status_code == 200
    assert CLIENT_HEADER not in stack.last_upstream_headers()  # stripped, as ever


# ------------------------------------------------------------------------------- JWT


def test_a_good_token_passes_and_names_its_subject(stack: Stack) -> None:
    token = stack.issuer.token("alice")
    client = stack.openai("jwt", token)
    raw = client.chat.completions.with_raw_response.create(model="any", messages=HELLO)  # type: ignore[arg-type]
    assert raw.headers["x-meshroute-agent"] == "echo"
    headers = stack.last_upstream_headers()
    assert headers[CLIENT_HEADER] == "alice"
    assert "authorization" not in headers
    assert token not in json.dumps(headers)


def test_a_forged_client_header_does_not_survive_a_token(stack: Stack) -> None:
    response = httpx.post(
        stack.url("jwt"),
        json={"messages": HELLO},
        headers={
            "authorization": f"Bearer {stack.issuer.token('alice')}",
            CLIENT_HEADER: "admin",
        },
        timeout=30,
    )
    assert response.status_code == 200
    assert stack.last_upstream_headers()[CLIENT_HEADER] == "alice"


def test_a_missing_token_is_a_401(stack: Stack) -> None:
    before = stack.upstream.chat_requests
    response = httpx.post(stack.url("jwt"), json={"messages": HELLO}, timeout=30)
    assert response.status_code == 401
    error = error_of(response)
    assert (error["type"], error["code"]) == ("authentication_error", "missing_token")
    assert "Authorization: Bearer <token>" in error["message"]
    assert stack.upstream.chat_requests == before


def _bad_tokens(issuer: Issuer) -> dict[str, str]:
    stranger = Issuer(kid=issuer.kid)  # same key id, another key
    return {
        "expired": issuer.token("alice", exp=1_000_000_000, iat=999_996_400),
        "wrong audience": issuer.token("alice", aud="someone-else"),
        "wrong issuer": issuer.token("alice", iss="https://evil.test"),
        "unsigned": issuer.unsigned_token("alice"),
        "signed by another key": stranger.token("alice"),
        "not a JWT": "not-a-jwt",
    }


@pytest.mark.parametrize(
    "case",
    ["expired", "wrong audience", "wrong issuer", "unsigned", "signed by another key", "not a JWT"],
)
def test_a_bad_token_is_a_401(stack: Stack, case: str) -> None:
    token = _bad_tokens(stack.issuer)[case]
    before = stack.upstream.chat_requests
    response = httpx.post(
        stack.url("jwt"),
        json={"messages": HELLO},
        headers={"authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 401
    error = error_of(response)
    assert (error["type"], error["code"]) == ("authentication_error", "invalid_token")
    assert error["message"].startswith("invalid token: ")
    assert stack.upstream.chat_requests == before


def test_a_token_from_a_remote_jwks_with_the_anthropic_sdk(stack: Stack) -> None:
    assert stack.jwks_fetches  # fetched before the listener took traffic
    client = stack.anthropic("remote", stack.issuer.token("bob", aud="other-audience"))
    message = client.messages.create(model=MODEL, max_tokens=50, messages=HELLO)  # type: ignore[arg-type]
    assert message.content[0].type == "text"
    headers = stack.last_upstream_headers()
    assert headers[CLIENT_HEADER] == "bob"
    assert "x-api-key" not in headers
    refused = httpx.post(
        stack.url("remote"),
        json={"model": MODEL, "messages": HELLO},
        headers={"x-api-key": stack.issuer.unsigned_token("bob")},
        timeout=30,
    )
    assert refused.status_code == 401


# ---------------------------------------------------------------------- never shown


def test_the_keys_appear_in_no_output_and_no_upstream_request(stack: Stack) -> None:
    start = len(stack.up.process.lines)
    stack.openai("keys", TEAM_A_KEY).chat.completions.create(model=MODEL, messages=HELLO)  # type: ignore[arg-type]
    stack.anthropic("keys", TEAM_B_KEY).messages.create(
        model=MODEL,
        max_tokens=50,
        messages=HELLO,  # type: ignore[arg-type]
    )
    # Both requests' access log lines name the client (and so are in the output now).
    for client in ("team-a", "team-b"):
        stack.up.process.wait_for_line(rf'"client":\s*"{client}"', start=start)
    rendered = ManagedProcess(
        "render",
        meshroute_argv("render", *map(str, stack.up.paths)),
        env={"TEAM_A_GATEWAY_KEY": TEAM_A_KEY},
    )
    rendered.process.wait(timeout=60)
    rendered.stop()
    assert "REDACTED" in rendered.output
    assert "envoy.filters.http.api_key_auth" in rendered.output
    received = json.dumps([request.headers for request in stack.upstream.requests])
    # Envoy holds the keys inline in the listener, yet its admin shows them redacted.
    dump = httpx.get(f"{stack.up.admin}/config_dump", timeout=30).text
    assert "envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth" in dump
    for key in KEYS:
        assert key not in stack.up.process.output  # `up`'s own lines and every child's
        assert key not in rendered.output
        assert key not in received
        assert key not in dump
