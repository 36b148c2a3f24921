"""The embedded router: picks an agent from descriptions and examples, locally.

No network, no model download, deterministic, and fast enough to sit on every
request. Each agent becomes a TF-IDF vector over word stems and character
trigrams (the trigrams catch typos and word forms the stems miss); a request is
scored by cosine similarity against every agent through an inverted index. All
the indexing happens once per routing table, none per request.

People put the context first and the request last, often as a question: "Booked a
hotel in Cancun, what temperatures should I expect?" is about the weather. So in a
message of several clauses, the clauses that ask (a "?", or words such as "can
you", "I need", "how") weigh more than the ones that set the scene.

Follow-ups ("and tomorrow?") carry little signal on their own, so earlier user
turns count too, each half as much as the one after it. The assistant's replies
count at half the weight of the question they answer: "partly cloudy, high of
24°C" says what "and friday?" is about, though the user never said "weather".
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from meshroute.ext_proc.chat_request import Turn

_WORD = re.compile(r"[a-z0-9]+")
_CLAUSE = re.compile(r"[^.;!?,\u2013\u2014]+[.;!?,\u2013\u2014]*")
# Words that make a clause a request even without a question mark.
_ASKING = re.compile(
    r"\b(?:(?:can|could|would|will) (?:you|i|we)|(?:i|we)(?:'d| would)? (?:need|want|like)"
    r"|help me|looking for|please|pls|what|where|when|which|how|is there|are there|any)\b",
    re.IGNORECASE,
)
_STOPWORDS = frozenset(
    """a about above after again all am an and any are as at be been before being below
    between both but by can could did do does doing down during each few for from further
    had has have having he her here hers him his how i if in into is it its itself just
    me more most my no nor not now of off on once only or other our ours out over own
    please same she should so some such than that the their theirs them then there these
    they this those through to too under until up very was we were what when where which
    while who whom why will with would you your yours tell know want need like get give
    show let lets""".split()  # noqa: SIM905  (a word list reads better as prose)
)
_SUFFIXES = (
    ("ational", "ate"),
    ("ations", "ate"),
    ("ation", "ate"),
    ("ings", ""),
    ("ing", ""),
    ("ness", ""),
    ("ments", ""),
    ("ment", ""),
    ("ies", "y"),
    ("ied", "y"),
    ("ers", ""),
    ("er", ""),
    ("ed", ""),
    ("es", ""),
    ("ly", ""),
    ("s", ""),
)
_TRIGRAM_WEIGHT = 0.35
_ASKING_WEIGHT = 4.0
_HISTORY_DECAY = 0.5
_REPLY_WEIGHT = 0.5
_REPLY_CHARS = 400
_HISTORY_TURNS = 4


def _stem(word: str) -> str:
    for suffix, replacement in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: len(word) - len(suffix)] + replacement
    return word


def _features(
    text: str, weight: float = 1.0, counts: dict[str, float] | None = None
) -> dict[str, float]:
    """Word stems, and character trigrams of each stem (prefixed so they never clash)."""
    counts = defaultdict(float) if counts is None else counts
    folded = unicodedata.normalize("NFKD", text.lower()).encode("ascii", "ignore").decode()
    for word in _WORD.findall(folded):
        if word in _STOPWORDS or (len(word) < 2 and not word.isdigit()):
            continue
        stem = _stem(word)
        counts[stem] += weight
        padded = f"#{stem}#"
        for start in range(len(padded) - 2):
            counts["3:" + padded[start : start + 3]] += _TRIGRAM_WEIGHT * weight
    return counts


def _asks(clause: str) -> bool:
    """A question, or a request in words ("can you...", "I need...", "how long...")."""
    return "?" in clause or _ASKING.search(clause) is not None


def _message_features(text: str, weight: float, counts: dict[str, float]) -> None:
    """A user message's features, its asking clauses weighing more than the scene-setting."""
    clauses = _CLAUSE.findall(text)
    if len(clauses) < 2:
        _features(text, weight, counts)
        return
    for clause in clauses:
        _features(clause, weight * _ASKING_WEIGHT if _asks(clause) else weight, counts)


@dataclass(frozen=True)
class RouteChoice:
    agent: str
    score: float
    """Cosine similarity in [0, 1]; 0 when nothing matched."""
    matched: bool
    """False when the score is under min_score and `agent` is the default."""


class EmbeddedRouter:
    """Scores requests against a fixed set of agents. Build once per routing table."""

    def __init__(
        self,
        agents: Sequence[tuple[str, str, Sequence[str]]],
        default_agent: str,
        min_score: float,
    ) -> None:
        """`agents` is (name, description, examples) per agent, in tie-breaking order."""
        if not agents:
            raise ValueError("the embedded router needs at least one agent")
        self._names = [name for name, _, _ in agents]
        if default_agent not in self._names:
            raise ValueError(f"default agent {default_agent!r} is not among the agents")
        self._default = default_agent
        self._min_score = min_score
        documents = [
            _features(" ".join([name.replace("-", " "), description, *examples]))
            for name, description, examples in agents
        ]
        frequency: Counter[str] = Counter()
        for document in documents:
            frequency.update(document.keys())
        count = len(documents)
        # Smoothed IDF: a feature every agent shares still weighs a little, so a
        # single-agent table can match at all.
        self._idf = {feature: math.log(1.0 + count / seen) for feature, seen in frequency.items()}
        self._postings: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for index, document in enumerate(documents):
            vector = self._weigh(document)
            for feature, weight in vector.items():
                self._postings[feature].append((index, weight))

    def _weigh(self, counts: dict[str, float]) -> dict[str, float]:
        vector = {
            feature: (1.0 + math.log(count) if count >= 1 else count) * self._idf[feature]
            for feature, count in counts.items()
            if feature in self._idf
        }
        norm = math.sqrt(sum(weight * weight for weight in vector.values()))
        return {feature: weight / norm for feature, weight in vector.items()} if norm else {}

    def route(self, conversation: Sequence[Turn]) -> RouteChoice:
        query = self._weigh(_query_counts(conversation))
        scores = [0.0] * len(self._names)
        for feature, weight in query.items():
            for index, agent_weight in self._postings.get(feature, ()):
                scores[index] += weight * agent_weight
        best = max(range(len(scores)), key=lambda index: (scores[index], -index))
        score = scores[best]
        if score < self._min_score or score <= 0.0:
            return RouteChoice(agent=self._default, score=score, matched=False)
        return RouteChoice(agent=self._names[best], score=score, matched=True)


def _query_counts(conversation: Sequence[Turn]) -> dict[str, float]:
    """The latest user turn, plus earlier turns at decaying weight.

    Walking back from the latest user turn, each earlier user turn weighs half the
    one after it, and an assistant reply weighs `_REPLY_WEIGHT` times the user turn
    it answered. Only a reply's opening is read: it says what the reply is about,
    and a model's long answer would otherwise cost milliseconds a request. Other
    roles (system, tool) say nothing about what the user wants.
    """
    counts: dict[str, float] = defaultdict(float)
    weight = 1.0
    user_turns = 0
    for turn in reversed(conversation):
        if not turn.text:
            continue
        if turn.role == "user":
            if user_turns == _HISTORY_TURNS:
                break
            user_turns += 1
            _message_features(turn.text, weight, counts)
            weight *= _HISTORY_DECAY
        elif turn.role == "assistant" and user_turns:
            _features(turn.text[:_REPLY_CHARS], weight * _REPLY_WEIGHT, counts)
    return counts
