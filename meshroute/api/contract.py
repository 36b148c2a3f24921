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
# The authenticated caller (Gateway `auth`): the API key's client name, or the JWT's
# `sub`. Sent upstream, never echoed; set by Envoy after the strip, so never forged.
CLIENT_HEADER: Final = "x-meshroute-client"

# The user agent the ext_proc server names in its xDS Node, so the control plane can
# tell sidecars from Envoys (which say "envoy").
EXT_PROC_USER_AGENT: Final = "meshroute-ext-proc"

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

# Envoy's access logs, which the sidecar also receives (gRPC AccessLogService on its
# own server) and turns into metrics. Every entry carries these request headers, the
# routing decision: the sidecar sets them before the route is chosen.
ACCESS_LOG_HEADERS: Final = (AGENT_HEADER, ROUTE_REASON_HEADER, MODEL_HEADER, PROVIDER_HEADER)
# An entry's `common_properties` say where it came from through `log_name`: the
# Gateway's name, or this for the internal listener (the sidecar's own calls).
INTERNAL_LOG_NAME: Final = "_internal"  # no Gateway can be named so (names are DNS labels)

# GenAI usage Envoy itself reads from chat responses (JSON bodies and SSE streams,
# OpenAI and Anthropic shapes), as dynamic metadata in this namespace: in every access
# log entry (`common_properties.metadata.filter_metadata`) and on Envoy's spans.
# Only the keys a response carried are present.
USAGE_METADATA_NAMESPACE: Final = "meshroute.usage"
USAGE_INPUT_TOKENS: Final = "input_tokens"  # number: prompt tokens
USAGE_OUTPUT_TOKENS: Final = "output_tokens"  # number: completion tokens
USAGE_RESPONSE_MODEL: Final = "response_model"  # string: the model id the upstream named
USAGE_FINISH_REASON: Final = "finish_reason"  # string: Anthropic's stop_reason only

ROUTING_TABLE_TYPE_URL: Final = "type.googleapis.com/meshroute.api.v1alpha1.RoutingTable"
