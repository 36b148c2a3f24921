"""Loading config: every error names file, line, object and field; all are reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshroute.control_plane.config import ConfigError, ConfigErrors, load_config
from meshroute.control_plane.config.loader import ParsedFiles
from tests.support.configs import QUICKSTART, agent_yaml, documents, gateway_yaml

ENDPOINT = "http://127.0.0.1:9100"


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def errors_of(*paths: Path) -> list[ConfigError]:
    with pytest.raises(ConfigErrors) as caught:
        load_config(paths)
    return caught.value.errors


def test_the_quickstart_loads() -> None:
    config = load_config([QUICKSTART])
    assert sorted(config.agents) == ["currency", "flights", "weather"]
    gateway = config.gateways["travel"]
    assert gateway.spec.port == 8001
    assert gateway.spec.default_agent == "weather"
    assert gateway.spec.max_request_bytes == 8 * 2**20
    assert gateway.spec.failure_mode == "closed"
    assert config.agents["flights"].spec.timeout.total_seconds() == 60


def test_a_minimal_agent_is_a_description_and_an_endpoint(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        documents(
            agent_yaml("solo", "Does one thing", ENDPOINT), gateway_yaml("g", 8000, ["solo"], "")
        ),
    )
    config = load_config([path])
    assert config.gateways["g"].spec.default_agent == "solo"  # implied for a single agent
    agent = config.agents["solo"].spec
    assert agent.endpoints[0].host == "127.0.0.1"
    assert agent.endpoints[0].port == 9100


def test_a_gateway_naming_a_missing_agent_says_file_line_object_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        documents(
            agent_yaml("weather", "Forecasts", ENDPOINT),
            gateway_yaml("travel", 8001, ["weather", "hotels"], "weather"),
        ),
    )
    [error] = errors_of(path)
    assert error.file == path
    assert error.object == "Gateway/travel"
    assert error.field == "spec.agents[1].name"
    assert "no Agent named 'hotels'" in error.message
    assert "weather" in error.message  # what does exist
    lines = path.read_text().splitlines()
    assert "hotels" in lines[error.line - 1]
    assert str(error).startswith(f"{path}:{error.line}: Gateway/travel: spec.agents[1].name: ")


def test_every_error_is_reported_not_just_the_first(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        documents(
            "apiVersion: meshroute.io/v1alpha1\nkind: Agent\nmetadata: {name: Bad_Name}\n"
            "spec: {description: x, endpoints: ['ftp://x'], timout: 2s}\n",
            gateway_yaml("g1", 8001, ["a", "b"], ""),
            gateway_yaml("g2", 8001, ["a"], "a"),
        ),
    )
    found = {(error.object, error.field): error.message for error in errors_of(path)}
    assert found[("Agent/Bad_Name", "metadata.name")].startswith("String should match pattern")
    assert "http:// or https://" in found[("Agent/Bad_Name", "spec.endpoints[0]")]
    assert found[("Agent/Bad_Name", "spec.timout")] == "unknown field"
    assert "default: true" in found[("Gateway/g1", "spec.agents")]
    assert "also used by Gateway/g2" in found[("Gateway/g1", "spec.port")]
    assert "also used by Gateway/g1" in found[("Gateway/g2", "spec.port")]
    assert "no Agent named 'a'" in found[("Gateway/g2", "spec.agents[0].name")]


def test_two_defaults_are_an_error_on_the_second(tmp_path: Path) -> None:
    text = documents(
        agent_yaml("a", "A", ENDPOINT),
        agent_yaml("b", "B", ENDPOINT),
        "apiVersion: meshroute.io/v1alpha1\nkind: Gateway\nmetadata: {name: g}\n"
        "spec:\n  port: 8000\n  agents: [{name: a, default: true}, {name: b, default: true}]\n",
    )
    [error] = errors_of(write(tmp_path, text))
    assert error.field == "spec.agents[1].default"
    assert "'a' is already it" in error.message


def test_duplicate_names_point_at_the_first_definition(tmp_path: Path) -> None:
    first = write(tmp_path, agent_yaml("a", "A", ENDPOINT), "one.yaml")
    second = write(tmp_path, agent_yaml("a", "A again", ENDPOINT), "two.yaml")
    [error] = errors_of(tmp_path)
    assert error.file == second
    assert error.object == "Agent/a"
    assert f"first at {first}:1" in error.message


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("kind: Agent\nmetadata: {name: a}\n", "apiVersion", "must be 'meshroute.io/v1alpha1'"),
        (
            "apiVersion: meshroute.io/v1alpha1\nkind: Route\nmetadata: {name: a}\n",
            "kind",
            "unknown kind",
        ),
        ("- just\n- a list\n", None, "must be a mapping"),
        (
            "apiVersion: meshroute.io/v1alpha1\nkind: Gateway\nmetadata: {name: g}\n"
            "spec: {port: 70000, agents: []}\n",
            "spec.port",
            "less than or equal to 65535",
        ),
        (
            "apiVersion: meshroute.io/v1alpha1\nkind: Gateway\nmetadata: {name: g}\n"
            "spec: {port: 8000, agents: [{name: a}], maxRequestBytes: 8MB}\n",
            "spec.maxRequestBytes",
            "not a size",
        ),
        (
            "apiVersion: meshroute.io/v1alpha1\nkind: Agent\nmetadata: {name: a}\n"
            "spec: {description: d, endpoints: ['http://a:1', 'https://b:2']}\n",
            "spec",
            "one scheme",
        ),
        (
            "apiVersion: meshroute.io/v1alpha1\nkind: Agent\nmetadata: {name: a}\n"
            "spec: {description: d, endpoints: ['http://a:1/v1']}\n",
            "spec.endpoints[0]",
            "put the path in `path`",
        ),
        (
            "apiVersion: meshroute.io/v1alpha1\nkind: Agent\nmetadata: {name: a}\n"
            "spec: {description: d, endpoints: ['http://a:1'], timeout: 0s}\n",
            "spec.timeout",
            "must be longer than zero",
        ),
        (
            "apiVersion: meshroute.io/v1alpha1\nkind: Agent\nmetadata: {name: a}\n"
            "spec: {endpoints: []}\n",
            "spec.description",
            "required field is missing",
        ),
    ],
)
def test_schema_errors(tmp_path: Path, text: str, field: str | None, message: str) -> None:
    errors = errors_of(write(tmp_path, text))
    matching = [error for error in errors if error.field == field and message in error.message]
    assert matching, errors


def test_yaml_syntax_errors_carry_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "apiVersion: meshroute.io/v1alpha1\nkind: Agent\nspec: [unclosed\n")
    [error] = errors_of(path)
    assert error.file == path
    assert error.line == 4
    assert error.message.startswith("invalid YAML")


def test_missing_paths_and_empty_directories(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    errors = errors_of(tmp_path / "nope.yaml", tmp_path / "empty")
    assert {error.message for error in errors} == {
        "no such file or directory",
        "no .yaml files in directory",
    }


def test_directories_skip_hidden_files_and_other_suffixes(tmp_path: Path) -> None:
    write(tmp_path, agent_yaml("a", "A", ENDPOINT), "a.yaml")
    write(tmp_path, "not: [yaml", ".a.yaml.swp")
    write(tmp_path, "not: [yaml", ".hidden.yaml")
    write(tmp_path, "not: [yaml", "notes.txt")
    assert list(load_config([tmp_path]).agents) == ["a"]


def test_empty_documents_are_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, "---\n" + agent_yaml("a", "A", ENDPOINT) + "---\n")
    assert list(load_config([path]).agents) == ["a"]


PROVIDER = (
    "apiVersion: meshroute.io/v1alpha1\nkind: LLMProvider\nmetadata: {name: router}\n"
    "spec: {endpoint: 'http://vllm.ml.svc:8000/base/', models: {plano: katanemo/Plano}}\n"
)


def orchestrated_gateway(router: str) -> str:
    return (
        "apiVersion: meshroute.io/v1alpha1\nkind: Gateway\nmetadata: {name: g}\n"
        f"spec: {{port: 8000, agents: [{{name: a}}], router: {router}}}\n"
    )


def test_an_orchestrator_router_names_a_provider_and_one_of_its_models(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        documents(
            agent_yaml("a", "A", ENDPOINT),
            PROVIDER,
            orchestrated_gateway("{type: orchestrator, provider: router, model: plano}"),
        ),
    )
    config = load_config([path])
    router = config.gateways["g"].spec.router
    assert router.type == "orchestrator"
    assert router.timeout.total_seconds() == 2
    assert (router.max_turns, router.max_tokens) == (16, 8192)
    assert router.cache.enabled
    endpoint = config.providers["router"].spec.endpoint
    assert (endpoint.host, endpoint.port, endpoint.base_path) == ("vllm.ml.svc", 8000, "/base")


@pytest.mark.parametrize(
    ("router", "field", "message"),
    [
        (
            "{type: orchestrator, provider: nobody, model: plano}",
            "spec.router.provider",
            "no LLMProvider named 'nobody' (known: router)",
        ),
        (
            "{type: orchestrator, provider: router, model: gpt-4o}",
            "spec.router.model",
            "LLMProvider/router has no model 'gpt-4o' (its models: plano)",
        ),
        (
            "{type: orchestrator, provider: router, model: plano, timeout: 0s}",
            "spec.router.timeout",
            "must be longer than zero",
        ),
        ("{type: magic}", "spec.router", "does not match any of the expected tags"),
    ],
)
def test_orchestrator_references_are_checked(
    tmp_path: Path, router: str, field: str, message: str
) -> None:
    path = write(
        tmp_path, documents(agent_yaml("a", "A", ENDPOINT), PROVIDER, orchestrated_gateway(router))
    )
    errors = errors_of(path)
    assert any(e.field == field and message in e.message for e in errors), errors


def test_a_reload_parses_again_only_the_files_whose_text_changed(tmp_path: Path) -> None:
    flights = write(tmp_path, agent_yaml("flights", "Flights", ENDPOINT), "flights.yaml")
    write(tmp_path, agent_yaml("weather", "Weather", ENDPOINT), "weather.yaml")
    write(tmp_path, gateway_yaml("travel", 8001, ["flights", "weather"], "weather"), "gw.yaml")
    parsed = ParsedFiles()
    first = load_config([tmp_path], parsed)

    flights.write_text(agent_yaml("flights", "Flights, now with fares", ENDPOINT))
    second = load_config([tmp_path], parsed)
    assert second.agents["weather"] is first.agents["weather"]  # reused as parsed
    assert second.agents["flights"].spec.description == "Flights, now with fares"

    # Same size, same text shape: still noticed, since the text is the key.
    flights.write_text(agent_yaml("flights", "Flights, now with Fares", ENDPOINT))
    assert load_config([tmp_path], parsed).agents["flights"].spec.description.endswith("Fares")


def test_a_cached_file_still_reports_its_errors_with_lines(tmp_path: Path) -> None:
    text = agent_yaml("flights", "Flights", ENDPOINT) + "  colour: blue\n"
    broken = write(tmp_path, text)
    parsed = ParsedFiles()
    for _ in range(2):  # parsed, then from the cache
        with pytest.raises(ConfigErrors) as caught:
            load_config([tmp_path], parsed)
        [error] = caught.value.errors
        assert (error.file, error.line, error.field) == (broken, 8, "spec.colour")
        assert error.message == "unknown field"
