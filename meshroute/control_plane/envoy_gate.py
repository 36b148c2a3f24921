"""Envoy's own validation as the last gate before a snapshot is served, paid for what changed.

`envoy --mode validate` on every resource of a large config costs about a second and
a half of CPU at 1,000 agents, nearly all of it in building clusters (~0.3 ms each even
for a bare one, ~3 ms with a CA bundle to load). A reload usually changes a handful of
resources, and Envoy has already accepted the rest. So the gate remembers each resource
Envoy accepted, by its exact bytes, and asks Envoy only about the others, inside a
static config that also holds what they need:

* the real clusters a checked resource names outside its routes' targets (a tracer's
  collector, a JWKS fetcher), taken whole, so Envoy sees what it will be served;
* every secret, as a stand-in (they cost nothing);
* for the listeners not checked, stand-ins with the same addresses (a new listener
  on a port another already holds is refused), added first, so that Envoy names the
  new listener, as a running Envoy would.

The clusters routes send to are not added: the internal listener's routes name every
cluster, and building them all is the very cost saved. Envoy reads routes over RDS,
where `validate_clusters` defaults to false and an unknown cluster is not refused; the
checked route configs say so explicitly, and the gate checks that every route's
cluster exists itself, with Envoy's words (a stricter check than a running Envoy's).

A resource counts as accepted only while what it depends on outside its own bytes
is unchanged: the files it names (CA bundles, certificates: by content, since a CA
file rewritten in place keeps its name), the environment variables it reads, and the
clusters and secrets it names, which must still exist. Anything else is checked
again. When nothing is left to check, Envoy is not started at all; when everything is
new (the first load), Envoy checks the whole config exactly as `check_with_envoy`
does, while this process reads what each resource depends on.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.network.direct_response.v3 import config_pb2 as direct_response_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import any_pb2, descriptor, message, symbol_database

from meshroute.control_plane.bootstrap import (
    BootstrapSettings,
    inlined_listener,
    parse_bootstrap,
    rds_names,
    render_bootstrap,
    with_static_secrets,
)
from meshroute.control_plane.translate.snapshot import Resources
from meshroute.envoy_binary import EnvoyNotFound, EnvoyRejected, validate_config

log = logging.getLogger("meshroute.control_plane")

_STRING: Final = descriptor.FieldDescriptor.TYPE_STRING
_MESSAGE: Final = descriptor.FieldDescriptor.TYPE_MESSAGE
_DATA_SOURCE: Final = "envoy.config.core.v3.DataSource"
_ROUTE_ACTION: Final = "envoy.config.route.v3.RouteAction"
_ROUTE: Final = "envoy.config.route.v3.Route"
_SDS_SECRET_CONFIG: Final = "envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig"


@dataclass(frozen=True)
class Dependencies:
    """What Envoy's verdict on one resource rests on, besides its own bytes."""

    names: frozenset[str]
    """Every string in the resource that named a cluster or secret when it was read:
    each must still exist for the verdict to hold."""
    needs: frozenset[str]
    """The names of `names` used other than as a route's target: what a config
    checking this resource must hold for real."""
    route_clusters: frozenset[str]
    """The clusters its routes send to (by name, known or not)."""
    files: frozenset[tuple[str, str | None]]
    """(path, digest of its content or None if unreadable) of each file it names."""
    environment: frozenset[tuple[str, str | None]]
    """(name, digest of its value or None if unset) of each variable it reads."""


