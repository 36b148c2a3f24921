"""How config objects are named inside Envoy.

Prefixes keep kinds apart (an Agent and a Gateway may share a name). Agent and
Gateway names are DNS-1123 labels, which never contain '_', so `agent_` + name
cannot collide with anything else we generate. Envoy's stat tag extraction takes a
cluster name up to the first '.', so names must not contain one.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

# Static clusters written by the bootstrap (envoy/bootstrap.yaml), not by xDS.
XDS_CLUSTER: Final = "meshroute_xds"
EXT_PROC_CLUSTER: Final = "meshroute_ext_proc"

# HTTP filter names in each gateway's filter chain; per-route config refers to them.
STRIP_FILTER: Final = "meshroute.strip_client_headers"
MODEL_NAME_FILTER: Final = "meshroute.model_name"
# Gateway authentication (Gateway `auth`), right after the strip filter.
API_KEY_AUTH_FILTER: Final = "envoy.filters.http.api_key_auth"
JWT_AUTHN_FILTER: Final = "envoy.filters.http.jwt_authn"
EXT_PROC_FILTER: Final = "envoy.filters.http.ext_proc"
# GenAI usage read from responses into metadata (after ext_proc, before the router).
USAGE_JSON_FILTER: Final = "meshroute.usage_json"
USAGE_SSE_FILTER: Final = "meshroute.usage_sse"
ROUTER_FILTER: Final = "envoy.filters.http.router"


# The loopback listener the sidecar's own calls (routing model, sequence steps) go
# through: it has no ext_proc filter, so nothing loops.
INTERNAL_LISTENER: Final = "meshroute_internal"
INTERNAL_ROUTE_CONFIG: Final = "meshroute_internal"


def agent_cluster(agent: str) -> str:
    return f"agent_{agent}"


def variant_cluster(agent: str, variant: str) -> str:
    return f"agent_{agent}_{variant}"


def provider_cluster(provider: str) -> str:
    return f"provider_{provider}"


def provider_key_secret(provider: str) -> str:
    return f"provider_{provider}_key"


def jwks_cluster(gateway: str) -> str:
    """Where a Gateway's `auth.jwt.jwksUri` is fetched from."""
    return f"gateway_{gateway}_jwks"


def gateway_listener(gateway: str) -> str:
    return f"gateway_{gateway}"


def gateway_route_config(gateway: str) -> str:
    return f"gateway_{gateway}"


def collector_cluster(scheme: str, host: str, port: int) -> str:
    """An OpenTelemetry collector's cluster: readable (host and port, with every
    character a cluster name should not hold made '_') and unique (a short hash of the
    whole address, since 'a-b' and 'a.b' read the same, and http and https differ)."""
    readable = re.sub(r"[^a-z0-9]+", "_", host.lower()).strip("_")
    digest = hashlib.sha256(f"{scheme}://{host}:{port}".encode()).hexdigest()[:8]
    return f"meshroute_otel_{readable}_{port}_{digest}"
