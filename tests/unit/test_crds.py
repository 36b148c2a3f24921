"""The CRDs in deploy/crds/ are what the config models say, and Kubernetes would take them.

Four ways they could go wrong, four kinds of check: the committed file drifts from the
models (regenerate it); a CRD is not valid apiextensions.k8s.io/v1 (kubernetes-validate
against the real API schema); a schema is not structural, which the API server refuses
(a checker for the rules below); and a schema says something else than the models,
stricter or looser (the example resources and deliberately wrong ones, checked against
both the schemas and the config loader).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel, Field, ValidationError

from meshroute.control_plane.config import load_config
from meshroute.control_plane.config.model import KINDS as MODEL_KINDS
from meshroute.control_plane.config.model import (
    parse_base_url,
    parse_collector_endpoint,
    parse_endpoint,
)
from meshroute.control_plane.config.units import parse_duration, parse_size
from meshroute.control_plane.k8s.crds import (
    BASE_URL_PATTERN,
    COLLECTOR_PATTERN,
    DURATION_PATTERN,
    ENDPOINT_PATTERN,
    SIZE_PATTERN,
    UnsupportedSchemaError,
    crd_documents,
    crds_yaml,
    structural_schema,
)
from tests.support.configs import QUICKSTART, REPO
from tests.support.crd_schema import open_api_schema, schema_errors

CRDS_FILE = REPO / "deploy" / "crds" / "meshroute.io_v1alpha1.yaml"
REGENERATE = (
    "run: .venv/bin/python -m meshroute.control_plane.k8s.crds "
    "> deploy/crds/meshroute.io_v1alpha1.yaml"
)
EXAMPLES = REPO / "deploy" / "examples" / "meshroute"
KUBERNETES_VERSION = "1.31"  # the oldest Kubernetes the CRDs promise to install on

Json = dict[str, Any]


def documents_in(path: Path) -> list[Json]:
    files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    return [doc for file in files for doc in yaml.safe_load_all(file.read_text()) if doc]


def crd_named(kind: str) -> Json:
    return next(crd for crd in crd_documents() if crd["spec"]["names"]["kind"] == kind)


# ----------------------------------------------------------------------------- drift


def test_the_committed_crds_are_what_the_models_say() -> None:
    assert CRDS_FILE.exists(), f"{CRDS_FILE.relative_to(REPO)} is missing; {REGENERATE}"
    assert CRDS_FILE.read_text() == crds_yaml(), (
        f"{CRDS_FILE.relative_to(REPO)} differs from the config models; {REGENERATE}"
    )


def test_the_yaml_says_what_crd_documents_says() -> None:
    text = crds_yaml()
    assert text.startswith("# "), "the file opens with its do-not-edit header"
    assert "do not edit by hand" in text
    assert list(yaml.safe_load_all(text)) == crd_documents()


def test_every_config_kind_has_exactly_one_crd() -> None:
    kinds = [crd["spec"]["names"]["kind"] for crd in crd_documents()]
    assert sorted(kinds) == sorted(MODEL_KINDS)


def test_the_crds_name_their_group_version_and_scope() -> None:
    for crd in crd_documents():
        spec = crd["spec"]
        names = spec["names"]
        assert crd["metadata"]["name"] == f"{names['plural']}.meshroute.io"
        assert spec["group"] == "meshroute.io"
        assert spec["scope"] == "Namespaced"
        [version] = spec["versions"]
        assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
        assert version["subresources"] == {"status": {}}
        assert names["singular"] == names["kind"].lower()
        columns = [column["name"] for column in version["additionalPrinterColumns"]]
        assert "Accepted" in columns
        assert columns[-1] == "Age"
    short_names = [name for crd in crd_documents() for name in crd["spec"]["names"]["shortNames"]]
    assert len(set(short_names)) == len(short_names)
    assert not {"gw", "gtw", "ag", "llm", "po", "svc"} & set(short_names), "clashes with others"


# ------------------------------------------------------------- valid apiextensions/v1


@pytest.mark.parametrize("kind", sorted(MODEL_KINDS))
def test_each_crd_is_valid_apiextensions_v1(kind: str) -> None:
    kubernetes_validate.validate(crd_named(kind), KUBERNETES_VERSION, strict=True)


def test_kubernetes_validate_would_catch_a_bad_crd() -> None:
    crd = crd_named("Gateway")
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["exclusiveMinimum"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(crd, KUBERNETES_VERSION, strict=True)


# ------------------------------------------------------------------------ structural

TYPES = {"object", "array", "string", "integer", "number", "boolean"}
# Keywords a structural schema may not use at all (or, for the junctors, that we
# do not use even in their value-validation-only form: none of them is needed).
FORBIDDEN = {
    "$ref",
    "$schema",
    "$defs",
    "definitions",
    "id",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "discriminator",
    "const",
    "title",
    "propertyNames",
    "patternProperties",
    "dependencies",
    "additionalItems",
}


def structural_problems(node: Json, path: str = "") -> list[str]:
    """Kubernetes' structural-schema rules (the ones a generator could break), by path."""
    problems = [f"{path}: {key} is not allowed" for key in sorted(FORBIDDEN & set(node))]
    kind = node.get("type")
    if node.get("x-kubernetes-int-or-string") is True:
        if kind is not None:
            problems.append(f"{path}: int-or-string with a type")
    elif kind not in TYPES and node.get("x-kubernetes-preserve-unknown-fields") is not True:
        problems.append(f"{path}: no type")
    if "nullable" in node and not isinstance(node["nullable"], bool):
        problems.append(f"{path}: nullable is not a boolean")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{path}: properties and additionalProperties together")
    if node.get("additionalProperties") is False or node.get("uniqueItems") is True:
        problems.append(f"{path}: additionalProperties: false / uniqueItems: true")
    if ("properties" in node or "additionalProperties" in node) and kind != "object":
        problems.append(f"{path}: fields on a non-object")
    if (kind == "array") != isinstance(node.get("items"), dict):
        problems.append(f"{path}: an array needs exactly one items schema, a non-array none")
    missing = set(node.get("required", [])) - set(node.get("properties", {}))
    if missing:
        problems.append(f"{path}: requires undeclared {sorted(missing)}")
    if "default" in node and "enum" in node and node["default"] not in node["enum"]:
        problems.append(f"{path}: default outside the enum")
    if "x-kubernetes-list-type" in node and kind != "array":
        problems.append(f"{path}: a list type on a non-array")
    if node.get("x-kubernetes-list-type") in ("map", "set") and node["items"].get("nullable"):
        problems.append(f"{path}: nullable items in a map or set list")
    if node.get("x-kubernetes-list-type") == "map":
        items = node["items"]
        for key in node.get("x-kubernetes-list-map-keys", []):
            if key not in items.get("required", []) or items["properties"][key].get("nullable"):
                problems.append(f"{path}: list-map key {key} is optional or nullable")
    for name, child in node.get("properties", {}).items():
        problems.extend(structural_problems(child, f"{path}.{name}"))
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            problems.extend(structural_problems(node[key], f"{path}.{key}"))
    return problems


