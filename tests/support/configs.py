"""Config files for tests: the quickstart's own files, moved onto free ports."""

from __future__ import annotations

import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "examples" / "quickstart"
QUICKSTART_DEMO_ENDPOINT = "http://127.0.0.1:9100"
QUICKSTART_GATEWAY_PORT_LINE = "port: 8001"
QUICKSTART_MODELS_ENDPOINT = "http://127.0.0.1:9200"
QUICKSTART_MODEL_GATEWAY_PORT_LINE = "port: 12000"
QUICKSTART_MODELS = "models.yaml"


def quickstart_config(
    directory: Path,
    gateway_port: int,
    demo_agents_port: int,
    models: tuple[int, int] | None = None,
) -> Path:
    """The quickstart config, unchanged but for its ports. The model gateway (and its
    providers) comes along only with `models`: (model gateway port, demo models port)."""
    directory.mkdir(parents=True, exist_ok=True)
    for source in QUICKSTART.glob("*.yaml"):
        if source.name == QUICKSTART_MODELS and models is None:
            continue
        text = source.read_text()
        text = text.replace(QUICKSTART_DEMO_ENDPOINT, f"http://127.0.0.1:{demo_agents_port}")
        text = text.replace(QUICKSTART_GATEWAY_PORT_LINE, f"port: {gateway_port}")
        if models is not None:
            gateway, backends = models
            text = text.replace(QUICKSTART_MODELS_ENDPOINT, f"http://127.0.0.1:{backends}")
            text = text.replace(QUICKSTART_MODEL_GATEWAY_PORT_LINE, f"port: {gateway}")
        (directory / source.name).write_text(text)
    return directory


def agent_yaml(
    name: str, description: str, endpoint: str, examples: list[str] | None = None
) -> str:
    examples_line = f"\n  examples: {examples!r}" if examples else ""
    return (
        textwrap.dedent(
            f"""\
        apiVersion: meshroute.io/v1alpha1
        kind: Agent
        metadata: {{name: {name}}}
        spec:
          description: {description!r}
          endpoints: ["{endpoint}"]
          path: /agents/{name}/v1/chat/completions
        """
        ).rstrip("\n")
        + examples_line
        + "\n"
    )


def provider_yaml(name: str, endpoint: str, models: dict[str, str]) -> str:
    entries = ", ".join(f"{exposed}: {model_id}" for exposed, model_id in models.items())
    return textwrap.dedent(
        f"""\
        apiVersion: meshroute.io/v1alpha1
        kind: LLMProvider
        metadata: {{name: {name}}}
        spec:
          endpoint: {endpoint}
          models: {{{entries}}}
        """
    )


def gateway_yaml(name: str, port: int, agents: list[str], default: str, extra: str = "") -> str:
    entries = ", ".join(
        f"{{name: {agent}, default: true}}" if agent == default else f"{{name: {agent}}}"
        for agent in agents
    )
    text = textwrap.dedent(
        f"""\
        apiVersion: meshroute.io/v1alpha1
        kind: Gateway
        metadata: {{name: {name}}}
        spec:
          port: {port}
          agents: [{entries}]
        """
    )
    if extra:
        text += textwrap.indent(textwrap.dedent(extra).strip("\n"), "  ") + "\n"
    return text


def documents(*parts: str) -> str:
    return "---\n".join(parts)
