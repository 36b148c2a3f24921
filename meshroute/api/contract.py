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
MODEL_HEADER: Final = "x-meshroute-model"  # model gateway: the model name that served
PROVIDER_HEADER: Final = "x-meshroute-provider"  # model gateway: the LLMProvider

# gRPC metadata on every ext_proc stream naming the Gateway the request came in on.
GATEWAY_METADATA_KEY: Final = "x-meshroute-gateway"

# Why a request went where it went (the value of ROUTE_REASON_HEADER).
REASON_EMBEDDED: Final = "embedded"  # the embedded router chose
REASON_ORCHESTRATOR: Final = "orchestrator"  # the routing model chose
REASON_PINNED: Final = "pinned"  # the client chose (allowClientPinning)
REASON_MODEL: Final = "model"  # the client named the model
REASON_ALIAS: Final = "alias"  # the client named an alias of the model
REASON_PREFERENCE: Final = "preference"  # `model: auto`, chosen by routing preference
REASON_DEFAULT: Final = "default"  # nothing fit well enough; the default target
REASON_FALLBACK: Final = "fallback"  # routing failed; the default target anyway

# AGENT_HEADER holds a whole sequence of agents, in the order they ran.
AGENT_SEPARATOR: Final = ","

# The longest the sidecar may hold one request while it runs the earlier agents of
# a sequence: Envoy's max_message_timeout, and the most the sidecar asks for.
MAX_SEQUENCE_SECONDS: Final = 600

# The paths clients call: chat completions (OpenAI's API) on both kinds of gateway;
# messages (Anthropic's API) and the model list on model gateways.
CHAT_COMPLETIONS_PATH: Final = "/v1/chat/completions"
MESSAGES_PATH: Final = "/v1/messages"
MODELS_PATH: Final = "/v1/models"
AUTO_MODEL: Final = "auto"

# Where Envoy's json_to_metadata filter puts the body's `model`, for the routes that
# serve a named model without asking the sidecar.
MODEL_METADATA_NAMESPACE: Final = "meshroute"
MODEL_METADATA_KEY: Final = "model"

ROUTING_TABLE_TYPE_URL: Final = "type.googleapis.com/meshroute.api.v1alpha1.RoutingTable"