@pytest.mark.parametrize("kind", sorted(MODEL_KINDS))
def test_each_schema_is_structural(kind: str) -> None:
    schema = open_api_schema(kind)
    assert structural_problems(schema) == []
    # Kubernetes owns metadata; a CRD may only narrow name and generateName.
    assert schema["properties"]["metadata"] == {"type": "object"}
    assert schema["required"] == ["spec"]
    conditions = schema["properties"]["status"]["properties"]["conditions"]
    assert set(conditions["items"]["required"]) == {
        "type",
        "status",
        "lastTransitionTime",
        "reason",
        "message",
    }


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"type": "object", "properties": {"a": {}}}, "no type"),
        ({"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}]}}}, "anyOf"),
        (
            {"type": "object", "properties": {}, "additionalProperties": {"type": "string"}},
            "together",
        ),
        ({"type": "array"}, "items"),
        ({"type": "object", "required": ["a"], "properties": {}}, "undeclared"),
        ({"x-kubernetes-int-or-string": True, "type": "string"}, "int-or-string"),
    ],
)
def test_the_checker_spots_what_is_not_structural(schema: Json, problem: str) -> None:
    problems = structural_problems(schema)
    assert any(problem in found for found in problems), problems


class _Choice(BaseModel):
    value: int | list[str]


