from __future__ import annotations

import pytest

from meshroute.control_plane.config import load_config
from meshroute.ext_proc.chat_request import Turn
from meshroute.ext_proc.embedded_router import EmbeddedRouter
from tests.support.configs import QUICKSTART


@pytest.fixture(scope="module")
def router() -> EmbeddedRouter:
    config = load_config([QUICKSTART])
    agents = [(a.name, a.spec.description, a.spec.examples) for a in config.agents.values()]
    return EmbeddedRouter(agents, default_agent="weather", min_score=0.1)


def user(text: str) -> list[Turn]:
    return [Turn("user", text)]


@pytest.mark.parametrize(
    ("message", "agent"),
    [
        ("Will it rain in Paris tomorrow?", "weather"),
        ("whats the wether like in berlin", "weather"),  # typo
        ("Book me a flight to Rome", "flights"),
        ("is my flght to denver delayed", "flights"),  # typo
        ("how much is 50 euro in dollars", "currency"),
        ("convert 10 usd to jpy", "currency"),
    ],
)
def test_routes_by_meaning_not_exact_words(
    router: EmbeddedRouter, message: str, agent: str
) -> None:
    choice = router.route(user(message))
    assert (choice.agent, choice.matched) == (agent, True)


def test_below_min_score_goes_to_the_default(router: EmbeddedRouter) -> None:
    choice = router.route(user("hello there"))
    assert choice.agent == "weather"
    assert not choice.matched
    assert choice.score < 0.1


def test_a_follow_up_leans_on_earlier_turns(router: EmbeddedRouter) -> None:
    conversation = [
        Turn("user", "Find me a flight from Boston to Lisbon"),
        Turn("assistant", "There is one at 09:40."),
        Turn("user", "and the day after?"),
    ]
    assert router.route(conversation).agent == "flights"


def test_the_latest_turn_outweighs_history(router: EmbeddedRouter) -> None:
    conversation = [
        Turn("user", "Find me a flight from Boston to Lisbon"),
        Turn("assistant", "There is one at 09:40."),
        Turn("user", "How many euros is 300 dollars?"),
    ]
    assert router.route(conversation).agent == "currency"


def test_the_assistant_reply_says_what_a_follow_up_is_about(router: EmbeddedRouter) -> None:
    follow_up = [Turn("user", "What about Oslo?")]
    conversation = [
        Turn("user", "And Vienna?"),
        Turn("assistant", "Vienna: sunny, 31 degrees, light wind, no rain expected."),
        *follow_up,
    ]
    assert not router.route(follow_up).matched
    choice = router.route(conversation)
    assert (choice.agent, choice.matched) == ("weather", True)


def test_a_reply_weighs_less_than_the_latest_question(router: EmbeddedRouter) -> None:
    conversation = [
        Turn("user", "Will it rain in Paris tomorrow?"),
        Turn("assistant", "Light rain in Paris tomorrow, 14 degrees, windy and humid."),
        Turn("user", "How many euros is 300 dollars?"),
    ]
    assert router.route(conversation).agent == "currency"


def test_the_question_outweighs_the_scene_setting(router: EmbeddedRouter) -> None:
    message = "Booked a direct flight from Seattle to Tokyo, how many yen is 100 dollars?"
    assert router.route(user(message)).agent == "currency"


def test_only_user_turns_count(router: EmbeddedRouter) -> None:
    conversation = [Turn("system", "You are a flight booking assistant"), Turn("user", "hi")]
    assert not router.route(conversation).matched


def test_deterministic(router: EmbeddedRouter) -> None:
    choices = {router.route(user("Is it windy in Chicago?")) for _ in range(5)}
    assert len(choices) == 1


def test_ties_go_to_the_agent_listed_first() -> None:
    router = EmbeddedRouter([("b", "same words", []), ("a", "same words", [])], "a", 0.0)
    assert router.route(user("same words")).agent == "b"


def test_the_default_must_be_one_of_the_agents() -> None:
    with pytest.raises(ValueError, match="default agent"):
        EmbeddedRouter([("a", "x", [])], "b", 0.1)
