"""Agents, LLMProviders and Gateways from the Kubernetes API, into the snapshot cache.

Four informers (the three kinds, and Secrets for `auth.secretRef` keys) keep a local
copy of the namespace. Any change marks the copy dirty; after a short quiet period
(`debounce`, so `kubectl apply -f dir/` rebuilds once) the feed judges every object
(k8s.acceptance), has Envoy validate the result, installs it, and writes each
object's `Accepted` condition. A rebuild whose inputs did not change (our own status
writes come back as watch events) only re-checks the statuses.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client

from meshroute.control_plane.envoy_gate import envoy_refusal
from meshroute.control_plane.k8s.acceptance import (
    Candidate,
    Outcome,
    Served,
    Verdict,
    config_document,
    decide,
    rejected_by_envoy,
)
from meshroute.control_plane.k8s.api import (
    CONFIG_KINDS,
    SECRETS,
    KubeApiError,
    ResourceClient,
)
from meshroute.control_plane.k8s.informer import Informer
from meshroute.control_plane.metrics import ControlPlaneMetrics
from meshroute.control_plane.service import report_snapshot
from meshroute.control_plane.translate.deployment import DeploymentSettings
from meshroute.control_plane.translate.snapshot import Resources, translate
from meshroute.control_plane.xds.snapshot import SnapshotCache
from meshroute.lifecycle import Backoff

log = logging.getLogger("meshroute.control_plane.kubernetes")

DEBOUNCE_SECONDS = 0.2
CONDITION = "Accepted"


@dataclass(frozen=True)
class ApiSecrets:
    """Secret keys as the API server returned them (base64 in `data`)."""

    namespace: str
    secrets: Mapping[str, Mapping[str, Any]]

    def read(self, secret: str, key: str) -> str | None:
        encoded = (self.secrets.get(secret, {}).get("data") or {}).get(key)
        if not isinstance(encoded, str):
            return None
        try:
            return base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None

    def describe(self, secret: str, key: str) -> str:
        return f"key {key!r} of Secret {self.namespace}/{secret}"


@dataclass(frozen=True)
class Judgement:
    """One rebuild's result: what to serve (None: keep serving what is served), and
    what each object's status should say."""

    resources: Resources | None
    served: dict[str, Served]
    verdicts: dict[str, Verdict]