class _Loop(BaseModel):
    child: _Loop | None = None


@pytest.mark.parametrize(("model", "message"), [(_Choice, "union"), (_Loop, "recursive")])
def test_what_has_no_structural_form_is_refused_not_dropped(
    model: type[BaseModel], message: str
) -> None:
    with pytest.raises(UnsupportedSchemaError, match=message):
        structural_schema(model.model_json_schema(by_alias=True))


def test_a_tagged_union_becomes_one_object_with_every_variants_fields() -> None:
    spec = open_api_schema("Gateway")["properties"]["spec"]
    assert spec["properties"]["type"]["enum"] == ["agent", "model"]
    assert spec["properties"]["type"]["default"] == "agent"  # what the model picks too
    assert spec["required"] == ["port"]  # the only field every variant requires
    assert {"agents", "failureMode", "defaultModel", "modelAliases"} <= set(spec["properties"])
    assert "Only with `type: model`" in spec["properties"]["defaultModel"]["description"]
    router = spec["properties"]["router"]
    assert router["required"] == ["type"]  # pydantic needs the tag to pick a router
    assert router["properties"]["type"]["enum"] == ["embedded", "orchestrator"]
    assert "default" not in router["properties"]["type"]


# ------------------------------------------------ the examples, against both checks


def model_accepts(document: Json) -> bool:
    try:
        MODEL_KINDS[document["kind"]].model_validate(document)
    except ValidationError:
        return False
    return True


EXAMPLE_DOCUMENTS = documents_in(EXAMPLES)


def test_the_examples_cover_every_kind_in_one_namespace() -> None:
    assert {doc["kind"] for doc in EXAMPLE_DOCUMENTS} == set(MODEL_KINDS)
    assert {doc["metadata"]["namespace"] for doc in EXAMPLE_DOCUMENTS} == {"meshroute-system"}
    providers = [doc for doc in EXAMPLE_DOCUMENTS if doc["kind"] == "LLMProvider"]
    assert {"secretRef": {"name": "openai-api-key", "key": "api-key"}} in [
        p["spec"]["auth"] for p in providers
    ]
    gateway_types = {
        doc["spec"].get("type") for doc in EXAMPLE_DOCUMENTS if doc["kind"] == "Gateway"
    }
    assert gateway_types == {"agent", "model"}


@pytest.mark.parametrize(
    "document",
    EXAMPLE_DOCUMENTS + documents_in(QUICKSTART),
    ids=lambda doc: (
        f"{doc['metadata'].get('namespace', 'quickstart')}/{doc['kind']}/{doc['metadata']['name']}"
    ),
)
def test_the_examples_fit_their_crd(document: Json) -> None:
    assert schema_errors(document) == []


def test_the_examples_load_with_the_config_loader() -> None:
    config = load_config([EXAMPLES])
    assert sorted(config.agents) == ["currency", "flights", "weather"]
    assert sorted(config.gateways) == ["llm", "travel"]
    assert sorted(config.providers) == ["openai"]


def example(kind: str, name: str) -> Json:
    found = next(
        d for d in EXAMPLE_DOCUMENTS if d["kind"] == kind and d["metadata"]["name"] == name
    )
    return copy.deepcopy(found)


def _set(path: str, value: Any) -> Callable[[Json], None]:
    *parents, last = path.split(".")

    def change(document: Json) -> None:
        node = document
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if value is _DELETE:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return change


_DELETE = object()


