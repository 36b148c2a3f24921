"""The embedded router's decision time with 50 agents, and its accuracy.

Accuracy is on the evaluation set (tests/data/routing_eval.yaml, 12 agents). For
the timing, 38 more agents are added, with descriptions and examples built from
the set's own vocabulary, so the router has 50 agents of realistic size to score
against; every case of the set is then routed and each decision timed.

    .venv/bin/python -m bench.embedded_router
"""

from __future__ import annotations

import random
import statistics
import sys
import time

from meshroute.ext_proc.embedded_router import EmbeddedRouter
from tests.support.routing_eval import load_eval_set, score

AGENTS = 50
ROUNDS = 20


def main() -> int:
    eval_set = load_eval_set()
    words = sorted(
        {word for _, description, _ in eval_set.agents for word in description.lower().split()}
    )
    rng = random.Random(7)  # the same agents every run
    extra = [
        (
            f"extra-{index}",
            " ".join(rng.choices(words, k=25)),
            [" ".join(rng.choices(words, k=8)) for _ in range(4)],
        )
        for index in range(AGENTS - len(eval_set.agents))
    ]
    accuracy = score(
        eval_set,
        lambda turns: (
            EmbeddedRouter(eval_set.agents, eval_set.default_agent, 0.05).route(turns).agent
        ),
    )
    started = time.perf_counter()
    router = EmbeddedRouter([*eval_set.agents, *extra], eval_set.default_agent, 0.05)
    build_ms = (time.perf_counter() - started) * 1000
    conversations = [eval_set.conversation(case) for case in eval_set.cases]
    timings = []
    for _ in range(ROUNDS):
        for turns in conversations:
            started = time.perf_counter()
            router.route(turns)
            timings.append((time.perf_counter() - started) * 1e6)
    cuts = statistics.quantiles(timings, n=100)
    print(f"embedded router, {AGENTS} agents: built in {build_ms:.1f} ms")
    print(
        f"decision time over {len(timings)} decisions: p50 {cuts[49]:.0f} us, "
        f"p99 {cuts[98]:.0f} us, mean {statistics.fmean(timings):.0f} us"
    )
    print(f"evaluation set (12 agents): {accuracy.report()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
