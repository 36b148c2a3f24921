"""Gateway `auth` -> the HTTP filter that checks each caller, and the cluster it needs.

The filter sits right after the strip filter in the Gateway's chain: a request
without a valid credential gets 401 there (in our JSON error shape, local_reply) and
never reaches the routing sidecar, a provider or an agent. The strip filter has
already removed any client-sent x-meshroute-* header by then, so the
contract.CLIENT_HEADER this filter sets is always Envoy's own. The credential itself
is removed before the request goes on: the sidecar and upstreams never see it.

- API keys: Envoy's api_key_auth, with the keys inline (it has no SDS form; they come
  from credentials.read_credentials, or REDACTED stand-ins for `meshroute render`).
  Envoy's /config_dump shows them as [redacted]. When a request carries both headers,
  the Authorization header's key is the one checked.
- JWT: Envoy's jwt_authn with one provider; its keys inline, or fetched from
  `jwksUri` through a cluster of their own, before the listener takes traffic and
  again in the background as they expire.

Clients present either credential the way their SDK sends an API key: OpenAI's as
`Authorization: Bearer <key>`, Anthropic's as `x-api-key: <key>`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Final

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, http_uri_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.api_key_auth.v3 import api_key_auth_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from meshroute.api import contract
from meshroute.control_plane.config.model import Gateway, JwtSpec
from meshroute.control_plane.credentials import ClientKey
from meshroute.control_plane.translate import names
from meshroute.control_plane.translate.clusters import service_cluster
from meshroute.control_plane.translate.protos import duration, pack

# The headers clients' SDKs put their API key in, in the order they are looked at.
AUTHORIZATION_HEADER: Final = "authorization"
API_KEY_HEADER: Final = "x-api-key"
BEARER_PREFIX: Final = "Bearer "

# The one jwt_authn provider of a Gateway.
JWT_PROVIDER: Final = "gateway"
# The verified token's claims, in the jwt_authn filter's dynamic metadata namespace.
JWT_PAYLOAD_METADATA_KEY: Final = "payload"
# The claim that names the caller, sent upstream as contract.CLIENT_HEADER.
JWT_CLIENT_CLAIM: Final = "sub"

JWKS_CONNECT_TIMEOUT: Final = timedelta(seconds=5)
JWKS_FETCH_TIMEOUT: Final = timedelta(seconds=5)


def auth_filter(gateway: Gateway, client_keys: Sequence[ClientKey]) -> hcm_pb2.HttpFilter | None:
    """The Gateway's authentication filter; None when it has no `auth`.

    `client_keys`: the keys its `auth.apiKeys` name (credentials.read_credentials).
    """
    auth = gateway.spec.auth
    if auth is None:
        return None
    if auth.jwt is not None:
        return _jwt_filter(gateway.name, auth.jwt)
    return _api_key_filter(client_keys)


def jwks_clusters(gateways: Iterable[Gateway], ca_bundle: str) -> list[cluster_pb2.Cluster]:
    """One cluster per Gateway that fetches its JWT keys from `jwksUri`."""
    clusters = []
    for gateway in gateways:
        jwt = gateway.spec.auth.jwt if gateway.spec.auth is not None else None
        endpoint = jwt.jwks_endpoint if jwt is not None else None
        if endpoint is not None:
            clusters.append(
                service_cluster(
                    names.jwks_cluster(gateway.name), endpoint, JWKS_CONNECT_TIMEOUT, ca_bundle
                )
            )
    return clusters


def _api_key_filter(client_keys: Sequence[ClientKey]) -> hcm_pb2.HttpFilter:
    """The key from either header (a "Bearer " prefix is dropped), looked up among the
    Gateway's; the client's name goes upstream, the key does not (both headers are
    removed, whichever carried it)."""
    config = api_key_auth_pb2.ApiKeyAuth(
        credentials=[
            api_key_auth_pb2.Credential(key=key.key, client=key.client) for key in client_keys
        ],
        key_sources=[
            api_key_auth_pb2.KeySource(header=AUTHORIZATION_HEADER),
            api_key_auth_pb2.KeySource(header=API_KEY_HEADER),
        ],
        forwarding=api_key_auth_pb2.Forwarding(
            header=contract.CLIENT_HEADER, hide_credentials=True
        ),
    )
    return hcm_pb2.HttpFilter(name=names.API_KEY_AUTH_FILTER, typed_config=pack(config))


def _jwt_filter(gateway: str, spec: JwtSpec) -> hcm_pb2.HttpFilter:
    """Every path of the Gateway requires a token of the one provider."""
    config = jwt_pb2.JwtAuthentication(
        providers={JWT_PROVIDER: _jwt_provider(gateway, spec)},
        rules=[
            jwt_pb2.RequirementRule(
                match=route_components_pb2.RouteMatch(prefix="/"),
                requires=jwt_pb2.JwtRequirement(provider_name=JWT_PROVIDER),
            )
        ],
    )
    return hcm_pb2.HttpFilter(name=names.JWT_AUTHN_FILTER, typed_config=pack(config))


def _jwt_provider(gateway: str, spec: JwtSpec) -> jwt_pb2.JwtProvider:
    provider = jwt_pb2.JwtProvider(
        issuer=spec.issuer,
        audiences=spec.audiences,
        from_headers=[
            jwt_pb2.JwtHeader(name=AUTHORIZATION_HEADER, value_prefix=BEARER_PREFIX),
            jwt_pb2.JwtHeader(name=API_KEY_HEADER),
        ],
        forward=False,  # the token stops here: upstreams get the caller's name only
        claim_to_headers=[
            jwt_pb2.JwtClaimToHeader(
                header_name=contract.CLIENT_HEADER, claim_name=JWT_CLIENT_CLAIM
            )
        ],
        payload_in_metadata=JWT_PAYLOAD_METADATA_KEY,
    )
    if spec.jwks is not None:
        provider.local_jwks.CopyFrom(base_pb2.DataSource(inline_string=spec.jwks))
    else:
        provider.remote_jwks.CopyFrom(_remote_jwks(gateway, spec))
    return provider


def _remote_jwks(gateway: str, spec: JwtSpec) -> jwt_pb2.RemoteJwks:
    """Fetched before the listener takes traffic (so the first requests do not wait,
    or fail, on it), and again in the background each `jwksCacheDuration`."""
    assert spec.jwks_uri is not None
    return jwt_pb2.RemoteJwks(
        http_uri=http_uri_pb2.HttpUri(
            uri=spec.jwks_uri,
            cluster=names.jwks_cluster(gateway),
            timeout=duration(JWKS_FETCH_TIMEOUT),
        ),
        cache_duration=duration(spec.jwks_cache_duration),
        async_fetch=jwt_pb2.JwksAsyncFetch(fast_listener=False),
    )
