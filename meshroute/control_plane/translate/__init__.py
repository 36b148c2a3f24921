"""Config -> Envoy resources and routing tables. Pure functions; no I/O.

One module per resource kind: `clusters`, `listeners` (with `local_reply` for the
JSON error shape), `routes`, and `routing_tables` for the ext_proc servers.
`snapshot` puts them together.
"""
