"""A stand-in Kubernetes API server: list, watch and status for meshroute's kinds and
Secrets, in the shape the real one speaks.

No real API server can run here, so this one implements what the control plane uses,
as kube-apiserver does it:

- LIST returns `{kind}List` with `metadata.resourceVersion`; every object carries
  uid, resourceVersion, generation (bumped by spec changes only, as with a status
  subresource), creationTimestamp.
- WATCH (`?watch=true&resourceVersion=N`) streams newline-delimited JSON events
  after N over chunked HTTP, BOOKMARKs only if `allowWatchBookmarks=true`, and ends
  the stream after `timeoutSeconds`. A resourceVersion older than the kept history
  gets HTTP 200 and one ERROR event with a 410 "Expired" Status, then the end.
- PATCH `.../{name}/status` takes `application/merge-patch+json` only (415
  otherwise) and changes only `.status` (bumping resourceVersion, not generation).
- Bearer-token authentication (401 Status otherwise); a missing kind is 404.
- With `admission` (the CRD schemas), objects that break them are refused as the API
  server would (`apply` raises Refused), so what reaches the control plane is what a
  real cluster would let through.

Tests drive it from their own thread: `apply`, `delete`, `bookmark`, `compact`
(forget history, so older watches get 410), `drop_watches` (cut every open watch
connection), and read `requests` to see what the client asked.
"""

from __future__ import annotations

import asyncio
import copy
import json
import ssl
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from tests.support.threaded_server import ThreadedServer

T = TypeVar("T")

GROUP_PATH = "/apis/meshroute.io/v1alpha1"
PLURALS = {"Agent": "agents", "LLMProvider": "llmproviders", "Gateway": "gateways"}
KINDS = {plural: kind for kind, plural in PLURALS.items()}


class Refused(Exception):
    """What the API server's admission would answer 422 to."""


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, str]
    content_type: str


