"""The embedded router's decision time with 50 agents, and its accuracy.

Accuracy is on the evaluation set (tests/data/routing_eval.yaml, 12 agents), with
the examples as written (3-4 per agent) and with ~30 per agent
(tests/data/routing_examples.yaml), at the gateway's default minScore. For the
timing, 38 more agents are added, with descriptions and 30 examples each built from
the set's own vocabulary, so the router has 50 agents of realistic size to score
against; every case of the set is then routed and each decision timed.

    .venv/bin/python -m bench.embedded_router
"""

from __future__ import annotations

import random
import statistics
import sys
import time

from bench.common import run_bench
from meshroute.control_plane.config.model import EmbeddedRouterSpec
from meshroute.ext_proc.embedded_router import EmbeddedRouter
from tests.support.routing_eval import EvalSet, Score, load_eval_set, score

AGENTS = 50
EXAMPLES = 30
ROUNDS = 20
MIN_SCORE = EmbeddedRouterSpec.model_fields["min_score"].default


def accuracy(eval_set: EvalSet) -> Score:
    router = EmbeddedRouter(eval_set.agents, eval_set.default_agent, MIN_SCORE)
    return score(eval_set, lambda turns: router.route(turns).agent)


def main() -> int:
    eval_set = load_eval_set(more_examples=True)
    words = sorted(
        {word for _, description, _ in eval_set.agents for word in description.lower().split()}
    )
    rng = random.Random(7)  # the same agents every run
    extra = [
        (
            f"extra-{index}",
            " ".join(rng.choices(words, k=25)),
            [" ".join(rng.choices(words, k=8)) for _ in range(EXAMPLES)],
        )
        for index in range(AGENTS - len(eval_set.agents))
    ]
    started = time.perf_counter()
    router = EmbeddedRouter([*eval_set.agents, *extra], eval_set.default_agent, MIN_SCORE)
    build_ms = (time.perf_counter() - started) * 1000
    conversations = [eval_set.conversation(case) for case in eval_set.cases]
    timings = []
    for _ in range(ROUNDS):
        for turns in conversations:
            started = time.perf_counter()
            router.route(turns)
            timings.append((time.perf_counter() - started) * 1e6)
    cuts = statistics.quantiles(timings, n=100)
    print(f"embedded router, {AGENTS} agents of ~{EXAMPLES} examples: built in {build_ms:.1f} ms")
    print(
        f"decision time over {len(timings)} decisions: p50 {cuts[49]:.0f} us, "
        f"p99 {cuts[98]:.0f} us, mean {statistics.fmean(timings):.0f} us"
    )
    print(f"evaluation set, 12 agents, minScore {MIN_SCORE}:")
    print(f"  3-4 examples an agent: {accuracy(load_eval_set()).report()}")
    print(f"  ~30 examples an agent: {accuracy(eval_set).report()}")
    return 0


if __name__ == "__main__":
    sys.exit(run_bench(main))
