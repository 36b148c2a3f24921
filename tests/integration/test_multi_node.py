"""Several Envoys on one control plane: each has its own stream state, each follows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from meshroute.control_plane.bootstrap import BootstrapSettings, render_bootstrap
from meshroute.control_plane.xds import type_urls
from tests.support.configs import agent_yaml, quickstart_config
from tests.support.processes import ManagedProcess, envoy_argv, free_port
from tests.support.stack import ComponentStack, envoy_live


@pytest.fixture
def stack(tmp_path: Path, demo_agents_port: int) -> Iterator[ComponentStack]:
    config = quickstart_config(tmp_path / "config", free_port(), demo_agents_port)
    components = ComponentStack(config, tmp_path)
    yield components
    components.close()


def second_envoy(stack: ComponentStack, workdir: Path) -> tuple[ManagedProcess, int]:
    """Another Envoy node on the same control plane and sidecar (its listeners share the
    ports through SO_REUSEPORT, as Envoys on one host do)."""
    admin_port = free_port()
    bootstrap = workdir / "envoy-2.yaml"
    bootstrap.write_text(
        render_bootstrap(
            BootstrapSettings(
                node_id="test-envoy-2",
                admin_port=admin_port,
                xds_port=stack.control_plane.port,
                ext_proc_port=stack.ext_proc_port,
                health_port=free_port(),
            )
        )
    )
    envoy = ManagedProcess("envoy-2", envoy_argv(bootstrap))
    envoy.wait_until(lambda: envoy_live(admin_port), "the second Envoy is LIVE")
    return envoy, admin_port


def clusters_of(admin_port: int) -> set[str]:
    text = httpx.get(f"http://127.0.0.1:{admin_port}/clusters?format=json", timeout=10).json()
    return {status["name"] for status in text["cluster_statuses"]}


def test_every_node_gets_and_acks_each_change(
    stack: ComponentStack, tmp_path: Path, demo_agents_port: int
) -> None:
    envoy, admin_port = second_envoy(stack, tmp_path)
    try:
        first = stack.control_plane.type_states("test-envoy")
        second = stack.control_plane.type_states("test-envoy-2")
        assert first[type_urls.CLUSTER].acked_version == "1"
        assert second[type_urls.CLUSTER].acked_version == "1"

        (stack.config_dir / "hotels.yaml").write_text(
            agent_yaml("hotels", "Hotel rooms", f"http://127.0.0.1:{demo_agents_port}")
        )
        version = stack.control_plane.push(stack.translate())

        def both_acked() -> bool:
            return all(
                stack.control_plane.type_states(node)[type_urls.CLUSTER].acked_version == version
                for node in ("test-envoy", "test-envoy-2")
            )

        envoy.wait_until(both_acked, "both nodes ACK the new clusters")
        assert "agent_hotels" in clusters_of(admin_port)
        assert "agent_hotels" in clusters_of(stack.admin_port)
    finally:
        envoy.stop()
