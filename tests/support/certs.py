"""Throwaway certificates for xDS TLS tests, written to files as a Secret mount would hold
them: `tls.crt`, `tls.key`, `ca.crt` in one directory per party."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme

XDS_SERVER_NAME = "xds.meshroute.test"
"""The DNS name on the control plane's test certificate (it also carries 127.0.0.1)."""


@dataclass(frozen=True)
class CertFiles:
    """One party's files: its certificate chain and key, and the CA it trusts."""

    cert: Path
    key: Path
    ca: Path


def write_cert(
    ca: trustme.CA, directory: Path, *names: str, trusted: trustme.CA | None = None
) -> CertFiles:
    """A certificate for `names` issued by `ca`, in `directory`; `ca.crt` is the CA of
    `trusted` (default: `ca`), the one this party checks its peer against."""
    directory.mkdir(parents=True, exist_ok=True)
    issued = ca.issue_cert(*names)
    files = CertFiles(
        cert=directory / "tls.crt", key=directory / "tls.key", ca=directory / "ca.crt"
    )
    files.cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(files.key))
    (trusted or ca).cert_pem.write_to_path(str(files.ca))
    return files