class _Unit:
    """One resource in the form Envoy checks it: a cluster with static secrets, or a
    listener with its route configs inlined (built only if it is checked)."""

    def __init__(
        self,
        kind: str,
        original: cluster_pb2.Cluster | listener_pb2.Listener,
        parts: Sequence[message.Message],
        build: Callable[[], cluster_pb2.Cluster | listener_pb2.Listener],
    ) -> None:
        self.kind = kind
        self.name: str = original.name
        self.original = original
        """The resource as served."""
        hasher = hashlib.sha256(kind.encode())
        for part in parts:
            serialized = part.SerializeToString(deterministic=True)
            hasher.update(len(serialized).to_bytes(8, "big"))  # unambiguous boundaries
            hasher.update(serialized)
        self.key = hasher.digest()
        """Digest of the kind and the exact bytes of what Envoy reads."""
        self._build = build

    @functools.cached_property
    def resource(self) -> cluster_pb2.Cluster | listener_pb2.Listener:
        return self._build()


@dataclass(frozen=True)
class CheckReport:
    """What one check asked Envoy about, for the log and the bench."""

    checked_clusters: int
    checked_listeners: int
    referenced_clusters: int
    """Unchanged clusters added because something checked names them."""
    unchanged: int
    seconds: float
    ran_envoy: bool


