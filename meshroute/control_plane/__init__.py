"""The control plane: YAML config in, Envoy resources and routing tables out, over ADS.

`config` reads and checks what platform teams write; `translate` turns a checked
config into one snapshot of resources; `xds` serves snapshots to Envoy and to the
ext_proc servers. Nothing here runs on a request's path.
"""