class KubernetesFeed:
    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        settings: DeploymentSettings,
        debounce: float = DEBOUNCE_SECONDS,
    ) -> None:
        self.namespace = namespace
        self._settings = settings
        self._debounce = debounce
        self._dirty = asyncio.Event()
        self._clients = {kind.kind: ResourceClient(api, kind, namespace) for kind in CONFIG_KINDS}
        self._informers = {
            name: Informer(resource, self._dirty.set) for name, resource in self._clients.items()
        }
        self._secrets = Informer(ResourceClient(api, SECRETS, namespace), self._dirty.set)
        self._status_backoff = Backoff()
        self._built_from: str | None = None
        self._served: dict[str, Served] = {}
        self._verdicts: dict[str, Verdict] = {}

    async def run(self, cache: SnapshotCache, metrics: ControlPlaneMetrics) -> None:
        informers = [*self._informers.values(), self._secrets]
        tasks = [asyncio.create_task(informer.run()) for informer in informers]
        try:
            await asyncio.gather(*(informer.synced.wait() for informer in informers))
            log.info("listed agents, llmproviders, gateways and secrets in %s", self.namespace)
            while True:
                self._dirty.clear()
                await self._rebuild(cache, metrics)
                await self._dirty.wait()
                await asyncio.sleep(self._debounce)  # let a burst of changes settle
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _candidates(self) -> dict[str, Candidate]:
        candidates: dict[str, Candidate] = {}
        for kind, informer in self._informers.items():
            for name, raw in informer.objects.items():
                ref = f"{kind}/{name}"
                generation = int(raw.get("metadata", {}).get("generation") or 0)
                candidates[ref] = Candidate(ref, generation, config_document(raw))
        return candidates

    async def _rebuild(self, cache: SnapshotCache, metrics: ControlPlaneMetrics) -> None:
        candidates = self._candidates()
        secrets = ApiSecrets(self.namespace, dict(self._secrets.objects))
        inputs = _fingerprint(candidates, secrets)
        if inputs != self._built_from:
            started = time.perf_counter()
            try:
                judgement = await asyncio.to_thread(self._judge, candidates, secrets)
            except Exception:  # a bug must not end the control plane's service
                log.exception("rebuilding the config failed; still serving the last one")
                return
            self._built_from = inputs
            self._log_verdicts(judgement.verdicts)
            self._verdicts = judgement.verdicts
            refused = sum(1 for verdict in judgement.verdicts.values() if not verdict.accepted)
            metrics.rejected_objects.set(refused)
            if judgement.resources is None:
                metrics.reloaded("rejected")
            else:
                before = cache.current if cache.served_version is not None else None
                after = cache.set_resources(judgement.resources)
                report_snapshot(
                    before, after, started, metrics, "partial" if refused else "accepted"
                )
                self._served = judgement.served
        await self._write_statuses()

    def _judge(self, candidates: Mapping[str, Candidate], secrets: ApiSecrets) -> Judgement:
        """decide, translate, and ask Envoy; runs in a worker thread."""
        outcome: Outcome = decide(candidates, self._served, secrets)
        resources = translate(outcome.config, self._settings, outcome.credentials)
        refusal = envoy_refusal(resources)
        if refusal is None:
            return Judgement(resources, outcome.served, outcome.verdicts)
        log.error("Envoy's validation refuses the new config; still serving the last: %s", refusal)
        verdicts = rejected_by_envoy(candidates, outcome, self._served, refusal)
        return Judgement(None, self._served, verdicts)

    def _log_verdicts(self, verdicts: Mapping[str, Verdict]) -> None:
        for ref, verdict in sorted(verdicts.items()):
            if self._verdicts.get(ref) == verdict:
                continue
            if verdict.accepted:
                log.info("%s generation %d accepted", ref, verdict.generation)
            else:
                log.error(
                    "%s generation %d REJECTED (%s): %s",
                    ref,
                    verdict.generation,
                    verdict.reason,
                    verdict.message,
                )

    async def _write_statuses(self) -> None:
        """Patch every object whose Accepted condition is not yet what it should be."""
        failed = False
        for ref, verdict in self._verdicts.items():
            kind, name = ref.split("/", 1)
            raw = self._informers[kind].objects.get(name)
            if raw is None:
                continue  # deleted meanwhile
            status = _desired_status(raw, verdict)
            if status is None:
                continue
            try:
                await self._clients[kind].patch_status(name, status)
            except KubeApiError as error:
                if error.status == 404:
                    continue  # deleted meanwhile; the watch will say so
                log.warning("cannot write the status of %s: %s", ref, error)
                failed = True
        if failed:  # try again later, even if nothing else changes
            asyncio.get_running_loop().call_later(
                self._status_backoff.next_delay(), self._dirty.set
            )
        else:
            self._status_backoff.reset()


def _desired_status(raw: Mapping[str, Any], verdict: Verdict) -> dict[str, Any] | None:
    """The status to write, or None if the object already says it."""
    existing = next(
        (
            condition
            for condition in (raw.get("status") or {}).get("conditions") or []
            if isinstance(condition, dict) and condition.get("type") == CONDITION
        ),
        None,
    )
    condition = {
        "type": CONDITION,
        "status": "True" if verdict.accepted else "False",
        "reason": verdict.reason,
        "message": verdict.message,
        "observedGeneration": verdict.generation,
    }
    if existing is not None and all(existing.get(key) == value for key, value in condition.items()):
        return None
    if existing is not None and existing.get("status") == condition["status"]:
        transition = existing.get("lastTransitionTime")
    else:
        transition = None
    condition["lastTransitionTime"] = transition or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"conditions": [condition]}


def _fingerprint(candidates: Mapping[str, Candidate], secrets: ApiSecrets) -> str:
    """Everything a rebuild reads: objects and the Secrets they name. Equal fingerprint,
    equal outcome."""
    named = sorted(
        {
            str(ref["name"])
            for candidate in candidates.values()
            for ref in _secret_refs(candidate.document)
            if isinstance(ref, dict) and "name" in ref
        }
    )
    inputs = {
        "objects": {
            ref: [candidate.generation, candidate.document]
            for ref, candidate in sorted(candidates.items())
        },
        "secrets": {name: (secrets.secrets.get(name) or {}).get("data") for name in named},
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def _secret_refs(document: Mapping[str, Any]) -> list[object]:
    """The `secretRef`s an object names: an LLMProvider's `auth.secretRef`, a Gateway's
    `auth.apiKeys[].secretRef` (unchecked documents: anything may be anything)."""
    spec = document.get("spec")
    auth = spec.get("auth") if isinstance(spec, dict) else None
    if not isinstance(auth, dict):
        return []
    keys = auth.get("apiKeys")
    entries = [auth, *(keys if isinstance(keys, list) else [])]
    return [entry.get("secretRef") for entry in entries if isinstance(entry, dict)]
