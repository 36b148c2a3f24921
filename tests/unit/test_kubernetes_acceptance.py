"""Judging cluster objects one by one: a bad object is refused with a reason, and
changes nothing else."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from meshroute.control_plane.k8s.acceptance import (
    Candidate,
    Outcome,
    config_document,
    decide,
    rejected_by_envoy,
)
from meshroute.control_plane.k8s.feed import ApiSecrets

NO_SECRETS = ApiSecrets("team-a", {})


def obj(kind: str, name: str, spec: dict[str, Any], generation: int = 1) -> Candidate:
    raw = {
        "apiVersion": "meshroute.io/v1alpha1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": "team-a",
            "uid": "1234",
            "resourceVersion": "99",
            "generation": generation,
            "managedFields": [{"manager": "kubectl"}],
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
        },
        "spec": spec,
        "status": {"conditions": []},
    }
    return Candidate(f"{kind}/{name}", generation, config_document(raw))


def agent(name: str, generation: int = 1, **spec: Any) -> Candidate:
    return obj(
        "Agent",
        name,
        {"description": f"The {name} agent.", "endpoints": ["http://127.0.0.1:9100"], **spec},
        generation,
    )


def gateway(name: str, port: int, agents: list[str], generation: int = 1) -> Candidate:
    entries = [{"name": a, "default": i == 0} for i, a in enumerate(agents)]
    return obj("Gateway", name, {"port": port, "agents": entries}, generation)


def provider(name: str, secret: str) -> Candidate:
    return obj(
        "LLMProvider",
        name,
        {
            "api": "openai",
            "endpoint": "https://api.example.com/v1",
            "models": {"gpt": "gpt-4o"},
            "auth": {"secretRef": {"name": secret, "key": "apiKey"}},
        },
    )


def judge(
    *candidates: Candidate, before: Outcome | None = None, secrets: Any = NO_SECRETS
) -> Outcome:
    return decide({c.ref: c for c in candidates}, before.served if before else {}, secrets)


def served_generations(outcome: Outcome) -> Mapping[str, int]:
    return {ref: served.generation for ref, served in outcome.served.items()}


def test_server_fields_are_not_config() -> None:
    document = agent("flights").document
    assert document["metadata"] == {"name": "flights", "namespace": "team-a"}
    assert "status" not in document


def test_all_good_objects_are_accepted_and_served() -> None:
    outcome = judge(
        agent("flights"), agent("hotels"), gateway("travel", 8001, ["flights", "hotels"])
    )
    assert set(outcome.config.agents) == {"flights", "hotels"}
    assert all(v.accepted and v.reason == "Accepted" for v in outcome.verdicts.values())


def test_a_new_invalid_agent_is_refused_and_nothing_else_changes() -> None:
    first = judge(agent("flights"), gateway("travel", 8001, ["flights"]))
    second = judge(
        agent("flights"),
        gateway("travel", 8001, ["flights"]),
        agent("broken", endpoints=["ftp://nowhere"]),
        before=first,
    )
    verdict = second.verdicts["Agent/broken"]
    assert not verdict.accepted
    assert verdict.reason == "Invalid"
    assert verdict.message.startswith("spec.endpoints[0]:")
    assert verdict.message.endswith("; not served")
    assert second.config == first.config
    assert second.verdicts["Agent/flights"].accepted
    assert second.verdicts["Gateway/travel"].accepted


def test_a_bad_edit_keeps_the_last_accepted_generation_serving() -> None:
    first = judge(agent("flights"), gateway("travel", 8001, ["flights"]))
    second = judge(
        agent("flights", generation=2, endpoints=[]),
        gateway("travel", 8001, ["flights"]),
        before=first,
    )
    verdict = second.verdicts["Agent/flights"]
    assert not verdict.accepted
    assert verdict.generation == 2
    assert verdict.message.endswith("still serving generation 1")
    assert served_generations(second)["Agent/flights"] == 1
    assert second.config == first.config  # the gateway still has its agent

    fixed = judge(
        agent("flights", generation=3, description="Flights, fixed."),
        gateway("travel", 8001, ["flights"]),
        before=second,
    )
    assert fixed.verdicts["Agent/flights"].accepted
    assert fixed.config.agents["flights"].spec.description == "Flights, fixed."


def test_a_gateway_naming_a_missing_agent_is_refused_with_the_reason() -> None:
    outcome = judge(agent("flights"), gateway("travel", 8001, ["flights", "ghost"]))
    verdict = outcome.verdicts["Gateway/travel"]
    assert not verdict.accepted
    assert "spec.agents[1].name: no Agent named 'ghost' (known: flights)" in verdict.message
    assert outcome.config.gateways == {}
    assert outcome.verdicts["Agent/flights"].accepted


def test_the_newcomer_to_a_taken_port_is_refused_not_the_incumbent() -> None:
    first = judge(agent("flights"), gateway("travel", 8001, ["flights"]))
    second = judge(
        agent("flights"),
        gateway("travel", 8001, ["flights"]),
        gateway("zzz", 8001, ["flights"]),
        before=first,
    )
    assert second.verdicts["Gateway/travel"].accepted
    refused = second.verdicts["Gateway/zzz"]
    assert not refused.accepted
    assert "port 8001 is also used by Gateway/travel" in refused.message
    assert set(second.config.gateways) == {"travel"}


def test_deleting_an_agent_a_gateway_needs_refuses_that_gateway() -> None:
    first = judge(agent("flights"), agent("hotels"), gateway("travel", 8001, ["flights", "hotels"]))
    second = judge(agent("flights"), gateway("travel", 8001, ["flights", "hotels"]), before=first)
    verdict = second.verdicts["Gateway/travel"]
    assert not verdict.accepted
    assert "no Agent named 'hotels'" in verdict.message
    assert second.config.gateways == {}


def test_a_provider_without_its_key_is_refused_until_the_secret_appears() -> None:
    missing = judge(provider("openai", "openai-key"))
    verdict = missing.verdicts["LLMProvider/openai"]
    assert not verdict.accepted
    assert verdict.reason == "MissingCredentials"
    assert "key 'apiKey' of Secret team-a/openai-key" in verdict.message
    assert missing.config.providers == {}

    secret = {"data": {"apiKey": base64.b64encode(b"sk-test\n").decode()}}
    present = judge(
        provider("openai", "openai-key"),
        before=missing,
        secrets=ApiSecrets("team-a", {"openai-key": secret}),
    )
    assert present.verdicts["LLMProvider/openai"].accepted
    assert present.credentials.providers["openai"].value == "Bearer sk-test"


def test_an_envoy_refusal_blames_what_changed() -> None:
    first = judge(agent("flights"), gateway("travel", 8001, ["flights"]))
    candidates = {
        c.ref: c
        for c in (
            agent("flights", generation=2, timeout="5s"),
            gateway("travel", 8001, ["flights"]),
        )
    }
    second = decide(candidates, first.served, NO_SECRETS)
    verdicts = rejected_by_envoy(candidates, second, first.served, "Invalid duration")
    assert verdicts["Agent/flights"].reason == "EnvoyRejected"
    assert verdicts["Agent/flights"].message == "Invalid duration; still serving generation 1"
    assert verdicts["Gateway/travel"].accepted


def test_kind_and_name_must_match_the_resource() -> None:
    mismatched = Candidate("Agent/flights", 1, {**agent("flights").document, "kind": "Gateway"})
    outcome = decide({mismatched.ref: mismatched}, {}, NO_SECRETS)
    assert not outcome.verdicts["Agent/flights"].accepted


def test_long_messages_are_cut() -> None:
    names = [f"missing-agent-{i:03d}" for i in range(60)]
    outcome = judge(agent("flights"), gateway("travel", 8001, ["flights", *names]))
    message = outcome.verdicts["Gateway/travel"].message
    assert len(message) == 1000
    assert message.endswith("...")
