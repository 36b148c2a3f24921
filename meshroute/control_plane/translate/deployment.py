"""Deployment facts the config files do not say, which translation needs."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass

DEFAULT_SECRETS_DIR = "/var/run/secrets/meshroute"

# Where operating systems keep the CA bundle, most common first.
_CA_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine (and our image)
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL
    "/etc/ssl/cert.pem",  # macOS, some BSDs
)


def default_ca_bundle() -> str:
    """The system CA bundle on this machine (Envoy in a pod runs on the same image)."""
    found = ssl.get_default_verify_paths().cafile
    if found and os.path.isfile(found):
        return found
    return next((path for path in _CA_BUNDLES if os.path.isfile(path)), _CA_BUNDLES[0])


@dataclass(frozen=True)
class DeploymentSettings:
    """Deployment facts the config files do not say: where listeners bind, where the
    system's CA bundle is."""

    bind_address: str = "0.0.0.0"
    """Where gateway listeners bind."""
    internal_address: str = "127.0.0.1"
    """Where the internal listener binds; the sidecar must reach it here."""
    internal_port: int = 18002
    ca_bundle: str | None = None
    """The CA bundle https upstreams are checked against unless they name their own
    (None: this system's). A file, because Envoy refuses to check certificate names
    against `system_root_certs`."""

    secrets_dir: str = DEFAULT_SECRETS_DIR
    """Where Kubernetes Secrets named by `auth.secretRef` are mounted, one directory per
    Secret and one file per key."""

    @property
    def system_ca_bundle(self) -> str:
        return self.ca_bundle or default_ca_bundle()

    @property
    def internal_url(self) -> str:
        return f"http://{self.internal_address}:{self.internal_port}"