@pytest.mark.parametrize(
    ("kind", "name", "change"),
    [
        ("Gateway", "travel", _set("spec.port", "eighty")),
        ("Gateway", "travel", _set("spec.port", 70000)),
        ("Gateway", "travel", _set("spec.type", "both")),
        ("Gateway", "travel", _set("spec.agents", [])),
        ("Gateway", "travel", _set("spec.colour", "blue")),
        ("Gateway", "travel", _set("spec", _DELETE)),
        ("Gateway", "llm", _set("spec.maxRequestBytes", "16MB")),
        ("Gateway", "llm", _set("spec.router", {"provider": "openai", "model": "gpt-demo"})),
        ("Gateway", "llm", _set("spec.router", {"type": "orchestrator", "maxTurns": "many"})),
        ("Gateway", "llm", _set("spec.auth", {"apiKeys": []})),
        ("Gateway", "llm", _set("spec.auth", {"apiKeys": [{"client": "Team A", "fromEnv": "K"}]})),
        ("Gateway", "llm", _set("spec.auth", {"jwt": {"issuer": "x", "jwksUri": "https://x/k"}})),
        ("Gateway", "travel", _set("spec.auth", {"jwt": {"issuer": "x", "audiences": []}})),
        ("Agent", "weather", _set("spec.timeout", "2 seconds")),
        ("Agent", "weather", _set("spec.timeout", -1)),
        ("Agent", "weather", _set("spec.endpoints", ["ftp://weather"])),
        ("Agent", "weather", _set("spec.endpoints.0", "http://weather/v1")),
        ("Agent", "weather", _set("spec.description", _DELETE)),
        ("Agent", "weather", _set("spec.examples", "one example")),
        ("LLMProvider", "openai", _set("spec.auth.secretRef.key", _DELETE)),
        ("LLMProvider", "openai", _set("spec.models", {})),
        ("LLMProvider", "openai", _set("spec.api", "bard")),
        ("LLMProvider", "openai", _set("spec.endpoint", "api.openai.com")),
        ("LLMProvider", "openai", _set("spec.retries.retryOn", ["sometimes"])),
        ("LLMProvider", "openai", _set("spec.retries.retryOn", [700])),
        ("LLMProvider", "openai", _set("spec.retries.attempts", 11)),
        ("LLMProvider", "openai", _set("spec.loadBalancing.policy", "RANDOM")),
    ],
)
def test_wrong_resources_are_refused_by_the_crd_and_by_the_models(
    kind: str, name: str, change: Callable[[Json], None]
) -> None:
    document = example(kind, name)
    change(document)
    assert schema_errors(document), "the CRD accepted it"
    assert not model_accepts(document), "the models accepted what the CRD refuses"


@pytest.mark.parametrize(
    ("kind", "name", "change"),
    [
        ("Gateway", "travel", _set("spec.type", _DELETE)),  # an agent gateway by default
        ("Gateway", "travel", _set("spec.maxRequestBytes", 1048576)),
        ("Gateway", "travel", _set("spec.router", {"type": "embedded", "minScore": 0.3})),
        ("Gateway", "travel", _set("spec.defaults", None)),
        (
            "Gateway",
            "llm",
            _set("spec.auth", {"apiKeys": [{"client": "team-a", "fromEnv": "TEAM_A_KEY"}]}),
        ),
        (
            "Gateway",
            "travel",
            _set(
                "spec.auth",
                {
                    "jwt": {
                        "issuer": "https://issuer.example",
                        "audiences": ["meshroute"],
                        "jwksUri": "https://issuer.example/.well-known/jwks.json",
                        "jwksCacheDuration": "10m",
                    }
                },
            ),
        ),
        ("Agent", "weather", _set("spec.timeout", 45)),
        ("Agent", "weather", _set("spec.timeout", "1m30s")),
        ("Agent", "weather", _set("spec.connectTimeout", "250ms")),
        ("Agent", "weather", _set("spec.endpoints", ["http://[fd00::1]:9100/"])),
        ("Agent", "weather", _set("spec.retries", {"perTryTimeout": None, "retryOn": [503]})),
        ("LLMProvider", "openai", _set("spec.endpoint", "https://api.groq.com/openai")),
        ("LLMProvider", "openai", _set("spec.auth", {"fromEnv": "OPENAI_API_KEY"})),
        ("LLMProvider", "openai", _set("spec.auth", {"passthrough": True})),
        ("LLMProvider", "openai", _set("spec.outlierDetection", {"consecutive5xx": 3})),
    ],
)
def test_what_the_models_accept_the_crd_accepts(
    kind: str, name: str, change: Callable[[Json], None]
) -> None:
    document = example(kind, name)
    change(document)
    assert model_accepts(document), "not a valid object to begin with"
    assert schema_errors(document) == []


