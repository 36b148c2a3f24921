"""TLS on the xDS connection: the control plane's side and its clients' side.

Shared by `meshroute control-plane` (serves ADS over TLS, and with a client CA
requires and verifies client certificates: mutual TLS), `meshroute ext-proc` (an
ADS client through gRPC) and `meshroute bootstrap` (Envoy, an ADS client through
its own TLS stack: see `control_plane/bootstrap.py`).

The files are read once, at start: a renewed certificate takes a restart of the
process (Kubernetes: a rollout). Every problem with them is a `TlsFileError` naming
the flag and the file, checked before anything listens or connects, so a bad
mount is one line at startup rather than a stream of failed handshakes later.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_CERTIFICATE_MARKER = b"-----BEGIN CERTIFICATE-----"
_KEY_MARKER = b"PRIVATE KEY-----"
_ENCRYPTED_MARKERS = (b"ENCRYPTED PRIVATE KEY", b"Proc-Type: 4,ENCRYPTED")


class TlsFileError(ValueError):
    """A certificate, key or CA file that cannot serve; the message says which and why."""


@dataclass(frozen=True)
class XdsServerTls:
    """The control plane's xDS TLS: its certificate and key, and (for mutual TLS) the
    CA whose certificates clients must present. No client CA: clients are not
    authenticated, only the server is."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None

    @property
    def requires_client_certificates(self) -> bool:
        return self.client_ca_file is not None


@dataclass(frozen=True)
class XdsClientTls:
    """A client's xDS TLS: the CA that signed the control plane's certificate, the
    name that certificate must carry, and the client's own certificate and key (for a
    control plane that requires them).

    Paths are as the client sees its filesystem (for Envoy in a pod: where the Secret
    is mounted), so building Envoy's bootstrap does not read them.
    """

    server_ca_file: str
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None
    """The name the control plane's certificate must carry (and the TLS SNI); None:
    the host of the xDS address."""

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise TlsFileError(
                "--xds-client-cert and --xds-client-key go together: give both or neither"
            )

    def expected_name(self, xds_host: str) -> str:
        return self.server_name or xds_host


def is_ip_address(name: str) -> bool:
    """True for an IPv4 or IPv6 literal: certificates carry those as IP SANs, and TLS
    SNI may not name them."""
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------ reading the files


@dataclass(frozen=True)
class _Pem:
    """File contents, read and checked, for gRPC (which takes bytes, not paths)."""

    certificate_chain: bytes
    private_key: bytes


def _read(path: str, flag: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise TlsFileError(f"cannot read {flag} {path}: {error.strerror or error}") from None


def _read_certificates(path: str, flag: str) -> bytes:
    data = _read(path, flag)
    if _CERTIFICATE_MARKER not in data:
        raise TlsFileError(f"{flag} {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    return data


def _read_ca(path: str, flag: str) -> bytes:
    """A CA bundle OpenSSL can load (so gRPC and Envoy can)."""
    data = _read_certificates(path, flag)
    try:
        ssl.create_default_context(cadata=data.decode("ascii", "replace"))
    except (ssl.SSLError, ValueError) as error:
        raise TlsFileError(f"{flag} {path} is not a usable CA bundle: {_reason(error)}") from None
    return data


def _read_pair(cert_file: str, key_file: str, cert_flag: str, key_flag: str) -> _Pem:
    """A certificate chain and its key, checked to belong together."""
    chain = _read_certificates(cert_file, cert_flag)
    key = _read(key_file, key_flag)
    if _KEY_MARKER not in key:
        raise TlsFileError(f"{key_flag} {key_file} holds no PEM private key")
    if any(marker in key for marker in _ENCRYPTED_MARKERS):
        raise TlsFileError(
            f"{key_flag} {key_file} is encrypted; gRPC and Envoy need an unencrypted key"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        # A password callback, so OpenSSL never prompts on a terminal.
        context.load_cert_chain(cert_file, key_file, password=lambda: b"")
    except ssl.SSLError as error:
        if "KEY_VALUES_MISMATCH" in str(error):
            raise TlsFileError(
                f"{key_flag} {key_file} is not the key of the certificate in "
                f"{cert_flag} {cert_file}"
            ) from None
        raise TlsFileError(
            f"{cert_flag} {cert_file} with {key_flag} {key_file}: {_reason(error)}"
        ) from None
    except OSError as error:  # the files changed under us
        raise TlsFileError(f"cannot read {cert_file} or {key_file}: {error}") from None
    return _Pem(certificate_chain=chain, private_key=key)


def _reason(error: Exception) -> str:
    """OpenSSL's reason, without the C source location."""
    reason = getattr(error, "reason", None)
    return str(reason or error).split(" (_ssl.c")[0]


# ------------------------------------------------------------------------ for gRPC


def check_server_tls(tls: XdsServerTls) -> None:
    """TlsFileError unless every file is readable and the key is the certificate's."""
    _read_pair(tls.cert_file, tls.key_file, "--xds-tls-cert", "--xds-tls-key")
    if tls.client_ca_file is not None:
        _read_ca(tls.client_ca_file, "--xds-client-ca")


def server_credentials(tls: XdsServerTls) -> Any:
    """gRPC server credentials: TLS, and with a client CA, client certificates
    required and verified against it (a client without one fails its handshake)."""
    import grpc

    pair = _read_pair(tls.cert_file, tls.key_file, "--xds-tls-cert", "--xds-tls-key")
    client_ca = None
    if tls.client_ca_file is not None:
        client_ca = _read_ca(tls.client_ca_file, "--xds-client-ca")
    return grpc.ssl_server_credentials(
        [(pair.private_key, pair.certificate_chain)],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def check_client_tls(tls: XdsClientTls) -> None:
    """TlsFileError unless every file is readable and the key is the certificate's."""
    _client_files(tls)


def _client_files(tls: XdsClientTls) -> tuple[bytes, _Pem | None]:
    ca = _read_ca(tls.server_ca_file, "--xds-server-ca")
    pair = None
    if tls.cert_file is not None and tls.key_file is not None:
        pair = _read_pair(tls.cert_file, tls.key_file, "--xds-client-cert", "--xds-client-key")
    return ca, pair


def channel_credentials(tls: XdsClientTls) -> Any:
    """gRPC channel credentials: the control plane checked against the CA, and this
    client's certificate presented when it has one."""
    import grpc

    ca, pair = _client_files(tls)
    return grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=pair.private_key if pair else None,
        certificate_chain=pair.certificate_chain if pair else None,
    )


def channel_options(tls: XdsClientTls) -> list[tuple[str, str]]:
    """With a server name: check the certificate for it (and send it as SNI) rather
    than for the host the channel dials."""
    if tls.server_name is None:
        return []
    return [("grpc.ssl_target_name_override", tls.server_name)]
