"""meshroute: route requests across AI agents and LLMs.

Envoy carries every byte; `meshroute.ext_proc` decides where each request goes;
`meshroute.control_plane` turns YAML into the Envoy config and routing tables that
make that happen. See README.md for the tour and DESIGN.md for the contract.
"""

__version__ = "0.1.0"
