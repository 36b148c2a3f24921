"""How well the embedded router routes realistic traffic, on the evaluation set.

The issue that asked for this router set 90% top-1 as the bar; it is not reached.
Measured on the held-out set (246 cases, 12 agents), with the gateway's default
minScore (0.1): 50% when each agent has the 3 or 4 examples the set was written
with, 76% when each has ~30 (routing_examples.yaml, written without sight of the
cases); 81% on the development set, where the router's constants were chosen.
Two changes chosen on the development set moved the last two up from 74% and 78%:
counting the assistant's replies (follow-ups), and weighing a clause that asks in
words ("can you", "I need", "how") like one that ends in "?" (four times the
scene-setting clauses, up from three).

Designs measured on the development set and dropped for doing no better there:
nearest neighbours over single examples (alone or mixed with the per-agent
vector), multinomial logistic regression trained on the examples, multinomial and
complement naive Bayes, BM25-like and entropy feature weights, word bigrams. All
landed within a point or two of the per-agent TF-IDF vector, under it with ~30
examples an agent. Earlier measurements on the 3-4-example agents put static
embeddings distilled from all-MiniLM-L6-v2 at 57% and the full sentence
transformer (~26 ms a query) at 65%; with ~30 examples an agent, those static
embeddings added nothing on the development set. Past this point requests need
world knowledge no word-matching router has ("do I need a jacket?" is about the
weather, a Shinkansen is a train); that is what the routing model (router type
`orchestrator`) is for.

So these tests report the accuracy and guard against regressions; they do not
pretend to the 90%. The floors sit a few points under today's figures.
"""

from __future__ import annotations

import re

import pytest

from meshroute.control_plane.config.model import EmbeddedRouterSpec
from meshroute.ext_proc.embedded_router import EmbeddedRouter
from tests.support.routing_eval import DEV_SET, EvalSet, Score, load_eval_set, score

DEFAULT_MIN_SCORE = EmbeddedRouterSpec.model_fields["min_score"].default


def accuracy(eval_set: EvalSet) -> Score:
    router = EmbeddedRouter(eval_set.agents, eval_set.default_agent, DEFAULT_MIN_SCORE)
    result = score(eval_set, lambda turns: router.route(turns).agent)
    print(result.report())
    return result


def test_accuracy_with_the_examples_as_written() -> None:
    eval_set = load_eval_set()
    assert len(eval_set.cases) >= 200
    assert len(eval_set.agents) >= 10
    result = accuracy(eval_set)
    assert result.accuracy >= 0.47, result.report()


def test_accuracy_with_thirty_examples_per_agent() -> None:
    eval_set = load_eval_set(more_examples=True)
    assert min(len(examples) for _, _, examples in eval_set.agents) >= 25
    result = accuracy(eval_set)
    assert result.accuracy >= 0.73, result.report()


def test_accuracy_on_the_development_set() -> None:
    """Where the router's constants were chosen; optimistic, reported for comparison."""
    result = accuracy(load_eval_set(more_examples=True, cases=DEV_SET))
    assert result.accuracy >= 0.78, result.report()


def _five_word_runs(text: str) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9']+", text.lower())
    return {tuple(words[start : start + 5]) for start in range(len(words) - 4)}


@pytest.mark.parametrize("more_examples", [False, True])
def test_no_case_reuses_the_wording_of_a_description_or_example(more_examples: bool) -> None:
    """The set's promise: a case shares no run of 5 words with what the router reads."""
    eval_set = load_eval_set(more_examples=more_examples)
    router_reads: set[tuple[str, ...]] = set()
    for _, description, examples in eval_set.agents:
        for text in (description, *examples):
            router_reads |= _five_word_runs(text)
    reused = [
        case["id"]
        for case in eval_set.cases
        for message in case["messages"]
        if _five_word_runs(message["content"]) & router_reads
    ]
    assert reused == []
