"""xDS over mutual TLS: `meshroute control-plane --xds-client-ca` serves config only to
clients presenting a certificate from that CA, Envoy (its bootstrap) and the sidecar
(`meshroute ext-proc --xds-server-ca ...`) among them; everyone else gets nothing.

Every wait is for an event (a process says it is ready, a counter moves), never a
fixed time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
import trustme
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from meshroute.api import contract
from meshroute.api.v1alpha1 import routing_table_pb2 as rt
from meshroute.control_plane.bootstrap import BootstrapSettings
from meshroute.xds_tls import XdsClientTls
from tests.support.certs import XDS_SERVER_NAME, CertFiles, write_cert
from tests.support.configs import quickstart_config
from tests.support.metrics import envoy_counter
from tests.support.processes import ManagedProcess, free_port
from tests.support.stack import ControlPlaneProcess, DataPlane, start_envoy


@dataclass(frozen=True)
class Mtls:
    """A control plane requiring client certificates, and the files of its parties."""

    control_plane: ControlPlaneProcess
    server: CertFiles
    client: CertFiles
    stranger: CertFiles
    """A client whose certificate another CA issued."""
    gateway_port: int
    internal_port: int


@pytest.fixture(scope="module")
def mtls(tmp_path_factory: pytest.TempPathFactory, demo_agents_port: int) -> Iterator[Mtls]:
    workdir = tmp_path_factory.mktemp("mtls")
    ca, other_ca = trustme.CA(), trustme.CA()
    server = write_cert(ca, workdir / "server", XDS_SERVER_NAME, "127.0.0.1")
    client = write_cert(ca, workdir / "client", "meshroute-sidecar")
    stranger = write_cert(other_ca, workdir / "stranger", "meshroute-sidecar", trusted=ca)
    gateway_port, internal_port = free_port(), free_port()
    config = quickstart_config(workdir / "config", gateway_port, demo_agents_port)
    control_plane = ControlPlaneProcess(
        config,
        internal_port,
        [
            *("--xds-tls-cert", str(server.cert), "--xds-tls-key", str(server.key)),
            *("--xds-client-ca", str(server.ca)),
        ],
        # gRPC's own log level, where it reports refused handshakes (stated, so the
        # test does not depend on this machine's environment).
        env={"GRPC_VERBOSITY": "INFO"},
    )
    yield Mtls(control_plane, server, client, stranger, gateway_port, internal_port)
    control_plane.stop()


def test_envoy_and_the_sidecar_get_their_config_over_mutual_tls(mtls: Mtls, tmp_path: Path) -> None:
    tls = XdsClientTls(
        server_ca_file=str(mtls.client.ca),
        cert_file=str(mtls.client.cert),
        key_file=str(mtls.client.key),
        server_name=XDS_SERVER_NAME,  # the control plane is dialled as 127.0.0.1
    )
    # Returns once the sidecar has its routing tables and Envoy its listeners.
    data_plane = DataPlane(
        mtls.control_plane.port, tmp_path, [mtls.gateway_port, mtls.internal_port], xds_tls=tls
    )
    try:
        reply = httpx.post(
            f"http://127.0.0.1:{mtls.gateway_port}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "Is UA 901 on time?"}]},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        # The sidecar chose the agent: it has the routing table the control plane served.
        assert reply.headers["x-meshroute-agent"] == "flights"
        kinds = {client["node"]: client["kind"] for client in mtls.control_plane.clients()}
        assert kinds["test-envoy"] == "envoy"
        assert kinds["test-ext-proc"] == "ext-proc"
    finally:
        data_plane.close()


def _ads_first_reply(
    port: int, credentials: grpc.ChannelCredentials | None, server_name: str | None = None
) -> grpc.StatusCode:
    """Subscribe to routing tables as the sidecar does; OK if a table arrives, else the
    status the stream failed with."""
    target = f"127.0.0.1:{port}"
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    channel = (
        grpc.secure_channel(target, credentials, options=options)
        if credentials is not None
        else grpc.insecure_channel(target)
    )
    request = discovery_pb2.DiscoveryRequest(
        node=base_pb2.Node(id="mtls-probe", user_agent_name=contract.EXT_PROC_USER_AGENT),
        type_url=contract.ROUTING_TABLE_TYPE_URL,
    )
    with channel:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        replies = stub.StreamAggregatedResources(iter([request]), timeout=30)
        try:
            reply = next(replies)
        except grpc.RpcError as error:
            return error.code()
        finally:
            replies.cancel()
    table = rt.RoutingTable()
    assert reply.resources[0].Unpack(table)
    return grpc.StatusCode.OK


def _credentials(ca: Path, party: CertFiles | None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=party.key.read_bytes() if party else None,
        certificate_chain=party.cert.read_bytes() if party else None,
    )


def test_only_clients_with_a_certificate_from_the_ca_get_config(mtls: Mtls) -> None:
    port, ca = mtls.control_plane.port, mtls.client.ca
    # The certificate carries 127.0.0.1 too: no name needed when dialling the address.
    assert _ads_first_reply(port, _credentials(ca, mtls.client)) == grpc.StatusCode.OK

    before = len(mtls.control_plane.process.lines)
    assert _ads_first_reply(port, _credentials(ca, None)) == grpc.StatusCode.UNAVAILABLE
    # Refused during the handshake, and the control plane says so (gRPC's own line).
    mtls.control_plane.process.wait_for_line(
        r"Handshake failed .*PEER_DID_NOT_RETURN_A_CERTIFICATE", start=before
    )
    stranger = _credentials(ca, mtls.stranger)
    assert _ads_first_reply(port, stranger) == grpc.StatusCode.UNAVAILABLE
    assert _ads_first_reply(port, None) == grpc.StatusCode.UNAVAILABLE  # plaintext
    # The client refuses a control plane whose certificate lacks the expected name.
    wrong_name = _ads_first_reply(port, _credentials(ca, mtls.client), "elsewhere.example")
    assert wrong_name == grpc.StatusCode.UNAVAILABLE

    assert mtls.control_plane.process.process.poll() is None
    assert "mtls-probe" not in {client["node"] for client in mtls.control_plane.clients()}


@pytest.mark.parametrize("certificate", ["none", "from another CA"])
def test_envoy_without_an_accepted_certificate_gets_nothing_and_keeps_trying(
    mtls: Mtls, tmp_path: Path, certificate: str
) -> None:
    party = mtls.stranger if certificate == "from another CA" else None
    admin_port = free_port()
    node = f"envoy-refused-{certificate.replace(' ', '-')}"
    envoy: ManagedProcess = start_envoy(
        tmp_path / "envoy.yaml",
        BootstrapSettings(
            node_id=node,
            admin_port=admin_port,
            xds_port=mtls.control_plane.port,
            ext_proc_port=free_port(),
            health_port=free_port(),
            xds_tls=XdsClientTls(
                server_ca_file=str(mtls.client.ca),
                cert_file=str(party.cert) if party else None,
                key_file=str(party.key) if party else None,
                server_name=XDS_SERVER_NAME,
            ),
        ),
    )
    admin = f"http://127.0.0.1:{admin_port}"
    try:

        def refused_twice() -> bool:
            try:
                failures = envoy_counter(admin, "cluster.meshroute_xds.upstream_cx_connect_fail")
            except httpx.HTTPError:
                return False  # admin not up yet
            return failures >= 2

        # Refused, and trying again (with backoff) rather than giving up.
        envoy.wait_until(refused_twice, "Envoy's xDS connection failed twice")
        assert envoy_counter(admin, "control_plane.connected_state") == 0
        listeners = httpx.get(f"{admin}/listeners?format=json", timeout=5).json()
        # Only the bootstrap's own readiness listener: no gateway arrived.
        assert [status["name"] for status in listeners["listener_statuses"]] == ["meshroute_health"]
        assert node not in {client["node"] for client in mtls.control_plane.clients()}
    finally:
        envoy.stop()
