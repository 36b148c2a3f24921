"""The routing-model contract, piece by piece: what the model sees, and how its replies
are read. The stand-in model's strict prompt parser checks our prompt's shape."""

from __future__ import annotations

import pytest

from meshroute.ext_proc.chat_request import Turn
from meshroute.ext_proc.decision_cache import DecisionCache
from meshroute.ext_proc.orchestrator import (
    BadReply,
    Route,
    build_prompt,
    parse_route_reply,
    select_conversation,
)
from tests.support.orchestrator import parse_prompt


def test_only_user_and_assistant_turns_with_text_are_kept() -> None:
    turns = [
        Turn("system", "you are helpful"),
        Turn("developer", "be terse"),
        Turn("user", "hi"),
        Turn("assistant", ""),  # e.g. a tool call with no text
        Turn("tool", '{"temp": 12}'),
        Turn("assistant", "hello"),
        Turn("user", "weather in Oslo?"),
    ]
    assert select_conversation(turns, max_turns=16, max_tokens=8192) == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "weather in Oslo?"},
    ]


def test_the_latest_max_turns_are_kept() -> None:
    turns = [Turn("user" if i % 2 == 0 else "assistant", f"t{i}") for i in range(40)]
    selected = select_conversation(turns, max_turns=16, max_tokens=8192)
    assert [turn["content"] for turn in selected] == [f"t{i}" for i in range(24, 40)]


def test_older_turns_give_way_to_the_token_budget() -> None:
    turns = [Turn("user", "a" * 400), Turn("assistant", "b" * 400), Turn("user", "c" * 400)]
    selected = select_conversation(turns, max_turns=16, max_tokens=250)  # ~1000 chars
    assert [turn["content"][0] for turn in selected] == ["b", "c"]


def test_a_latest_message_over_budget_keeps_its_start_and_end() -> None:
    text = "START " + "x" * 10_000 + " END"
    [turn] = select_conversation([Turn("user", text)], max_turns=16, max_tokens=100)
    assert len(turn["content"]) <= 400
    assert turn["content"].startswith("START ")
    assert turn["content"].endswith(" END")
    assert " … " in turn["content"]


def test_the_prompt_holds_routes_per_line_and_the_conversation_as_json() -> None:
    routes = [Route("weather", 'Forecasts, "quoted" words'), Route("flights", "Flights\nand more")]
    conversation = [{"role": "user", "content": "Ünïcode <routes> inside"}]
    parsed_routes, parsed_conversation = parse_prompt(build_prompt(routes, conversation))
    assert parsed_routes == [
        {"name": "weather", "description": 'Forecasts, "quoted" words'},
        {"name": "flights", "description": "Flights\nand more"},
    ]
    assert parsed_conversation == conversation
    assert '{"route": ["name", ...]}' in build_prompt(routes, conversation)


@pytest.mark.parametrize(
    ("reply", "routes"),
    [
        ('{"route": ["flights"]}', ["flights"]),
        ('{"route": ["weather", "flights"]}', ["weather", "flights"]),
        ('```json\n{"route": ["flights"]}\n```', ["flights"]),
        ('Sure! Here you go: {"route": ["flights"]} Hope that helps.', ["flights"]),
        ("{'route': ['flights']}", ["flights"]),
        ('{"route": "flights"}', ["flights"]),
        ('{"route": []}', []),
        ('{"route": null}', []),
    ],
)
def test_replies_models_really_give_are_read(reply: str, routes: list[str]) -> None:
    assert parse_route_reply(reply) == routes


@pytest.mark.parametrize(
    "reply", ["", "flights", "{not json}", '{"routes": ["flights"]}', '{"route": [1, 2]}', "[]"]
)
def test_unreadable_replies_are_bad_replies(reply: str) -> None:
    with pytest.raises(BadReply):
        parse_route_reply(reply)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_decision_cache_expires_entries() -> None:
    clock = Clock()
    cache = DecisionCache(ttl=60, max_entries=10, clock=clock)
    cache.put(b"k", ("flights",))
    clock.now = 59.9
    assert cache.get(b"k") == ("flights",)
    clock.now = 60.0
    assert cache.get(b"k") is None
    assert len(cache) == 0


def test_the_decision_cache_drops_the_least_recently_used() -> None:
    cache = DecisionCache(ttl=60, max_entries=2, clock=Clock())
    cache.put(b"a", ("a",))
    cache.put(b"b", ("b",))
    assert cache.get(b"a") == ("a",)  # a is now the most recently used
    cache.put(b"c", ("c",))
    assert cache.get(b"b") is None
    assert cache.get(b"a") == ("a",)
    assert cache.get(b"c") == ("c",)


def test_a_zero_ttl_turns_the_cache_off() -> None:
    cache = DecisionCache(ttl=0, max_entries=10, clock=Clock())
    cache.put(b"k", ("flights",))
    assert cache.get(b"k") is None
