"""xDS TLS settings: Envoy's bootstrap with TLS to the control plane, the files checked
before anything starts, and the commands' flags (one error line, exit 2, never a
traceback)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import trustme
import yaml
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2

from meshroute.cli import build_parser
from meshroute.control_plane.bootstrap import (
    XDS_CLUSTER,
    BootstrapSettings,
    parse_bootstrap,
    render_bootstrap,
)
from meshroute.envoy_binary import validate_config
from meshroute.xds_tls import (
    TlsFileError,
    XdsClientTls,
    XdsServerTls,
    check_client_tls,
    check_server_tls,
)
from tests.support.certs import XDS_SERVER_NAME, CertFiles, write_cert
from tests.support.configs import QUICKSTART
from tests.support.processes import meshroute_argv

K8S_XDS_HOST = "meshroute-control-plane.meshroute-system.svc.cluster.local"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return write_cert(ca, tmp_path_factory.mktemp("client"), "meshroute-sidecar")


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    """Another certificate (and key) from another CA."""
    return write_cert(trustme.CA(), tmp_path_factory.mktemp("stranger"), "someone-else")


def _client_tls(files: CertFiles, **overrides: str | None) -> XdsClientTls:
    fields: dict[str, str | None] = {
        "server_ca_file": str(files.ca),
        "cert_file": str(files.cert),
        "key_file": str(files.key),
    }
    fields.update(overrides)
    return XdsClientTls(**fields)  # type: ignore[arg-type]


def _xds_tls_context(bootstrap: bootstrap_pb2.Bootstrap) -> tls_pb2.UpstreamTlsContext:
    [cluster] = [c for c in bootstrap.static_resources.clusters if c.name == XDS_CLUSTER]
    assert cluster.transport_socket.name == "envoy.transport_sockets.tls"
    context = tls_pb2.UpstreamTlsContext()
    assert cluster.transport_socket.typed_config.Unpack(context)
    return context


# ----------------------------------------------------------------- Envoy's bootstrap


def test_bootstrap_checks_the_control_planes_name_and_presents_envoys_certificate(
    files: CertFiles,
) -> None:
    settings = BootstrapSettings(xds_address=K8S_XDS_HOST, xds_tls=_client_tls(files))
    context = _xds_tls_context(parse_bootstrap(render_bootstrap(settings)))
    assert context.sni == K8S_XDS_HOST
    common = context.common_tls_context
    assert list(common.alpn_protocols) == ["h2"]
    validation = common.validation_context
    assert validation.trusted_ca.filename == str(files.ca)
    [san] = validation.match_typed_subject_alt_names
    assert san.san_type == common_pb2.SubjectAltNameMatcher.DNS
    assert san.matcher.exact == K8S_XDS_HOST
    [certificate] = common.tls_certificates
    assert certificate.certificate_chain.filename == str(files.cert)
    assert certificate.private_key.filename == str(files.key)


def test_bootstrap_expects_the_given_server_name_or_an_ip_san(files: CertFiles) -> None:
    named = BootstrapSettings(xds_tls=_client_tls(files, server_name=XDS_SERVER_NAME))
    context = _xds_tls_context(parse_bootstrap(render_bootstrap(named)))
    assert context.sni == XDS_SERVER_NAME
    [san] = context.common_tls_context.validation_context.match_typed_subject_alt_names
    assert san.matcher.exact == XDS_SERVER_NAME
    # Dialled and checked as 127.0.0.1: an IP SAN, and no SNI (TLS may not carry an IP).
    by_address = BootstrapSettings(xds_address="127.0.0.1", xds_tls=_client_tls(files))
    context = _xds_tls_context(parse_bootstrap(render_bootstrap(by_address)))
    assert context.sni == ""
    [san] = context.common_tls_context.validation_context.match_typed_subject_alt_names
    assert (san.san_type, san.matcher.exact) == (
        common_pb2.SubjectAltNameMatcher.IP_ADDRESS,
        "127.0.0.1",
    )


def test_bootstrap_without_a_client_certificate_only_checks_the_server(
    files: CertFiles,
) -> None:
    settings = BootstrapSettings(xds_tls=_client_tls(files, cert_file=None, key_file=None))
    context = _xds_tls_context(parse_bootstrap(render_bootstrap(settings)))
    assert not context.common_tls_context.tls_certificates
    assert context.common_tls_context.validation_context.trusted_ca.filename == str(files.ca)


def test_tls_changes_nothing_else_in_the_bootstrap(files: CertFiles) -> None:
    plain = parse_bootstrap(render_bootstrap(BootstrapSettings(ext_proc_workers=3)))
    secure = parse_bootstrap(
        render_bootstrap(BootstrapSettings(ext_proc_workers=3, xds_tls=_client_tls(files)))
    )
    for cluster in secure.static_resources.clusters:
        if cluster.name == XDS_CLUSTER:
            cluster.ClearField("transport_socket")
    assert secure == plain
    assert not [c for c in plain.static_resources.clusters if c.HasField("transport_socket")]


def test_envoy_accepts_the_bootstrap_with_tls(files: CertFiles) -> None:
    """Envoy reads the files when it validates, so this also proves they are usable."""
    validate_config(render_bootstrap(BootstrapSettings(xds_tls=_client_tls(files))))


def test_plaintext_stays_the_default() -> None:
    assert BootstrapSettings().xds_tls is None
    text = render_bootstrap(BootstrapSettings())
    assert "transport_socket" not in text
    assert yaml.safe_load(text)["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"


# --------------------------------------------------------------- the files, checked


def test_good_files_pass(files: CertFiles) -> None:
    check_client_tls(_client_tls(files))
    check_server_tls(XdsServerTls(str(files.cert), str(files.key), str(files.ca)))


def test_a_missing_file_is_named_with_its_flag(files: CertFiles, tmp_path: Path) -> None:
    missing = tmp_path / "nope.crt"
    with pytest.raises(TlsFileError, match=rf"cannot read --xds-tls-cert {missing}: No such"):
        check_server_tls(XdsServerTls(str(missing), str(files.key)))
    with pytest.raises(TlsFileError, match=rf"cannot read --xds-server-ca {missing}"):
        check_client_tls(_client_tls(files, server_ca_file=str(missing)))


def test_a_key_of_another_certificate_is_refused(files: CertFiles, stranger: CertFiles) -> None:
    with pytest.raises(TlsFileError) as refused:
        check_client_tls(_client_tls(files, key_file=str(stranger.key)))
    assert str(refused.value) == (
        f"--xds-client-key {stranger.key} is not the key of the certificate in "
        f"--xds-client-cert {files.cert}"
    )


def test_files_that_are_not_pem_are_refused(files: CertFiles, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(TlsFileError, match="holds no PEM certificate"):
        check_server_tls(XdsServerTls(str(junk), str(files.key)))
    with pytest.raises(TlsFileError, match="holds no PEM private key"):
        check_server_tls(XdsServerTls(str(files.cert), str(junk)))
    with pytest.raises(TlsFileError, match=r"--xds-client-ca .* holds no PEM certificate"):
        check_server_tls(XdsServerTls(str(files.cert), str(files.key), str(junk)))
    # A certificate where the key should be.
    with pytest.raises(TlsFileError, match="holds no PEM private key"):
        check_server_tls(XdsServerTls(str(files.cert), str(files.cert)))


def test_a_client_certificate_needs_its_key() -> None:
    with pytest.raises(TlsFileError, match="--xds-client-cert and --xds-client-key go together"):
        XdsClientTls(server_ca_file="ca.crt", cert_file="tls.crt")


# ------------------------------------------------------------------------- commands


def test_admin_endpoints_default_to_loopback() -> None:
    parser = build_parser()
    control_plane = parser.parse_args(["control-plane"])
    assert control_plane.address == "127.0.0.1"  # xDS, and the health/metrics/status port
    ext_proc = parser.parse_args(["ext-proc"])
    assert (ext_proc.address, ext_proc.metrics_address) == ("127.0.0.1", "127.0.0.1")
    bootstrap = parser.parse_args(["bootstrap"])
    assert bootstrap.admin_address == bootstrap.health_address == "127.0.0.1"
    assert control_plane.xds_tls_cert is None
    assert ext_proc.xds_server_ca is None  # plaintext unless asked


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        meshroute_argv(*args), capture_output=True, text=True, timeout=60, check=False
    )


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ")
    return line


def test_control_plane_refuses_unusable_files_in_one_line(
    files: CertFiles, stranger: CertFiles, tmp_path: Path
) -> None:
    missing = _run(
        "control-plane",
        str(QUICKSTART),
        *("--xds-tls-cert", str(tmp_path / "absent.crt"), "--xds-tls-key", str(files.key)),
    )
    assert "cannot read --xds-tls-cert" in _one_error_line(missing)
    mismatched = _run(
        "control-plane",
        str(QUICKSTART),
        *("--xds-tls-cert", str(files.cert), "--xds-tls-key", str(stranger.key)),
        *("--xds-client-ca", str(files.ca)),
    )
    assert "is not the key of the certificate" in _one_error_line(mismatched)
    alone = _run("control-plane", str(QUICKSTART), "--xds-client-ca", str(files.ca))
    assert _one_error_line(alone) == (
        "error: --xds-client-ca needs --xds-tls-cert and --xds-tls-key"
    )


def test_ext_proc_refuses_unusable_tls_flags_in_one_line(
    files: CertFiles, stranger: CertFiles
) -> None:
    without_ca = _run("ext-proc", "--xds-client-cert", str(files.cert))
    assert "needs --xds-server-ca" in _one_error_line(without_ca)
    mismatched = _run(
        "ext-proc",
        *("--xds-server-ca", str(files.ca), "--xds-client-cert", str(files.cert)),
        *("--xds-client-key", str(stranger.key)),
    )
    assert "is not the key of the certificate" in _one_error_line(mismatched)


def test_bootstrap_command_renders_tls_without_reading_the_files() -> None:
    """The paths are Envoy's (a Secret mounted in its pod), not this machine's."""
    result = _run(
        "bootstrap",
        *("--xds-address", f"{K8S_XDS_HOST}:18000", "--xds-server-ca", "/etc/xds/ca.crt"),
        *("--xds-client-cert", "/etc/xds/tls.crt", "--xds-client-key", "/etc/xds/tls.key"),
    )
    assert result.returncode == 0, result.stderr
    context = _xds_tls_context(parse_bootstrap(result.stdout))
    assert context.sni == K8S_XDS_HOST
    assert context.common_tls_context.tls_certificates[0].private_key.filename == (
        "/etc/xds/tls.key"
    )
    bad_address = _run("bootstrap", "--xds-address", "no-port-here")
    assert "--xds-address wants HOST:PORT" in _one_error_line(bad_address)
