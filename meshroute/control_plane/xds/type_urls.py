"""The xDS resource types we serve, and the order a change is pushed in."""

from __future__ import annotations

from typing import Final

from meshroute.api import contract

CLUSTER: Final = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
LISTENER: Final = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE: Final = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
SECRET: Final = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
ROUTING_TABLE: Final = contract.ROUTING_TABLE_TYPE_URL

# Make before break: a secret must exist before the cluster that uses it, a new
# cluster before a listener or route names it, and a listener before its routes.
# Envoy applies an ADS stream's responses in the order it receives them.
PUSH_ORDER: Final = (SECRET, CLUSTER, LISTENER, ROUTE, ROUTING_TABLE)

# Types whose empty subscription means "everything" (the rest are asked for by name).
WILDCARD_TYPES: Final = frozenset({CLUSTER, LISTENER, ROUTING_TABLE})

# Types a State-of-the-World response may carry only some of: the client keeps the
# resources a response leaves out (the xDS protocol's rule for all but listeners and
# clusters, and Envoy's: it updates only the RDS watches a response names). With
# thousands of routes, sending only the route configs that changed is most of the
# saving on a push to many Envoys.
PARTIAL_UPDATE_TYPES: Final = frozenset({ROUTE})

SHORT_NAMES: Final = {
    CLUSTER: "clusters",
    LISTENER: "listeners",
    ROUTE: "routes",
    SECRET: "secrets",
    ROUTING_TABLE: "routing_tables",
}


def short_name(type_url: str) -> str:
    return SHORT_NAMES.get(type_url, type_url.rsplit("/", 1)[-1])
