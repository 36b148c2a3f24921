"""`meshroute validate`, `render` and `route`, run as a user runs them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TypeVar

import yaml
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf import json_format, message

from meshroute.control_plane.bootstrap import (
    BootstrapSettings,
    message_to_dict,
    render_bootstrap,
    static_bootstrap,
    to_yaml,
)
from meshroute.control_plane.translate.snapshot import Resources
from meshroute.envoy_binary import validate_config
from tests.support.configs import QUICKSTART, agent_yaml, documents, gateway_yaml
from tests.support.orchestrator import StandInOrchestrator
from tests.support.processes import meshroute_argv


def meshroute(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        meshroute_argv(*args), capture_output=True, text=True, timeout=120, check=False
    )


def test_validate_accepts_the_quickstart() -> None:
    result = meshroute("validate", str(QUICKSTART))
    assert result.returncode == 0, result.stderr
    assert "config OK: 3 agent(s), 2 LLM provider(s), 2 gateway(s)" in result.stdout


def test_validate_names_file_object_and_field_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "travel.yaml"
    path.write_text(
        documents(
            agent_yaml("weather", "Forecasts", "http://127.0.0.1:9100"),
            gateway_yaml("travel", 8001, ["weather", "hotels"], "weather"),
        )
    )
    result = meshroute("validate", str(path))
    assert result.returncode == 1
    line = next(line for line in result.stderr.splitlines() if "hotels" in line)
    assert line.startswith(f"error: {path}:")
    assert ": Gateway/travel: spec.agents[1].name: no Agent named 'hotels'" in line
    assert "1 error in config" in result.stderr
    assert "Traceback" not in result.stderr


def test_render_prints_resources_envoy_accepts(tmp_path: Path) -> None:
    result = meshroute("render", str(QUICKSTART))
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)
    assert [listener["name"] for listener in rendered["listeners"]] == [
        "gateway_llm",
        "gateway_travel",
        "meshroute_internal",
    ]
    assert [route["name"] for route in rendered["routes"]] == [
        "gateway_llm",
        "gateway_travel",
        "meshroute_internal",
    ]
    assert sorted(cluster["name"] for cluster in rendered["clusters"]) == [
        "agent_currency",
        "agent_flights",
        "agent_weather",
        "provider_demo-anthropic",
        "provider_demo-openai",
    ]
    # Envoy itself checks what was printed: parsed back into the Envoy API's messages,
    # it is served as one static config (as the control plane's own last gate does).
    resources = Resources(
        listeners=[parse(item, listener_pb2.Listener()) for item in rendered["listeners"]],
        routes=[parse(item, route_pb2.RouteConfiguration()) for item in rendered["routes"]],
        clusters=[parse(item, cluster_pb2.Cluster()) for item in rendered["clusters"]],
        secrets=[parse(item, secret_pb2.Secret()) for item in rendered["secrets"]],
    )
    validate_config(to_yaml(message_to_dict(static_bootstrap(resources, BootstrapSettings()))))


def test_render_never_shows_a_key(tmp_path: Path) -> None:
    result = subprocess.run(
        meshroute_argv("render", str(QUICKSTART)),
        capture_output=True,
        text=True,
        env={**os.environ, "DEMO_OPENAI_API_KEY": "sk-do-not-print-me"},
        check=True,
    )
    assert "sk-do-not-print-me" not in result.stdout
    secrets = yaml.safe_load(result.stdout)["secrets"]
    assert [s["generic_secret"]["secret"]["inline_string"] for s in secrets] == ["REDACTED"] * 2


M = TypeVar("M", bound=message.Message)


def parse(data: dict[str, object], into: M) -> M:
    return json_format.ParseDict(data, into)


def test_render_of_a_bad_config_exits_1() -> None:
    result = meshroute("render", "/nonexistent/path.yaml")
    assert result.returncode == 1
    assert "no such file or directory" in result.stderr


def test_route_prints_the_decision_and_why() -> None:
    result = meshroute(
        "route", str(QUICKSTART), "--gateway", "travel", "--message", "Is UA 901 on time?"
    )
    assert result.returncode == 0, result.stderr
    fields = dict(line.split(":", 1) for line in result.stdout.splitlines())
    assert fields["gateway"].strip() == "travel"
    assert fields["agent"].strip() == "flights"
    assert fields["reason"].strip() == "embedded"
    assert "similarity" in fields["why"]


def test_route_falls_back_to_the_default_and_says_so() -> None:
    result = meshroute("route", str(QUICKSTART), "--gateway", "travel", "--message", "hello")
    fields = dict(line.split(":", 1) for line in result.stdout.splitlines())
    assert (fields["agent"].strip(), fields["reason"].strip()) == ("weather", "default")
    assert "minScore" in fields["why"]


def test_route_without_a_gateway_decides_on_each_of_them() -> None:
    result = meshroute("route", str(QUICKSTART), "--message", "Is UA 901 on time?")
    assert result.returncode == 0, result.stderr
    decisions = [
        dict(line.split(":", 1) for line in block.splitlines())
        for block in result.stdout.strip().split("\n\n")
    ]
    assert [d["gateway"].strip() for d in decisions] == ["llm", "travel"]
    assert decisions[0]["model"].strip().startswith("gpt-demo-mini")  # no preference fits
    assert decisions[1]["agent"].strip() == "flights"
    assert decisions[1]["reason"].strip() == "embedded"


def test_route_needs_a_known_gateway() -> None:
    result = meshroute("route", str(QUICKSTART), "--message", "x", "--gateway", "nope")
    assert result.returncode == 1
    assert "no Gateway named 'nope' (known: llm, travel)" in result.stderr


def test_the_bootstrap_template_is_valid_envoy_config() -> None:
    validate_config(render_bootstrap(BootstrapSettings(admin_port=1, xds_port=2, ext_proc_port=3)))


def test_flags_have_environment_twins() -> None:
    environment = {**os.environ, "MESHROUTE_GATEWAY_ADDRESS": "127.0.0.9"}
    rendered = subprocess.run(
        meshroute_argv("render", str(QUICKSTART)),
        capture_output=True,
        text=True,
        env=environment,
        check=True,
    )
    listeners = {item["name"]: item for item in yaml.safe_load(rendered.stdout)["listeners"]}
    listener = listeners["gateway_travel"]
    assert listener["address"]["socket_address"]["address"] == "127.0.0.9"
    helped = subprocess.run(
        meshroute_argv("render", "--help"),
        capture_output=True,
        text=True,
        env=environment,
        check=True,
    )
    assert "MESHROUTE_GATEWAY_ADDRESS; now 127.0.0.9" in " ".join(helped.stdout.split())


def orchestrated_config(tmp_path: Path, model_port: int) -> Path:
    router = "  router: {type: orchestrator, provider: router, model: plano}"
    gateway = (QUICKSTART / "gateway.yaml").read_text()
    text = gateway.replace("    - {name: currency}", "    - {name: currency}\n" + router)
    (tmp_path / "gateway.yaml").write_text(text)
    (tmp_path / "agents.yaml").write_text((QUICKSTART / "agents.yaml").read_text())
    (tmp_path / "router.yaml").write_text(
        "apiVersion: meshroute.io/v1alpha1\nkind: LLMProvider\nmetadata: {name: router}\n"
        f"spec: {{endpoint: 'http://127.0.0.1:{model_port}', models: {{plano: stand-in}}}}\n"
    )
    return tmp_path


def test_route_asks_the_routing_model_when_there_is_one(tmp_path: Path) -> None:
    model = StandInOrchestrator().start()
    try:
        config = orchestrated_config(tmp_path, model.port)
        result = meshroute("route", str(config), "--message", "ask flights about UA 901")
    finally:
        model.close()
    assert result.returncode == 0, result.stderr
    fields = dict(line.split(":", 1) for line in result.stdout.splitlines())
    assert (fields["agent"].strip(), fields["reason"].strip()) == ("flights", "orchestrator")
    assert "routing model plano" in fields["why"]
    assert model.prompts[0].conversation == [
        {"role": "user", "content": "ask flights about UA 901"}
    ]


def test_route_says_why_it_fell_back_when_the_model_is_down(tmp_path: Path) -> None:
    model = StandInOrchestrator().start()
    port = model.port
    model.close()
    result = meshroute("route", str(orchestrated_config(tmp_path, port)), "--message", "flights?")
    fields = dict(line.split(":", 1) for line in result.stdout.splitlines())
    assert (fields["agent"].strip(), fields["reason"].strip()) == ("weather", "fallback")
    assert "(unreachable:" in fields["why"]


def test_crds_prints_the_committed_crds() -> None:
    result = meshroute("crds")
    assert result.returncode == 0, result.stderr
    committed = (
        Path(__file__).resolve().parents[2] / "deploy" / "crds" / "meshroute.io_v1alpha1.yaml"
    )
    assert result.stdout == committed.read_text()
    kinds = [doc["spec"]["names"]["kind"] for doc in yaml.safe_load_all(result.stdout) if doc]
    assert kinds == ["Agent", "LLMProvider", "Gateway"]


def test_control_plane_says_which_source_needs_what(tmp_path: Path) -> None:
    no_paths = meshroute("control-plane", "--health-port", "0")
    assert no_paths.returncode == 2
    assert "name the config files or directories to serve" in no_paths.stderr
    both = meshroute("control-plane", "--source", "kubernetes", str(QUICKSTART))
    assert both.returncode == 2
    assert "the kubernetes source reads no files" in both.stderr
    nowhere = subprocess.run(
        meshroute_argv(
            "control-plane", "--source", "kubernetes", "--kubeconfig", str(tmp_path / "absent")
        ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"},
    )
    assert nowhere.returncode == 1
    assert nowhere.stderr.startswith("error: cannot load the kubeconfig")
    assert "Traceback" not in nowhere.stderr
