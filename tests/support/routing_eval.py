"""The routing evaluation set (tests/data/routing_eval.yaml) and how a router scores on it.

The set was written by hand, apart from the router, as users talk: paraphrases,
typos, follow-ups that only make sense in context, words of one domain used for
another. Its cases never reuse the agents' own descriptions or examples.

Its agents can also be given the ~30 more examples each of routing_examples.yaml,
and the development set (routing_dev.yaml, same agents) is where the router is
tuned, so the evaluation set stays held out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from meshroute.ext_proc.chat_request import Turn

DATA = Path(__file__).resolve().parents[1] / "data"
EVAL_SET = DATA / "routing_eval.yaml"
MORE_EXAMPLES = DATA / "routing_examples.yaml"
DEV_SET = DATA / "routing_dev.yaml"


@dataclass(frozen=True)
class EvalSet:
    default_agent: str
    agents: list[tuple[str, str, list[str]]]
    """(name, description, examples)."""
    cases: list[dict[str, Any]]

    def conversation(self, case: dict[str, Any]) -> list[Turn]:
        return [Turn(message["role"], message["content"]) for message in case["messages"]]


@dataclass(frozen=True)
class Score:
    correct: Counter[str]
    total: Counter[str]

    @property
    def accuracy(self) -> float:
        return sum(self.correct.values()) / sum(self.total.values())

    def report(self) -> str:
        kinds = ", ".join(f"{kind} {self.correct[kind]}/{self.total[kind]}" for kind in self.total)
        return f"top-1 accuracy {self.accuracy:.1%} over {sum(self.total.values())} cases ({kinds})"


def load_eval_set(*, more_examples: bool = False, cases: Path = EVAL_SET) -> EvalSet:
    """The evaluation set's agents (with the extra examples if asked) and `cases`' cases."""
    data = yaml.safe_load(EVAL_SET.read_text())
    extra: dict[str, list[str]] = yaml.safe_load(MORE_EXAMPLES.read_text()) if more_examples else {}
    agents = [
        (a["name"], a["description"], [*a.get("examples", []), *extra.get(a["name"], [])])
        for a in data["agents"]
    ]
    case_data = data if cases == EVAL_SET else yaml.safe_load(cases.read_text())
    return EvalSet(data["default_agent"], agents, case_data["cases"])


def score(eval_set: EvalSet, route: Callable[[Sequence[Turn]], str]) -> Score:
    correct: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for case in eval_set.cases:
        total[case["kind"]] += 1
        correct[case["kind"]] += route(eval_set.conversation(case)) == case["expected"]
    return Score(correct, total)