class EnvoyGate:
    """Remembers what Envoy accepted; `check` asks Envoy about the rest.

    Thread-safe: reloads run in worker threads, and one gate may serve several feeds.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accepted: dict[bytes, Dependencies] = {}
        """Resources (by key) Envoy accepted in the last config it accepted."""
        self._file_digests: dict[str, str | None] = {}
        self._routes = _RouteWalks()

    def check(self, resources: Resources) -> CheckReport:
        """Raise EnvoyRejected (or EnvoyNotFound) unless Envoy accepts `resources`."""
        with self._lock:
            return self._check(resources)

    def forget(self) -> None:
        """Check everything again next time (e.g. the Envoy binary changed)."""
        with self._lock:
            self._accepted.clear()

    def _check(self, resources: Resources) -> CheckReport:
        started = time.perf_counter()
        units = _units(resources)
        secret_names = {secret.name for secret in resources.secrets}
        cluster_names = {unit.name for unit in units if unit.kind == "cluster"}
        known_names = cluster_names | secret_names
        self._file_digests = {}
        good = {unit.key for unit in units if self._still_good(unit.key, known_names)}
        checked = [unit for unit in units if unit.key not in good]
        if not checked:
            return CheckReport(0, 0, 0, len(units), time.perf_counter() - started, False)
        deps: dict[bytes, Dependencies] = {
            unit.key: self._accepted[unit.key] for unit in units if unit.key in good
        }
        new = [unit for unit in units if unit.key not in deps]
        if len(checked) == len(units):
            # Nothing to leave out: Envoy checks it all while we read the dependencies.
            config = _bootstrap(checked, [], [], resources).SerializeToString()
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="envoy-validate") as pool:
                envoy = pool.submit(validate_config, config)
                deps.update(_dependencies(new, known_names, self._routes))
                envoy.result()
            referenced: list[_Unit] = []
        else:
            deps.update(_dependencies(new, known_names, self._routes))
            referenced = _referenced_clusters(checked, units, deps)
            try:
                _check_partially(_Plan(resources, units, checked, referenced, good, deps))
            except EnvoyRejected as refusal:
                # Envoy's verdict on the whole config is the one that counts: a partial
                # config that missed something a resource needs must not refuse it.
                whole = _bootstrap(units, [], [], resources).SerializeToString()
                validate_config(whole)  # raises Envoy's own refusal
                log.warning(
                    "Envoy accepts the whole config but refused a partial check of it "
                    "(a dependency the gate does not know of?): %s",
                    " ".join(str(refusal).split()),
                )
        self._accepted = deps  # only what the config Envoy just accepted holds
        self._routes.turn()
        report = CheckReport(
            checked_clusters=sum(1 for unit in checked if unit.kind == "cluster"),
            checked_listeners=sum(1 for unit in checked if unit.kind == "listener"),
            referenced_clusters=len(referenced),
            unchanged=len(units) - len(checked),
            seconds=time.perf_counter() - started,
            ran_envoy=True,
        )
        log.debug("Envoy's validation: %s", report)
        return report

    def _still_good(self, key: bytes, known_names: set[str]) -> bool:
        deps = self._accepted.get(key)
        if deps is None or not deps.names <= known_names:
            return False
        return all(self._file_digest(path) == digest for path, digest in deps.files) and all(
            _environment_digest(name) == digest for name, digest in deps.environment
        )

    def _file_digest(self, path: str) -> str | None:
        if path not in self._file_digests:
            self._file_digests[path] = _digest_file(path)
        return self._file_digests[path]


@dataclass(frozen=True)
class _Plan:
    """One partial check: what is checked, and what it is checked with."""

    resources: Resources
    units: Sequence[_Unit]
    checked: Sequence[_Unit]
    referenced: Sequence[_Unit]
    """Unchanged clusters that checked resources need."""
    good: set[bytes]
    """Keys of the units Envoy accepted before."""
    deps: Mapping[bytes, Dependencies]


def _check_partially(plan: _Plan) -> None:
    """Ask Envoy about the checked resources alone, with what they need (module
    docstring); EnvoyRejected says why not."""
    targets = {unit.name for unit in plan.units if unit.kind == "cluster"}
    targets |= {cluster.name for cluster in _template().static_resources.clusters}
    _check_route_targets(plan.checked, plan.deps, targets)
    listener_checked = any(unit.kind == "listener" for unit in plan.checked)
    unchecked_listeners = [
        unit
        for unit in plan.units
        if listener_checked and unit.kind == "listener" and unit.key in plan.good
    ]
    config = _bootstrap(
        plan.checked, plan.referenced, unchecked_listeners, plan.resources, partial=True
    )
    validate_config(config.SerializeToString())


# ------------------------------------------------------------------ units and dependencies


def _units(resources: Resources) -> list[_Unit]:
    routes = {route.name: route for route in resources.routes}
    units = []
    for cluster in resources.clusters:
        static = with_static_secrets(cluster)
        units.append(_Unit("cluster", cluster, [static], functools.partial(_itself, static)))
    for listener in resources.listeners:
        # The key: the listener and the route configs it names, as they would be
        # inlined, without inlining them (copying every route) unless it is checked.
        named = [routes[name] for name in rds_names(listener)]
        units.append(
            _Unit(
                "listener",
                listener,
                [listener, *named],
                functools.partial(inlined_listener, listener, routes),
            )
        )
    return units


def _itself(cluster: cluster_pb2.Cluster) -> cluster_pb2.Cluster:
    return cluster


@dataclass
class _Found:
    """What a walk through one resource collects."""

    strings: set[str] = field(default_factory=set)
    """Every string, except the clusters routes send to and what things are called
    (`name` fields; but a secret's name in an SDS reference is a reference)."""
    route_clusters: set[str] = field(default_factory=set)
    files: set[str] = field(default_factory=set)
    environment: set[str] = field(default_factory=set)

    def update(self, other: _Found) -> None:
        self.strings |= other.strings
        self.route_clusters |= other.route_clusters
        self.files |= other.files
        self.environment |= other.environment


class _RouteWalks:
    """What each route held, by its bytes: an edit changes a few routes of a route
    config that may hold thousands (the internal listener's names every upstream),
    so only those are walked again. Holds the routes of the latest walks only."""

    def __init__(self) -> None:
        self.previous: dict[bytes, _Found] = {}
        self.current: dict[bytes, _Found] = {}

    def get(self, key: bytes) -> _Found | None:
        found = self.current.get(key) or self.previous.get(key)
        if found is not None:
            self.current[key] = found
        return found

    def turn(self) -> None:
        """Forget routes not walked since the last turn."""
        self.previous, self.current = self.current, {}


def _dependencies(
    units: Sequence[_Unit], known_names: set[str], routes: _RouteWalks
) -> dict[bytes, Dependencies]:
    found: dict[bytes, Dependencies] = {}
    for unit in units:
        walked = _Found()
        _walk(unit.resource, walked, routes)
        walked.strings.discard(unit.name)
        needs = walked.strings & known_names
        files, environment = walked.files, walked.environment
        found[unit.key] = Dependencies(
            names=frozenset(needs | (walked.route_clusters & known_names)),
            needs=frozenset(needs),
            route_clusters=frozenset(walked.route_clusters),
            files=frozenset((path, _digest_file(path)) for path in files),
            environment=frozenset((name, _environment_digest(name)) for name in environment),
        )
    return found


def _digest_file(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _environment_digest(name: str) -> str | None:
    value = os.environ.get(name)
    return None if value is None else hashlib.sha256(value.encode()).hexdigest()


def _walk(msg: message.Message, found: _Found, routes: _RouteWalks | None = None) -> None:
    """Every string in `msg`, through Any fields too; the clusters its routes send to;
    and the files and environment variables its DataSources read."""
    if isinstance(msg, any_pb2.Any):
        inner = symbol_database.Default().GetSymbol(msg.TypeName())()
        msg.Unpack(inner)
        _walk(inner, found, routes)
        return
    kind = msg.DESCRIPTOR.full_name
    if kind == _ROUTE and routes is not None:
        key = msg.SerializeToString(deterministic=True)
        route = routes.get(key)
        if route is None:
            route = routes.current[key] = _Found()
            _walk(msg, route)
        found.update(route)
        return
    if kind == _ROUTE_ACTION:
        action = msg
        assert isinstance(action, route_components_pb2.RouteAction)
        if action.cluster:
            found.route_clusters.add(action.cluster)
        found.route_clusters.update(c.name for c in action.weighted_clusters.clusters)
    for field_, value in msg.ListFields():
        if field_.type == _STRING:
            if kind == _ROUTE_ACTION and field_.name == "cluster":
                continue
            if field_.name == "name" and kind != _SDS_SECRET_CONFIG:
                continue  # what a thing is called (a route is named after its cluster)
            if field_.is_repeated:
                found.strings.update(value)
                continue
            found.strings.add(value)
            if kind == _DATA_SOURCE and field_.name == "filename":
                found.files.add(value)
            elif kind == _DATA_SOURCE and field_.name == "environment_variable":
                found.environment.add(value)
        elif field_.type == _MESSAGE:
            entry_type = field_.message_type
            if entry_type is not None and entry_type.GetOptions().map_entry:
                for key, item in value.items():
                    if isinstance(key, str):
                        found.strings.add(key)
                    if isinstance(item, str):
                        found.strings.add(item)
                    elif isinstance(item, message.Message):
                        _walk(item, found, routes)
            elif field_.is_repeated:
                for item in value:
                    _walk(item, found, routes)
            else:
                _walk(value, found, routes)


def _check_route_targets(
    checked: Sequence[_Unit], deps: Mapping[bytes, Dependencies], targets: set[str]
) -> None:
    """Every cluster a checked route sends to exists: what Envoy itself checks of a
    static route config, and the partial config turns off (module docstring)."""
    for unit in checked:
        missing = sorted(deps[unit.key].route_clusters - targets)
        if missing:
            raise EnvoyRejected(f"listener {unit.name!r}: route: unknown cluster {missing[0]!r}")


def _referenced_clusters(
    checked: Sequence[_Unit], units: Sequence[_Unit], deps: Mapping[bytes, Dependencies]
) -> list[_Unit]:
    """The unchanged clusters the checked resources name, and those they name in turn."""
    clusters = {unit.name: unit for unit in units if unit.kind == "cluster"}
    included = {unit.name for unit in checked if unit.kind == "cluster"}
    pending = [name for unit in checked for name in deps[unit.key].needs]
    referenced: list[_Unit] = []
    while pending:
        name = pending.pop()
        if name in included or name not in clusters:
            continue  # already in, or a secret (every secret is in)
        included.add(name)
        unit = clusters[name]
        referenced.append(unit)
        pending.extend(deps[unit.key].needs)
    return referenced


# ------------------------------------------------------------------ the config Envoy reads


@functools.cache
def _template_bytes() -> bytes:
    """The bootstrap template as a message, parsed once: it is a file of the package,
    and parsing its YAML (in Python) on every check cost tens of milliseconds."""
    serialized: bytes = parse_bootstrap(render_bootstrap(BootstrapSettings())).SerializeToString()
    return serialized


def _template() -> bootstrap_pb2.Bootstrap:
    return bootstrap_pb2.Bootstrap.FromString(_template_bytes())


def _bootstrap(
    checked: Sequence[_Unit],
    referenced: Sequence[_Unit],
    unchecked_listeners: Sequence[_Unit],
    resources: Resources,
    *,
    partial: bool = False,
) -> bootstrap_pb2.Bootstrap:
    """A static config of `checked` and what it needs; `partial`: not every cluster
    is in it, so route configs do not ask Envoy to look their clusters up."""
    bootstrap = _template()
    bootstrap.ClearField("dynamic_resources")
    static = bootstrap.static_resources
    del static.listeners[:]  # only what the control plane serves
    for unit in unchecked_listeners:
        assert isinstance(unit.original, listener_pb2.Listener)
        static.listeners.append(_stand_in_listener(unit.original))
    for unit in [*checked, *referenced]:
        if isinstance(unit.resource, cluster_pb2.Cluster):
            static.clusters.append(unit.resource)
        elif partial:
            static.listeners.append(_without_cluster_lookups(unit.resource))
        else:
            static.listeners.append(unit.resource)
    for secret in resources.secrets:
        stand_in = static.secrets.add(name=secret.name)
        stand_in.generic_secret.secret.inline_string = "REDACTED"
    return bootstrap


def _without_cluster_lookups(listener: listener_pb2.Listener) -> listener_pb2.Listener:
    """`listener` with its inlined route configs set not to look their clusters up,
    as Envoy does with route configs it reads over RDS."""
    copy = listener_pb2.Listener()
    copy.CopyFrom(listener)
    for chain in copy.filter_chains:
        for network_filter in chain.filters:
            manager = hcm_pb2.HttpConnectionManager()
            if network_filter.typed_config.Unpack(manager) and manager.HasField("route_config"):
                manager.route_config.validate_clusters.value = False
                network_filter.typed_config.Pack(manager)
    return copy


def _stand_in_listener(listener: listener_pb2.Listener) -> listener_pb2.Listener:
    """The listener's name and addresses, with one trivial filter chain: enough for
    Envoy to refuse a new listener that takes its address, at no cost."""
    stand_in = listener_pb2.Listener()
    stand_in.CopyFrom(listener)
    stand_in.ClearField("filter_chains")
    stand_in.ClearField("default_filter_chain")
    stand_in.ClearField("filter_chain_matcher")
    stand_in.ClearField("listener_filters")
    reply = listener_components_pb2.Filter(name="envoy.filters.network.direct_response")
    reply.typed_config.Pack(direct_response_pb2.Config())
    stand_in.filter_chains.add().filters.append(reply)
    return stand_in


DEFAULT_GATE: Final = EnvoyGate()
"""The gate `envoy_refusal` uses: what Envoy accepted holds for the whole process."""

_said_envoy_missing = False


def envoy_refusal(resources: Resources, gate: EnvoyGate = DEFAULT_GATE) -> str | None:
    """Why Envoy would refuse these resources, on one line; None if it accepts them, or
    if there is no Envoy binary here to ask (said once in the log)."""
    global _said_envoy_missing  # noqa: PLW0603
    try:
        gate.check(resources)
    except EnvoyNotFound as missing:
        if not _said_envoy_missing:
            log.warning("not checking configs with Envoy: %s", missing)
            _said_envoy_missing = True
    except EnvoyRejected as rejected:
        return " ".join(str(rejected).split())
    return None
