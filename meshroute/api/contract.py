"""The names the control plane, Envoy and the ext_proc server agree on.

Like the messages in routing_table.proto, these are wire contract: the control plane
writes them into Envoy's config, the ext_proc server reads and sets them at run
time, and clients see some of them. Change one here and every side follows.
"""

from __future__ import annotations

from typing import Final

# Headers set on the routed request and echoed on the response. Clients cannot
# set them: every listener strips HEADER_PREFIX from incoming requests.
HEADER_PREFIX: Final = "x-meshroute-"
AGENT_HEADER: Final = "x-meshroute-agent"
ROUTE_REASON_HEADER: Final = "x-meshroute-route-reason"
VARIANT_HEADER: Final = "x-meshroute-variant"  # which of an agent's variants served

# gRPC metadata on every ext_proc stream naming the Gateway the request came in on.
GATEWAY_METADATA_KEY: Final = "x-meshroute-gateway"

# Why a request went where it went (the value of ROUTE_REASON_HEADER).
REASON_EMBEDDED: Final = "embedded"  # the embedded router chose
REASON_ORCHESTRATOR: Final = "orchestrator"  # the routing model chose
REASON_PINNED: Final = "pinned"  # the client chose (allowClientPinning)
REASON_DEFAULT: Final = "default"  # nothing fit well enough; the default target
REASON_FALLBACK: Final = "fallback"  # routing failed; the default target anyway

# AGENT_HEADER holds a whole sequence of agents, in the order they ran.
AGENT_SEPARATOR: Final = ","

# The longest the sidecar may hold one request while it runs the earlier agents of
# a sequence: Envoy's max_message_timeout, and the most the sidecar asks for.
MAX_SEQUENCE_SECONDS: Final = 600

# The path clients call on an agent gateway.
CHAT_COMPLETIONS_PATH: Final = "/v1/chat/completions"

ROUTING_TABLE_TYPE_URL: Final = "type.googleapis.com/meshroute.api.v1alpha1.RoutingTable"
