"""How well the embedded router routes realistic traffic, on the evaluation set.

The issue that asked for this router set 90% top-1 as the bar. Measured on this set
(see the closing note of that issue): this router scores about 48%; static
embeddings distilled from all-MiniLM-L6-v2 scored 57%; the full all-MiniLM-L6-v2
sentence transformer, at ~26 ms a query, 65%. No local method we could run in
under a millisecond comes near 90% on requests that do not share words with the
descriptions; that is what the routing model (router type `orchestrator`) is for.
So this test reports the accuracy and guards against regressions; it does not
pretend to the 90%.
"""

from __future__ import annotations

from meshroute.ext_proc.embedded_router import EmbeddedRouter
from tests.support.routing_eval import load_eval_set, score

REGRESSION_FLOOR = 0.45


def test_embedded_router_accuracy_on_the_evaluation_set() -> None:
    eval_set = load_eval_set()
    assert len(eval_set.cases) >= 200
    assert len(eval_set.agents) >= 10
    router = EmbeddedRouter(eval_set.agents, eval_set.default_agent, min_score=0.05)
    result = score(eval_set, lambda turns: router.route(turns).agent)
    print(result.report())
    assert result.accuracy >= REGRESSION_FLOOR, result.report()
