"""The routing sidecar: Envoy's ext_proc server.

For every chat request Envoy streams the headers and the buffered body here; the
server parses the body (`chat_request`), decides a target (`embedded_router`, per
Gateway `routing`), and answers with headers that make Envoy re-route. Its only
input besides requests is the routing table the control plane serves over ADS
(`table_client`). Nothing here imports the control plane: the contract is
`meshroute.api`.
"""