class FakeKubeApi:
    def __init__(
        self,
        namespace: str = "default",
        token: str = "test-token",
        admission: Callable[[dict[str, Any]], list[str]] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """`admission`: what is wrong with a custom resource (nothing: store it)."""
        self.namespace = namespace
        self.token = token
        self.requests: list[Request] = []
        self._admission = admission
        self._objects: dict[str, dict[str, dict[str, Any]]] = {
            plural: {} for plural in [*KINDS, "secrets"]
        }
        self._history: list[tuple[int, str, str, dict[str, Any]]] = []
        self._oldest_kept = 0
        """Watches from a resourceVersion below this get 410 Gone."""
        self._version = 100
        self._failures: list[int] = []
        self._watchers: list[tuple[str, asyncio.Queue[dict[str, Any] | None], web.Request]] = []
        app = web.Application(middlewares=[self._authenticate])
        app.router.add_get(GROUP_PATH + "/namespaces/{namespace}/{plural}", self._list_or_watch)
        app.router.add_get("/api/v1/namespaces/{namespace}/{plural}", self._list_or_watch)
        app.router.add_patch(
            GROUP_PATH + "/namespaces/{namespace}/{plural}/{name}/status", self._patch_status
        )
        self._server = ThreadedServer(app, ssl_context=ssl_context)
        self._loop = self._server.loop

    # ------------------------------------------------------------------ test side

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def resource_version(self) -> str:
        """The latest resourceVersion handed out."""
        return self._call(lambda: str(self._version))

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create or update (as `kubectl apply` would); returns the stored object."""
        return self._call(self._apply, copy.deepcopy(dict(obj)))

    def delete(self, kind: str, name: str) -> None:
        self._call(self._delete, self._plural(kind), name)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        return self._call(self._get, self._plural(kind), name)

    def bookmark(self) -> None:
        """Send every watch that asked for bookmarks the current resourceVersion."""
        self._call(self._bookmark)

    def compact(self) -> None:
        """Forget the event history, as etcd compaction does."""
        self._call(self._compact)

    def drop_watches(self) -> int:
        """Cut every open watch connection mid-stream; returns how many there were."""
        return self._call(self._drop_watches)

    def while_disconnected(
        self,
        apply: Sequence[Mapping[str, Any]] = (),
        delete: Sequence[tuple[str, str]] = (),
        compact: bool = False,
    ) -> None:
        """Cut every watch, then apply and delete objects (and compact the history)
        before any client can watch again: the changes are missed unless the client
        resumes from the right resourceVersion, or lists again after a 410."""

        def cut_then_change() -> None:
            self._drop_watches()
            for obj in apply:
                self._apply(copy.deepcopy(dict(obj)))
            for kind, name in delete:
                self._delete(self._plural(kind), name)
            if compact:
                self._compact()

        self._call(cut_then_change)

    def fail_next(self, count: int, status: int = 500) -> None:
        """Answer the next `count` requests with `status`, as an overloaded server."""

        def arm() -> None:
            self._failures = [status] * count

        self._call(arm)

    def open_watches(self, kind: str) -> int:
        plural = self._plural(kind)
        return self._call(lambda: sum(1 for p, _, _ in self._watchers if p == plural))

    def kubeconfig(self, ca_file: str | None = None) -> str:
        cluster = {"server": self.url}
        if ca_file:
            cluster["certificate-authority"] = ca_file
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": cluster}],
                "users": [{"name": "tester", "user": {"token": self.token}}],
                "contexts": [
                    {
                        "name": "fake",
                        "context": {
                            "cluster": "fake",
                            "user": "tester",
                            "namespace": self.namespace,
                        },
                    }
                ],
                "current-context": "fake",
            }
        )

    def close(self) -> None:
        self._call(self._drop_watches)
        self._server.close()

    def _call(self, function: Callable[..., T], *args: Any) -> T:
        async def invoke() -> T:
            return function(*args)

        return self._run(invoke())

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    @staticmethod
    def _plural(kind: str) -> str:
        return "secrets" if kind == "Secret" else PLURALS[kind]

    # ------------------------------------------------------------------ state

    def _next_version(self) -> int:
        self._version += 1
        return self._version

    def _apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        kind = obj.get("kind", "")
        plural = self._plural(kind)
        if self._admission is not None and plural != "secrets":
            problems = self._admission(obj)
            if problems:
                raise Refused(f"{kind} is invalid: {'; '.join(problems)}")
        metadata = obj.setdefault("metadata", {})
        name = metadata["name"]
        metadata["namespace"] = self.namespace
        existing = self._objects[plural].get(name)
        version = self._next_version()
        if existing is None:
            metadata.update(
                uid=str(uuid.uuid4()),
                generation=1,
                creationTimestamp="2026-11-24T00:00:00Z",
            )
            event = "ADDED"
        else:
            old_meta = existing["metadata"]
            metadata.update(uid=old_meta["uid"], creationTimestamp=old_meta["creationTimestamp"])
            changed = _content(existing) != _content(obj)
            metadata["generation"] = old_meta["generation"] + (1 if changed else 0)
            if "status" in existing:  # the main resource cannot change status
                obj["status"] = existing["status"]
            else:
                obj.pop("status", None)
            event = "MODIFIED"
        metadata["resourceVersion"] = str(version)
        self._objects[plural][name] = obj
        self._emit(version, plural, event, obj)
        return copy.deepcopy(obj)

    def _delete(self, plural: str, name: str) -> None:
        obj = self._objects[plural].pop(name)
        version = self._next_version()
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(version)
        self._emit(version, plural, "DELETED", obj)

    def _get(self, plural: str, name: str) -> dict[str, Any] | None:
        found = self._objects[plural].get(name)
        return copy.deepcopy(found) if found is not None else None

    def _emit(self, version: int, plural: str, event: str, obj: dict[str, Any]) -> None:
        snapshot = copy.deepcopy(obj)
        self._history.append((version, plural, event, snapshot))
        for watched, queue, _ in self._watchers:
            if watched == plural:
                queue.put_nowait({"type": event, "object": snapshot})

    def _bookmark(self) -> None:
        for plural, queue, request in self._watchers:
            if query_flag(request.query.get("allowWatchBookmarks")):
                queue.put_nowait(
                    {
                        "type": "BOOKMARK",
                        "object": {
                            "kind": KINDS.get(plural, "Secret"),
                            "apiVersion": "meshroute.io/v1alpha1" if plural in KINDS else "v1",
                            "metadata": {"resourceVersion": str(self._version)},
                        },
                    }
                )

    def _compact(self) -> None:
        self._history.clear()
        self._oldest_kept = self._version

    def _drop_watches(self) -> int:
        count = len(self._watchers)
        for _, queue, _ in self._watchers:
            queue.put_nowait(None)  # None: cut the connection
        return count

    # ------------------------------------------------------------------ HTTP side

    @web.middleware
    async def _authenticate(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        self.requests.append(
            Request(request.method, request.path, dict(request.query), request.content_type)
        )
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _status(401, "Unauthorized", "Unauthorized")
        if self._failures:
            return _status(self._failures.pop(), "InternalError", "the server is overloaded")
        response: web.StreamResponse = await handler(request)
        return response

    async def _list_or_watch(self, request: web.Request) -> web.StreamResponse:
        plural = request.match_info["plural"]
        if plural not in self._objects or (
            request.path.startswith("/api/v1/") != (plural == "secrets")
        ):
            return _status(404, "NotFound", "the server could not find the requested resource")
        same_namespace = request.match_info["namespace"] == self.namespace
        if query_flag(request.query.get("watch")):
            return await self._watch(request, plural, same_namespace)
        items = list(self._objects[plural].values()) if same_namespace else []
        kind = KINDS.get(plural, "Secret")
        return web.json_response(
            {
                "kind": f"{kind}List",
                "apiVersion": "v1" if plural == "secrets" else "meshroute.io/v1alpha1",
                "metadata": {"resourceVersion": str(self._version)},
                "items": items,
            }
        )

    async def _watch(
        self, request: web.Request, plural: str, same_namespace: bool
    ) -> web.StreamResponse:
        since = int(request.query.get("resourceVersion") or self._version)
        response = web.StreamResponse()
        response.content_type = "application/json"
        await response.prepare(request)
        if since < self._oldest_kept:
            await _send(
                response,
                {
                    "type": "ERROR",
                    "object": {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Failure",
                        "message": f"too old resource version: {since} ({self._oldest_kept})",
                        "reason": "Expired",
                        "code": 410,
                    },
                },
            )
            await response.write_eof()
            return response
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        if same_namespace:
            for version, watched, event, obj in self._history:
                if watched == plural and version > since:
                    queue.put_nowait({"type": event, "object": obj})
        entry = (plural, queue, request)
        self._watchers.append(entry)
        timeout = float(request.query.get("timeoutSeconds") or 1800)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    event = await queue.get()
                    if event is None:
                        assert request.transport is not None
                        request.transport.abort()  # the connection drops mid-stream
                        return response
                    await _send(response, event)
        except TimeoutError:
            pass  # the server ends a watch after timeoutSeconds
        finally:
            self._watchers.remove(entry)
        await response.write_eof()
        return response

    async def _patch_status(self, request: web.Request) -> web.StreamResponse:
        plural, name = request.match_info["plural"], request.match_info["name"]
        if request.content_type != "application/merge-patch+json":
            return _status(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format: {request.content_type}",
            )
        obj = self._objects.get(plural, {}).get(name)
        if obj is None or request.match_info["namespace"] != self.namespace:
            return _status(404, "NotFound", f'{plural} "{name}" not found')
        patch = await request.json()
        if "status" in patch:
            obj["status"] = _merge(obj.get("status") or {}, patch["status"])
        version = self._next_version()
        obj["metadata"]["resourceVersion"] = str(version)
        self._emit(version, plural, "MODIFIED", obj)
        return web.json_response(obj)


def query_flag(value: str | None) -> bool:
    """A boolean query parameter, read as Go's strconv.ParseBool reads it."""
    return (value or "").lower() in ("1", "t", "true")


def _content(obj: Mapping[str, Any]) -> Any:
    """What bumps generation: everything but metadata and status."""
    return {key: value for key, value in obj.items() if key not in ("metadata", "status")}


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _merge(merged.get(key), value)
    return merged


async def _send(response: web.StreamResponse, event: Mapping[str, Any]) -> None:
    await response.write(json.dumps(event).encode() + b"\n")


def _status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        },
        status=code,
    )