# ---------------------------------------- the patterns standing in for the parsers


@pytest.mark.parametrize(
    ("pattern", "parse", "accepted", "refused"),
    [
        (
            DURATION_PATTERN,
            parse_duration,
            ["500ms", "2s", "1m30s", "1.5s", "10us", "1h", " 2s "],
            ["2 seconds", "-1s", "1d", "", "s", "1.s", "2S"],
        ),
        (
            SIZE_PATTERN,
            parse_size,
            ["8Mi", "512Ki", "1000", "1G", " 8Mi "],
            ["8MB", "8 Mi", "-1", "1.5Gi", "Mi", ""],
        ),
        (
            ENDPOINT_PATTERN,
            parse_endpoint,
            ["http://flights.travel.svc:8080", "https://api.example.com", "http://[::1]:80/"],
            ["flights:8080", "ftp://x", "http://x/v1", "http://x?y=1", ""],
        ),
        (
            BASE_URL_PATTERN,
            parse_base_url,
            ["https://api.groq.com/openai", "http://vllm.ml.svc:8000", "HTTPS://x/openai/"],
            ["api.openai.com", "https://x?y=1", "https://x#top", "ws://x"],
        ),
        (
            COLLECTOR_PATTERN,
            parse_collector_endpoint,
            [
                "http://otel-collector.obs.svc:4317",
                "https://otel.example.com:443/",
                "http://[::1]:4317",
            ],
            ["http://otel-collector", "otel:4317", "http://x:4317/v1/traces", "grpc://x:4317"],
        ),
    ],
)
def test_each_pattern_accepts_what_its_parser_accepts(
    pattern: str, parse: Callable[[object], object], accepted: list[str], refused: list[str]
) -> None:
    for text in accepted:
        parse(text)  # the parser takes it...
        assert re.search(pattern, text), f"...and so must the CRD: {text!r}"
    for text in refused:
        with pytest.raises(ValueError, match=r"."):
            parse(text)
        assert not re.search(pattern, text), f"the CRD should refuse {text!r} up front"


def test_the_schemas_carry_the_models_field_docs() -> None:
    spec = open_api_schema("Agent")["properties"]["spec"]
    assert spec["properties"]["description"]["description"] == (
        "What the agent does, in prose; the router reads it."
    )
    assert "Default: `60s`." in spec["properties"]["timeout"]["description"]
    assert "\n" not in spec["properties"]["variants"]["description"]  # unwrapped for kubectl


def test_only_the_gateway_type_has_a_default() -> None:
    """Defaults stay with the models; the API server would otherwise store them in every
    object (and in a merged union add one variant's fields to the other)."""

    def defaults(node: Json, path: str = "") -> list[str]:
        found = [path] if "default" in node else []
        for name, child in node.get("properties", {}).items():
            found += defaults(child, f"{path}.{name}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                found += defaults(node[key], f"{path}.{key}")
        return found

    found = [f"{kind}{path}" for kind in MODEL_KINDS for path in defaults(open_api_schema(kind))]
    assert found == ["Gateway.spec.type"]


class _Sized(BaseModel):
    values: list[int] = Field(default_factory=list, min_length=1)


def test_plain_models_convert_too() -> None:
    assert structural_schema(_Sized.model_json_schema()) == {
        "type": "object",
        "properties": {"values": {"type": "array", "minItems": 1, "items": {"type": "integer"}}},
    }
