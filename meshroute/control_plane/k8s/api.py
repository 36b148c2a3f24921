"""The Kubernetes API as the control plane uses it: list, watch and status patches for
a few resources in one namespace, over kubernetes-asyncio's authenticated client.

Responses are read raw (`_preload_content=False`): a watch is a stream of JSON lines,
parsed here one event at a time, and every failure (an HTTP error status, an ERROR
event, a dropped connection) becomes one exception type, KubeApiError, carrying the
HTTP code (0 for the connection itself) so callers can tell "410 Gone: list again"
from "try again later".
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config

from meshroute.control_plane.k8s.crds import GROUP, VERSION
from meshroute.control_plane.k8s.crds import KINDS as CRD_KINDS

FIELD_MANAGER = "meshroute-control-plane"
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")

GONE = 410
"""The resourceVersion a watch asked for is older than the server keeps: list again."""


@dataclass(frozen=True)
class ResourceKind:
    """One namespaced resource type the control plane reads."""

    kind: str
    plural: str
    custom: bool = True
    """A meshroute.io custom resource (False: a core/v1 resource, i.e. Secret)."""


CONFIG_KINDS = tuple(ResourceKind(kind.name, kind.plural) for kind in CRD_KINDS)
AGENTS, LLM_PROVIDERS, GATEWAYS = CONFIG_KINDS
SECRETS = ResourceKind("Secret", "secrets", custom=False)


class KubeApiError(Exception):
    """A request to the API server failed; `status` is its HTTP code, 0 if none came."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status} {message}" if status else message)
        self.status = status


@dataclass(frozen=True)
class WatchEvent:
    type: str
    """ADDED, MODIFIED, DELETED or BOOKMARK (ERROR events are raised as KubeApiError)."""
    object: dict[str, Any]

    @property
    def resource_version(self) -> str | None:
        version = self.object.get("metadata", {}).get("resourceVersion")
        return str(version) if version else None


@dataclass(frozen=True)
class ClusterAccess:
    """How to reach the API server: from inside a pod (its service account), or with a
    kubeconfig file as kubectl would."""

    kubeconfig: str | None = None
    """None: in-cluster when running in a pod, else $KUBECONFIG or ~/.kube/config."""
    context: str | None = None
    service_account_dir: Path = SERVICE_ACCOUNT_DIR
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

    @property
    def in_cluster(self) -> bool:
        return self.kubeconfig is None and bool(self.environ.get("KUBERNETES_SERVICE_HOST"))


async def connect(access: ClusterAccess) -> tuple[client.ApiClient, str]:
    """An authenticated API client, and the namespace this identity works in (the pod's,
    or the kubeconfig context's, else "default")."""
    configuration = client.Configuration()
    try:
        if access.in_cluster:
            config.incluster_config.InClusterConfigLoader(
                token_filename=str(access.service_account_dir / "token"),
                cert_filename=str(access.service_account_dir / "ca.crt"),
                environ=dict(access.environ),
            ).load_and_set(configuration)
            namespace = _read_text(access.service_account_dir / "namespace") or "default"
        else:
            kubeconfig = _kubeconfig_files(access)
            await config.load_kube_config(
                config_file=kubeconfig,
                context=access.context,
                client_configuration=configuration,
                persist_config=False,
            )
            contexts, active = config.list_kube_config_contexts(kubeconfig)
            named = [c for c in contexts if access.context and c.get("name") == access.context]
            context = named[0] if named else active or {}
            namespace = context.get("context", {}).get("namespace") or "default"
    except (config.ConfigException, OSError, ValueError, TypeError) as error:
        where = "in-cluster service account" if access.in_cluster else "kubeconfig"
        raise KubeApiError(0, f"cannot load the {where}: {error}") from None
    return client.ApiClient(configuration), namespace


def _kubeconfig_files(access: ClusterAccess) -> str:
    """The kubeconfig path(s) kubectl would read, if any of them exists."""
    kubeconfig = (
        access.kubeconfig
        or access.environ.get("KUBECONFIG")
        or os.path.expanduser("~/.kube/config")
    )
    if not any(os.path.isfile(path) for path in kubeconfig.split(os.pathsep)):
        raise config.ConfigException(
            f"no such file: {kubeconfig} (pass --kubeconfig, set KUBECONFIG, "
            "or run in a pod with a service account)"
        )
    return kubeconfig


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return ""


