"""`meshroute render`: the resources a config becomes, as YAML a person can read.

Rendered from a translation without credentials: secrets carry REDACTED, and no key
is read, so render works where the keys are not.
"""

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
            # Provider keys, as Envoy receives them over SDS: the values are never shown.
            "secrets": [message_to_dict(item) for item in resources.secrets],
        }
    )
