"""`meshroute render`: the resources a config becomes, as YAML a person can read."""

from __future__ import annotations

from meshroute.control_plane.bootstrap import message_to_dict, to_yaml
from meshroute.control_plane.translate.snapshot import Resources


def render_resources(resources: Resources) -> str:
    return to_yaml(
        {
            "listeners": [message_to_dict(item) for item in resources.listeners],
            "routes": [message_to_dict(item) for item in resources.routes],
            "clusters": [message_to_dict(item) for item in resources.clusters],
            "routing_tables": [message_to_dict(item) for item in resources.routing_tables],
        }
    )