class ResourceClient:
    """List, watch and patch the status of one kind of resource in one namespace."""

    def __init__(self, api: client.ApiClient, kind: ResourceKind, namespace: str) -> None:
        self.kind = kind
        self.namespace = namespace
        self._custom = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)

    def describe(self) -> str:
        return f"{self.kind.plural} in namespace {self.namespace}"

    async def _request(self, **query: Any) -> aiohttp.ClientResponse:
        try:
            if self.kind.custom:
                response = await self._custom.list_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    self.namespace,
                    self.kind.plural,
                    _preload_content=False,
                    **query,
                )
            else:
                response = await self._core.list_namespaced_secret(
                    self.namespace, _preload_content=False, **query
                )
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            raise KubeApiError(0, f"cannot reach the API server: {error}") from None
        assert isinstance(response, aiohttp.ClientResponse)
        if response.status != 200:
            body = await response.read()
            response.release()
            raise KubeApiError(response.status, _status_message(body))
        return response

    async def list(self) -> tuple[list[dict[str, Any]], str]:
        """Every object now, and the resourceVersion to watch from."""
        response = await self._request(_request_timeout=60)
        try:
            listing = json.loads(await response.read())
        except (TimeoutError, aiohttp.ClientError, ValueError) as error:
            raise KubeApiError(0, f"listing {self.describe()} failed: {error}") from None
        finally:
            response.release()
        items = listing.get("items") or []
        return list(items), str(listing.get("metadata", {}).get("resourceVersion", ""))

    async def watch(self, resource_version: str, timeout_seconds: int) -> AsyncIterator[WatchEvent]:
        """Changes after `resource_version` until the server ends the watch (after about
        `timeout_seconds`). Raises KubeApiError(410) when that version is too old."""
        response = await self._request(
            watch=True,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout_seconds,
            # A silent connection longer than this is a dead one (bookmarks come every
            # minute or so); the server itself ends the watch after timeout_seconds.
            _request_timeout=aiohttp.ClientTimeout(sock_connect=10, sock_read=timeout_seconds + 30),
        )
        try:
            async for line in response.content:
                if line.strip():
                    yield _watch_event(line)
        except (TimeoutError, aiohttp.ClientError, ValueError) as error:  # ValueError: a huge line
            raise KubeApiError(0, f"watch on {self.describe()} dropped: {error}") from None
        finally:
            response.close()

    async def patch_status(self, name: str, status: dict[str, Any]) -> None:
        """Merge `status` into the object's status subresource."""
        try:
            await self._custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                self.namespace,
                self.kind.plural,
                name,
                {"status": status},
                field_manager=FIELD_MANAGER,
                # Custom resources take no strategic merge patch, and the client would
                # otherwise label a dict body as a JSON patch; its stub omits the option.
                _content_type="application/merge-patch+json",  # type: ignore[call-arg]
                _request_timeout=30,
            )
        except client.ApiException as error:
            raise KubeApiError(error.status or 0, _status_message(error.body)) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            raise KubeApiError(0, f"cannot reach the API server: {error}") from None


def _watch_event(line: bytes) -> WatchEvent:
    try:
        event = json.loads(line)
        kind, obj = event["type"], event["object"]
    except (ValueError, KeyError, TypeError):
        raise KubeApiError(0, f"malformed watch event: {line[:200]!r}") from None
    if kind == "ERROR":
        raise KubeApiError(int(obj.get("code") or 0), str(obj.get("message") or obj))
    if kind not in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK") or not isinstance(obj, dict):
        raise KubeApiError(0, f"unexpected watch event type {kind!r}")
    return WatchEvent(type=kind, object=obj)


def _status_message(body: bytes | str | None) -> str:
    """The message of a Kubernetes Status body, or the start of whatever came."""
    if not body:
        return "(no message)"
    try:
        status = json.loads(body)
        return str(status.get("message") or status.get("reason") or status)
    except (ValueError, AttributeError):
        text = body.decode(errors="replace") if isinstance(body, bytes) else body
        return text[:200]
