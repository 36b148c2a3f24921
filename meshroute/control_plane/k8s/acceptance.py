"""Which objects to serve when some of them are wrong.

A file config is all or nothing: one bad object refuses the reload. In a cluster,
objects come from many teams, one at a time, so each is judged on its own:

- An object that fails its schema is not served. If an earlier generation of it was
  accepted, that one keeps serving ("still serving generation N"), so a bad edit to
  an Agent changes nothing anywhere.
- A problem between objects (a Gateway naming an Agent that does not exist, two
  Gateways on one port, a missing API key of a provider or of a Gateway's client) is
  blamed on the objects the error names. Objects that changed since they were last
  accepted are blamed first and fall back to their accepted generation; so a new
  Gateway that takes a port already in use is the one refused, not the Gateway that
  had it.
- What remains is checked again until nothing is wrong; every step drops or rolls
  back at least one object, so this ends.

The answer is a checked Config with its credentials, and a verdict for every object:
what goes into its `Accepted` condition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from meshroute.control_plane.config.errors import ConfigError
from meshroute.control_plane.config.loader import check_objects, parse_object
from meshroute.control_plane.config.model import Config, Object
from meshroute.control_plane.credentials import (
    Credentials,
    MissingCredentials,
    SecretStore,
    read_credentials,
)

MAX_MESSAGE = 1000
"""Condition messages are for people; past this, the rest is in the control plane log."""

INVALID = "Invalid"
MISSING_CREDENTIALS = "MissingCredentials"
ENVOY_REJECTED = "EnvoyRejected"
ACCEPTED = "Accepted"


@dataclass(frozen=True)
class Candidate:
    """An object as the API server has it now."""

    ref: str
    """`Kind/name`."""
    generation: int
    document: Mapping[str, Any]
    """apiVersion, kind, metadata (name, namespace, labels) and spec; no server fields."""


@dataclass(frozen=True)
class Served:
    """An object generation that passed every check."""

    obj: Object
    generation: int


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: str
    message: str
    generation: int
    """The generation this verdict is about (the object's current one)."""


@dataclass
class Outcome:
    config: Config
    credentials: Credentials
    served: dict[str, Served]
    """`Kind/name` -> the generation in `config` (the current one, or an older one)."""
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    """`Kind/name` of every candidate -> its Accepted condition."""


def config_document(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A Kubernetes object as the config loader reads it: what its author wrote, without
    what the server adds (uid, resourceVersion, managedFields, status...)."""
    metadata = raw.get("metadata") or {}
    kept = {key: metadata[key] for key in ("name", "namespace", "labels") if key in metadata}
    document: dict[str, Any] = {
        "apiVersion": raw.get("apiVersion"),
        "kind": raw.get("kind"),
        "metadata": kept,
    }
    if "spec" in raw:
        document["spec"] = raw["spec"]
    return document


def decide(
    candidates: Mapping[str, Candidate],
    previously: Mapping[str, Served],
    secrets: SecretStore,
) -> Outcome:
    """Serve as much as is right; explain the rest. `previously`: the last outcome's
    `served`."""
    problems: dict[str, list[str]] = {}
    reasons: dict[str, str] = {}
    pool: dict[str, Served] = {}
    for ref, candidate in candidates.items():
        errors: list[ConfigError] = []
        parsed = parse_object(dict(candidate.document), None, errors)
        if parsed is not None and parsed.ref != ref:
            errors.append(ConfigError(None, None, ref, "kind", "does not match the resource"))
            parsed = None
        if parsed is not None:
            pool[ref] = Served(parsed, candidate.generation)
            continue
        problems[ref] = [_describe(error) for error in errors]
        reasons[ref] = INVALID
        if ref in previously:
            pool[ref] = previously[ref]

    while True:
        config, errors = check_objects([(served.obj, None) for served in pool.values()])
        credentials = Credentials()
        if not errors:
            try:
                credentials = read_credentials(config, secrets)
            except MissingCredentials as missing:
                for ref, why in missing.by_object.items():
                    problems.setdefault(ref, []).append(why)
                    reasons.setdefault(ref, MISSING_CREDENTIALS)
                _set_aside(set(missing.by_object), pool, previously)
                continue
            break
        blamed: dict[str, list[str]] = {}
        for error in errors:
            owner = error.object if error.object in pool else None
            for each in [owner] if owner else list(pool):
                blamed.setdefault(each, []).append(_describe(error))
        changed = {ref for ref in blamed if _changed(ref, pool, previously)}
        targets = changed or set(blamed)
        for ref in targets:
            problems.setdefault(ref, []).extend(blamed[ref])
            reasons.setdefault(ref, INVALID)
        _set_aside(targets, pool, previously)

    outcome = Outcome(config=config, credentials=credentials, served=pool)
    for ref, candidate in candidates.items():
        outcome.verdicts[ref] = _verdict(
            candidate, pool.get(ref), reasons.get(ref), problems.get(ref, [])
        )
    return outcome


def rejected_by_envoy(
    candidates: Mapping[str, Candidate],
    outcome: Outcome,
    previously: Mapping[str, Served],
    detail: str,
) -> dict[str, Verdict]:
    """Verdicts when Envoy refused the whole outcome: the objects that changed are
    blamed (nothing else did), and everything keeps serving what it served before."""
    verdicts = dict(outcome.verdicts)
    for ref, candidate in candidates.items():
        if _changed(ref, outcome.served, previously):
            served = previously.get(ref)
            verdicts[ref] = _verdict(candidate, served, ENVOY_REJECTED, [detail])
    return verdicts


def _verdict(
    candidate: Candidate, served: Served | None, reason: str | None, problems: list[str]
) -> Verdict:
    if reason is None and served is not None and served.generation == candidate.generation:
        return Verdict(True, ACCEPTED, "serving", candidate.generation)
    message = "; ".join(dict.fromkeys(problems)) or "not served"
    if served is None:
        message += "; not served"
    else:
        message += f"; still serving generation {served.generation}"
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    return Verdict(False, reason or INVALID, message, candidate.generation)


def _changed(ref: str, pool: Mapping[str, Served], previously: Mapping[str, Served]) -> bool:
    before = previously.get(ref)
    now = pool.get(ref)
    return before is None or now is None or before.obj != now.obj


def _set_aside(refs: set[str], pool: dict[str, Served], previously: Mapping[str, Served]) -> None:
    """Roll each back to its last accepted generation, or drop it if it has none (or
    is already there)."""
    for ref in refs:
        before = previously.get(ref)
        if before is not None and pool.get(ref) is not None and pool[ref].obj != before.obj:
            pool[ref] = before
        else:
            pool.pop(ref, None)


def _describe(error: ConfigError) -> str:
    """The error as its object's status says it: the object is implied."""
    return f"{error.field}: {error.message}" if error.field else error.message
