"""The Kubernetes deployment under deploy/: manifests, kustomize trees, the sidecars'
Envoy bootstrap and the Dockerfile.

Every Kubernetes object is checked against the API schema of a pinned Kubernetes
version (strict: unknown fields are errors); kustomize files, which are not objects,
are checked for what they reference. Beyond the schema: least-privilege RBAC,
hardened containers with probes, a bootstrap that is envoy/bootstrap.yaml filled in
and that Envoy accepts, and ports, addresses and names that agree across files.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import string
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import trustme
import yaml
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from meshroute.control_plane.bootstrap import (
    XDS_CLUSTER,
    BootstrapSettings,
    parse_bootstrap,
    render_bootstrap,
)
from meshroute.control_plane.config import load_config
from meshroute.envoy_binary import validate_config
from meshroute.xds_tls import XdsClientTls
from tests.support.certs import write_cert
from tests.support.crd_schema import schema_errors

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S_VERSION = "1.31"
"""The Kubernetes API the manifests are checked against (they need 1.29 or newer)."""

IMAGE = "ghcr.io/meshroute/meshroute:0.1.0"
UID = 10001
"""The Dockerfile's user; pods run meshroute containers as it."""

NAMESPACE = "meshroute-system"
CONTROL_PLANE = "meshroute-control-plane"
CONTROL_PLANE_DNS = f"{CONTROL_PLANE}.{NAMESPACE}.svc.cluster.local"
XDS_PORT = 18000
EXT_PROC_PORT = 18001
INTERNAL_PORT = 18010
ADMIN_PORT = 9901
HEALTH_PORT = 15021
SIDECAR_PORTS = {ADMIN_PORT, HEALTH_PORT, EXT_PROC_PORT, INTERNAL_PORT}

BOOTSTRAP_FILE = DEPLOY / "sidecar" / "envoy.yaml"
PLAIN_EXAMPLE = "examples/app-with-sidecars.yaml"
"""The app with its sidecars written out, without kustomize."""
BOOTSTRAP_VALUES: dict[str, object] = {
    "NODE_ID": "meshroute-sidecar",
    "NODE_CLUSTER": "meshroute",
    "ADMIN_ADDRESS": "127.0.0.1",
    "ADMIN_PORT": ADMIN_PORT,
    "XDS_ADDRESS": CONTROL_PLANE_DNS,
    "XDS_PORT": XDS_PORT,
    "XDS_API_TYPE": "GRPC",
    "EXT_PROC_ADDRESS": "127.0.0.1",
    "EXT_PROC_PORT": EXT_PROC_PORT,
    "HEALTH_ADDRESS": "0.0.0.0",
    "HEALTH_PORT": HEALTH_PORT,
}
"""What deploy/sidecar/envoy.yaml writes into envoy/bootstrap.yaml's placeholders."""

SIDECAR_BOOTSTRAP = BootstrapSettings(
    node_id="meshroute-sidecar",
    xds_address=CONTROL_PLANE_DNS,
    xds_port=XDS_PORT,
    ext_proc_port=EXT_PROC_PORT,
    admin_port=ADMIN_PORT,
    health_address="0.0.0.0",
    health_port=HEALTH_PORT,
)
"""The same values, as `meshroute bootstrap` takes them."""

MTLS = DEPLOY / "xds-mtls"
MTLS_BOOTSTRAP_FILE = MTLS / "sidecar" / "envoy.yaml"
XDS_TLS_DIR = "/etc/meshroute-xds-tls"
"""Where the optional mTLS components mount the xDS certificates (a Secret's
tls.crt, tls.key and ca.crt), in the control plane and in both sidecars."""
SIDECAR_XDS_TLS = XdsClientTls(
    server_ca_file=f"{XDS_TLS_DIR}/ca.crt",
    cert_file=f"{XDS_TLS_DIR}/tls.crt",
    key_file=f"{XDS_TLS_DIR}/tls.key",
)
SERVER_SECRET = "meshroute-xds-server-tls"
CLIENT_SECRET = "meshroute-xds-client-tls"

KUSTOMIZE_KINDS = {
    ("kustomize.config.k8s.io/v1beta1", "Kustomization"),
    ("kustomize.config.k8s.io/v1alpha1", "Component"),
}
KUSTOMIZE_FIELDS = {
    "apiVersion",
    "kind",
    "metadata",
    "namespace",
    "namePrefix",
    "nameSuffix",
    "labels",
    "commonAnnotations",
    "resources",
    "components",
    "patches",
    "configMapGenerator",
    "secretGenerator",
    "generatorOptions",
    "images",
    "replicas",
}
"""Fields our kustomizations may use (deprecated ones such as patchesStrategicMerge are
not among them)."""

POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
READ_VERBS = {"get", "list", "watch"}
STATUS_VERBS = {"patch", "update"}


# ---------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class Doc:
    path: Path
    index: int
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", ""))

    @property
    def name(self) -> str:
        return str(self.body.get("metadata", {}).get("name", ""))

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(DEPLOY)}#{self.index}:{self.kind}/{self.name}"


def _load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def _kustomization_files() -> list[Path]:
    return sorted(DEPLOY.rglob("kustomization.yaml"))


def _split_source(entry: str) -> str:
    """A generator's `files` entry: `path` or `key=path`."""
    return entry.split("=", 1)[-1]


@cache
def _kustomize_inputs() -> tuple[frozenset[Path], frozenset[Path]]:
    """(patch files, generator data files) named by any kustomization."""
    patches: set[Path] = set()
    data: set[Path] = set()
    for file in _kustomization_files():
        spec = _load(file)[0]
        for patch in spec.get("patches", []):
            if "path" in patch:
                patches.add((file.parent / patch["path"]).resolve())
        for generator in spec.get("configMapGenerator", []) + spec.get("secretGenerator", []):
            for entry in generator.get("files", []):
                data.add((file.parent / _split_source(entry)).resolve())
    return frozenset(patches), frozenset(data)


@cache
def _manifest_docs() -> tuple[Doc, ...]:
    """Every YAML document under deploy/ meant to be applied as it is: not kustomize
    files, patches, or data that generators turn into ConfigMaps."""
    patches, data = _kustomize_inputs()
    docs: list[Doc] = []
    for path in sorted(DEPLOY.rglob("*.y*ml")):
        resolved = path.resolve()
        if path.name == "kustomization.yaml" or resolved in patches or resolved in data:
            continue
        docs.extend(Doc(path, index, body) for index, body in enumerate(_load(path)))
    return tuple(docs)


def _kubernetes_objects() -> list[Doc]:
    return [doc for doc in _manifest_docs() if not _is_meshroute(doc.body)]


def _is_meshroute(body: dict[str, Any]) -> bool:
    return str(body.get("apiVersion", "")).startswith("meshroute.io/")


def _patch_docs() -> list[Doc]:
    patches, _ = _kustomize_inputs()
    return [
        Doc(path, index, body) for path in sorted(patches) for index, body in enumerate(_load(path))
    ]


def _pod_spec(body: dict[str, Any]) -> dict[str, Any] | None:
    if body.get("kind") == "Pod":
        return body.get("spec")
    if body.get("kind") in POD_TEMPLATE_KINDS:
        return body.get("spec", {}).get("template", {}).get("spec")
    return None


def _containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(pod_spec.get("initContainers", [])) + list(pod_spec.get("containers", []))


def _all_containers() -> Iterator[tuple[Doc, dict[str, Any]]]:
    """Every container of every pod template, in manifests, and those patches add
    (a patch of a container that is already there has no image of its own)."""
    for doc in [*_kubernetes_objects(), *_patch_docs()]:
        pod_spec = _pod_spec(doc.body)
        if pod_spec is not None:
            for container in _containers(pod_spec):
                if "image" in container:
                    yield doc, container


def _one(kind: str, name: str, docs: list[Doc] | None = None) -> dict[str, Any]:
    """The one object of this kind and name (among `docs`, else every manifest)."""
    found = [
        doc.body for doc in (docs or _kubernetes_objects()) if (doc.kind, doc.name) == (kind, name)
    ]
    assert len(found) == 1, f"{len(found)} of {kind}/{name} under deploy/, not one"
    return found[0]


def _in_file(relative: str) -> list[Doc]:
    return [doc for doc in _kubernetes_objects() if doc.path == DEPLOY / relative]


def _container(pod_owner: dict[str, Any], name: str) -> dict[str, Any]:
    pod_spec = _pod_spec(pod_owner)
    assert pod_spec is not None
    by_name = {container["name"]: container for container in _containers(pod_spec)}
    assert name in by_name, f"no container {name!r} (have {sorted(by_name)})"
    return by_name[name]


def _flag(args: list[str], flag: str) -> str:
    """The value of `--flag=value` or `--flag value` in a container's args."""
    for position, arg in enumerate(args):
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
        if arg == flag:
            return args[position + 1]
    raise AssertionError(f"{flag} not in {args}")


def _probe_port(container: dict[str, Any], probe: str) -> int:
    spec = container[probe]
    handler = next(spec[key] for key in ("httpGet", "grpc", "tcpSocket") if key in spec)
    port = handler["port"]
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    return int(named[port])


def _sidecar_patch() -> dict[str, Any]:
    return _load(DEPLOY / "sidecar" / "sidecars.yaml")[0]


# ------------------------------------------------------------ Kubernetes API schemas


def test_finds_the_manifests() -> None:
    kinds = {doc.kind for doc in _kubernetes_objects()}
    assert {"Namespace", "ServiceAccount", "ClusterRole", "RoleBinding"} <= kinds
    assert {"Deployment", "Service", "ConfigMap"} <= kinds

    def minor(version: str) -> tuple[int, ...]:
        return tuple(int(part) for part in version.split(".")[:2])

    assert minor(kubernetes_validate.utils.latest_version()) >= minor(K8S_VERSION)


@pytest.mark.parametrize("doc", _kubernetes_objects(), ids=lambda doc: doc.id)
def test_object_matches_the_kubernetes_schema(doc: Doc) -> None:
    assert "apiVersion" in doc.body, f"{doc.id}: not a Kubernetes object"
    try:
        kubernetes_validate.validate(doc.body, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(part) for part in error.path)
        pytest.fail(f"{doc.id}: {path}: {error.message}")


def _meshroute_dirs() -> list[Path]:
    """Directories of meshroute objects: applied as custom resources, or put into the
    file-mode ConfigMap."""
    applied = {doc.path.parent for doc in _manifest_docs() if _is_meshroute(doc.body)}
    return sorted(applied | {DEPLOY / "control-plane-files" / "config"})


@pytest.mark.parametrize(
    "directory", _meshroute_dirs(), ids=lambda path: str(path.relative_to(DEPLOY))
)
def test_meshroute_config_is_valid(directory: Path) -> None:
    """The example Agents, LLMProviders and Gateways pass meshroute's own checks."""
    config = load_config([directory])
    assert config.gateways


def test_file_mode_config_is_the_example_config() -> None:
    """The ConfigMap of deploy/control-plane-files/ holds the very objects that
    deploy/examples/meshroute/ applies as custom resources."""
    files = sorted((DEPLOY / "control-plane-files" / "config").glob("*.yaml"))
    examples = sorted((DEPLOY / "examples" / "meshroute").glob("*.yaml"))
    assert [file.name for file in files] == [file.name for file in examples]
    for file, example in zip(files, examples, strict=True):
        assert file.read_text(encoding="utf-8") == example.read_text(encoding="utf-8"), file.name


def test_example_custom_resources_match_the_crds() -> None:
    checked = 0
    for doc in _manifest_docs():
        if not _is_meshroute(doc.body):
            continue
        assert schema_errors(doc.body) == [], doc.id
        checked += 1
    assert checked >= 6  # the example objects, and the file-mode copy of them


# -------------------------------------------------------------------------- kustomize


@pytest.mark.parametrize(
    "file", _kustomization_files(), ids=lambda path: str(path.parent.relative_to(DEPLOY))
)
def test_kustomization_references_exist(file: Path) -> None:
    spec = _load(file)[0]
    base = file.parent
    assert (spec.get("apiVersion"), spec.get("kind")) in KUSTOMIZE_KINDS
    assert set(spec) <= KUSTOMIZE_FIELDS, f"unexpected fields {set(spec) - KUSTOMIZE_FIELDS}"
    for resource in spec.get("resources", []):
        target = base / resource
        assert target.is_file() or (target / "kustomization.yaml").is_file(), resource
    for component in spec.get("components", []):
        kustomization = base / component / "kustomization.yaml"
        assert kustomization.is_file(), component
        assert _load(kustomization)[0]["kind"] == "Component", component
    for patch in spec.get("patches", []):
        assert ("path" in patch) != ("patch" in patch), patch
        if "path" in patch:
            assert (base / patch["path"]).is_file(), patch["path"]
        else:
            assert patch.get("target"), "an inline patch needs a target"
    for generator in spec.get("configMapGenerator", []) + spec.get("secretGenerator", []):
        for entry in generator.get("files", []):
            assert (base / _split_source(entry)).is_file(), entry


def _kustomize_build(directory: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _buildable() -> list[Path]:
    return [
        file.parent for file in _kustomization_files() if _load(file)[0]["kind"] == "Kustomization"
    ]


@pytest.mark.parametrize("directory", _buildable(), ids=lambda path: str(path.relative_to(DEPLOY)))
def test_kustomize_build_gives_valid_objects(directory: Path) -> None:
    for body in _kustomize_build(directory):
        if _is_meshroute(body):
            continue
        kubernetes_validate.validate(body, K8S_VERSION, strict=True)


def test_component_adds_the_sidecars_and_their_bootstrap() -> None:
    built = _kustomize_build(DEPLOY / "examples" / "app-kustomize")
    bootstraps = [
        body
        for body in built
        if body["kind"] == "ConfigMap"
        and body["metadata"]["name"].startswith("meshroute-envoy-bootstrap-")
    ]
    assert len(bootstraps) == 1, "the generated bootstrap ConfigMap (with its hash)"
    assert bootstraps[0]["data"]["envoy.yaml"] == BOOTSTRAP_FILE.read_text(encoding="utf-8")
    app = next(body for body in built if body["kind"] == "Deployment")
    pod = app["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["meshroute-ext-proc", "meshroute-envoy"]
    assert [c["name"] for c in pod["containers"]] == ["app"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    bootstrap_name = bootstraps[0]["metadata"]["name"]
    assert volumes["meshroute-envoy-bootstrap"]["configMap"]["name"] == bootstrap_name


def test_file_mode_has_no_api_access() -> None:
    built = _kustomize_build(DEPLOY / "control-plane-files")
    kinds = {body["kind"] for body in built}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    deployment = next(body for body in built if body["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    config = next(body for body in built if body["kind"] == "ConfigMap")
    assert config["metadata"]["name"] == "meshroute-config"
    examples = DEPLOY / "examples" / "meshroute"
    for name, text in config["data"].items():
        assert text == (examples / name).read_text(encoding="utf-8"), name


# ------------------------------------------------------------------------------- RBAC


def _rules() -> Iterator[tuple[Doc, dict[str, Any]]]:
    for doc in _kubernetes_objects():
        if doc.kind in {"Role", "ClusterRole"}:
            for rule in doc.body.get("rules", []):
                yield doc, rule


def test_rbac_is_least_privilege() -> None:
    rules = list(_rules())
    assert rules
    for doc, rule in rules:
        where = f"{doc.id}: {rule}"
        for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            assert "*" not in rule.get(field, []), f"{where}: wildcard in {field}"
        assert "nonResourceURLs" not in rule, where
        verbs = set(rule["verbs"])
        for resource in rule["resources"]:
            if resource.endswith("/status"):
                assert verbs <= STATUS_VERBS, f"{where}: {resource} only patch/update"
            else:
                assert verbs <= READ_VERBS, f"{where}: {resource} read-only"
        if "secrets" in rule["resources"]:
            assert rule["apiGroups"] == [""], where
            assert verbs == READ_VERBS, where


def test_rbac_grants_what_the_control_plane_needs() -> None:
    granted = {
        (group, resource, verb)
        for _, rule in _rules()
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    for kind in ("agents", "llmproviders", "gateways"):
        assert {("meshroute.io", kind, verb) for verb in READ_VERBS} <= granted
        assert {("meshroute.io", f"{kind}/status", verb) for verb in STATUS_VERBS} <= granted
    assert {("", "secrets", verb) for verb in READ_VERBS} <= granted


def test_roles_are_granted_in_the_watched_namespace_only() -> None:
    """The control plane watches one namespace (its own), so its ClusterRole is bound
    there by a RoleBinding, never cluster-wide."""
    objects = _kubernetes_objects()
    assert not [doc.id for doc in objects if doc.kind == "ClusterRoleBinding"]
    roles = {doc.name for doc in objects if doc.kind in {"Role", "ClusterRole"}}
    bindings = [doc for doc in objects if doc.kind == "RoleBinding"]
    assert {binding.body["roleRef"]["name"] for binding in bindings} == roles
    for binding in bindings:
        assert binding.body["metadata"]["namespace"] == NAMESPACE
        assert binding.body["subjects"] == [
            {"kind": "ServiceAccount", "name": CONTROL_PLANE, "namespace": NAMESPACE}
        ]
    _one("ServiceAccount", CONTROL_PLANE)
    deployment = _one("Deployment", CONTROL_PLANE)
    assert deployment["metadata"]["namespace"] == NAMESPACE
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == CONTROL_PLANE
    assert pod["automountServiceAccountToken"] is True
    for doc in _manifest_docs():
        if _is_meshroute(doc.body):
            assert doc.body["metadata"]["namespace"] == NAMESPACE, f"{doc.id}: not watched"


# ------------------------------------------------------------------------- containers


def _container_id(item: tuple[Doc, dict[str, Any]]) -> str:
    doc, container = item
    return f"{doc.id}:{container['name']}"


@pytest.mark.parametrize("item", list(_all_containers()), ids=_container_id)
def test_container_is_hardened(item: tuple[Doc, dict[str, Any]]) -> None:
    _, container = item
    requests = container.get("resources", {}).get("requests", {})
    assert {"cpu", "memory"} <= set(requests), "resources.requests: cpu and memory"
    assert "memory" in container["resources"].get("limits", {}), "resources.limits.memory"
    security = container.get("securityContext", {})
    assert security.get("runAsNonRoot") is True
    assert security.get("allowPrivilegeEscalation") is False
    assert security.get("capabilities", {}).get("drop") == ["ALL"]
    if container["image"].startswith("ghcr.io/meshroute/"):
        assert container["image"] == IMAGE
        assert security.get("readOnlyRootFilesystem") is True
        assert security.get("runAsUser") == UID
        assert security.get("seccompProfile") == {"type": "RuntimeDefault"}
        assert "readinessProbe" in container
        assert "livenessProbe" in container


# --------------------------------------------------------------------------- bootstrap


def _bootstrap_texts() -> dict[str, str]:
    example = _one("ConfigMap", "meshroute-envoy-bootstrap", _in_file(PLAIN_EXAMPLE))
    return {
        "deploy/sidecar/envoy.yaml": BOOTSTRAP_FILE.read_text(encoding="utf-8"),
        f"deploy/{PLAIN_EXAMPLE}": example["data"]["envoy.yaml"],
    }


@pytest.mark.parametrize("where", sorted(_bootstrap_texts()))
def test_sidecar_bootstrap_is_the_template_filled_in(where: str) -> None:
    text = _bootstrap_texts()[where]
    template = string.Template((REPO / "envoy" / "bootstrap.yaml").read_text(encoding="utf-8"))
    try:
        expected = template.substitute(BOOTSTRAP_VALUES)
    except KeyError as missing:
        pytest.fail(f"envoy/bootstrap.yaml has a placeholder deploy/ does not fill: {missing}")
    assert parse_bootstrap(text) == parse_bootstrap(expected), (
        f"{where} is stale: regenerate it from envoy/bootstrap.yaml with BOOTSTRAP_VALUES"
    )


def test_envoy_accepts_the_sidecar_bootstrap() -> None:
    validate_config(BOOTSTRAP_FILE.read_text(encoding="utf-8"))


def test_bootstrap_answers_readiness_on_the_probed_port() -> None:
    bootstrap = parse_bootstrap(BOOTSTRAP_FILE.read_text(encoding="utf-8"))
    listeners = {
        listener.address.socket_address.port_value: listener
        for listener in bootstrap.static_resources.listeners
    }
    assert HEALTH_PORT in listeners, "a static listener for GET /ready"
    assert listeners[HEALTH_PORT].address.socket_address.address == "0.0.0.0"
    envoy = _container(_sidecar_patch(), "meshroute-envoy")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert envoy[probe]["httpGet"]["path"] == "/ready"
        assert _probe_port(envoy, probe) == HEALTH_PORT
    assert bootstrap.admin.address.socket_address.address == "127.0.0.1"


def test_sidecar_bootstraps_are_what_meshroute_bootstrap_prints() -> None:
    plain = parse_bootstrap(render_bootstrap(SIDECAR_BOOTSTRAP))
    assert parse_bootstrap(BOOTSTRAP_FILE.read_text(encoding="utf-8")) == plain
    mtls = render_bootstrap(dataclasses.replace(SIDECAR_BOOTSTRAP, xds_tls=SIDECAR_XDS_TLS))
    assert parse_bootstrap(MTLS_BOOTSTRAP_FILE.read_text(encoding="utf-8")) == (
        parse_bootstrap(mtls)
    ), "deploy/xds-mtls/sidecar/envoy.yaml is stale: regenerate it (command in its header)"


def test_envoy_accepts_the_mtls_sidecar_bootstrap(tmp_path: Path) -> None:
    """Envoy opens the certificate files when it validates: give it real ones where
    the Secret would be mounted."""
    ca = trustme.CA()
    files = write_cert(ca, tmp_path, "meshroute-sidecar")
    text = MTLS_BOOTSTRAP_FILE.read_text(encoding="utf-8").replace(XDS_TLS_DIR, str(tmp_path))
    assert str(files.key) in text
    validate_config(text)


def test_mtls_bootstrap_expects_the_control_planes_service_name() -> None:
    bootstrap = parse_bootstrap(MTLS_BOOTSTRAP_FILE.read_text(encoding="utf-8"))
    [cluster] = [c for c in bootstrap.static_resources.clusters if c.name == XDS_CLUSTER]
    context = tls_pb2.UpstreamTlsContext()
    assert cluster.transport_socket.typed_config.Unpack(context)
    assert context.sni == CONTROL_PLANE_DNS
    [san] = context.common_tls_context.validation_context.match_typed_subject_alt_names
    assert san.matcher.exact == CONTROL_PLANE_DNS
    assert _endpoint(bootstrap, XDS_CLUSTER) == (CONTROL_PLANE_DNS, XDS_PORT)


def _secret_mount(pod: dict[str, Any], container: dict[str, Any], secret: str) -> str:
    """Where `container` mounts the Secret named `secret`."""
    volumes = {
        volume["name"]: volume["secret"]["secretName"]
        for volume in pod["volumes"]
        if "secret" in volume
    }
    [path] = [
        mount["mountPath"]
        for mount in container["volumeMounts"]
        if volumes.get(mount["name"]) == secret
    ]
    return str(path)


def test_mtls_control_plane_reads_its_certificates_from_the_mounted_secret() -> None:
    built = _kustomize_build(DEPLOY / "examples" / "xds-mtls" / "control-plane")
    deployment = next(body for body in built if body["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment, "control-plane")
    plain = _container(_one("Deployment", CONTROL_PLANE), "control-plane")
    args = container["args"]
    assert args[: len(plain["args"])] == plain["args"]
    mounted = _secret_mount(pod, container, SERVER_SECRET)
    assert mounted == XDS_TLS_DIR
    assert _flag(args, "--xds-tls-cert") == f"{mounted}/tls.crt"
    assert _flag(args, "--xds-tls-key") == f"{mounted}/tls.key"
    assert _flag(args, "--xds-client-ca") == f"{mounted}/ca.crt"


def test_mtls_sidecars_read_their_certificates_from_the_mounted_secret() -> None:
    built = _kustomize_build(DEPLOY / "examples" / "xds-mtls" / "app")
    bootstraps = [body for body in built if body["kind"] == "ConfigMap"]
    assert len(bootstraps) == 1, "the mTLS bootstrap replaces the plain one"
    assert bootstraps[0]["data"]["envoy.yaml"] == MTLS_BOOTSTRAP_FILE.read_text(encoding="utf-8")
    app = next(body for body in built if body["kind"] == "Deployment")
    pod = app["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert (
        volumes["meshroute-envoy-bootstrap"]["configMap"]["name"]
        == (bootstraps[0]["metadata"]["name"])
    )
    for name in ("meshroute-ext-proc", "meshroute-envoy"):
        assert _secret_mount(pod, _container(app, name), CLIENT_SECRET) == XDS_TLS_DIR
    args = _container(app, "meshroute-ext-proc")["args"]
    plain = _container(_sidecar_patch(), "meshroute-ext-proc")["args"]
    assert args[: len(plain)] == plain, "the mTLS patch restates the plain args first"
    assert args[len(plain) :] == [
        f"--xds-server-ca={SIDECAR_XDS_TLS.server_ca_file}",
        f"--xds-client-cert={SIDECAR_XDS_TLS.cert_file}",
        f"--xds-client-key={SIDECAR_XDS_TLS.key_file}",
    ]


# ---------------------------------------------------------- names and ports that agree


def _endpoint(bootstrap: Any, cluster: str) -> tuple[str, int]:
    found = next(c for c in bootstrap.static_resources.clusters if c.name == cluster)
    address = found.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    return address.address, address.port_value


def test_control_plane_service_and_ports_agree() -> None:
    service = _one("Service", CONTROL_PLANE)
    assert service["metadata"]["namespace"] == NAMESPACE
    (port,) = service["spec"]["ports"]
    assert (port["port"], port["appProtocol"]) == (XDS_PORT, "grpc")
    deployment = _one("Deployment", CONTROL_PLANE)
    assert deployment["spec"]["replicas"] == 1
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    container = _container(deployment, "control-plane")
    args = container["args"]
    assert args[0] == "control-plane"
    assert _flag(args, "--source") == "kubernetes"
    assert int(_flag(args, "--port")) == XDS_PORT
    assert int(_flag(args, "--internal-port")) == INTERNAL_PORT
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named[port["targetPort"]] == XDS_PORT
    health = int(_flag(args, "--health-port"))
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert container[probe]["httpGet"]["path"] == path
        assert _probe_port(container, probe) == health


def test_file_mode_serves_what_kubernetes_mode_serves() -> None:
    patches = [doc for doc in _patch_docs() if doc.path.parent.name == "control-plane-files"]
    files = _container(_one("Deployment", CONTROL_PLANE, patches), "control-plane")["args"]
    api = _container(_one("Deployment", CONTROL_PLANE), "control-plane")["args"]
    assert files[:2] == ["control-plane", "/etc/meshroute/config"]
    for flag in ("--address", "--port", "--gateway-address", "--internal-port", "--health-port"):
        assert _flag(files, flag) == _flag(api, flag), flag


def test_sidecars_reach_the_control_plane_and_each_other() -> None:
    bootstrap = parse_bootstrap(BOOTSTRAP_FILE.read_text(encoding="utf-8"))
    assert _endpoint(bootstrap, "meshroute_xds") == (CONTROL_PLANE_DNS, XDS_PORT)
    ext_proc = _container(_sidecar_patch(), "meshroute-ext-proc")
    assert ext_proc["args"][0] == "ext-proc"
    assert _flag(ext_proc["args"], "--xds-address") == f"{CONTROL_PLANE_DNS}:{XDS_PORT}"
    port = int(_flag(ext_proc["args"], "--port"))
    assert _endpoint(bootstrap, "meshroute_ext_proc") == ("127.0.0.1", port)
    assert ext_proc["readinessProbe"]["grpc"]["port"] == port == EXT_PROC_PORT
    envoy = _container(_sidecar_patch(), "meshroute-envoy")
    config = Path(_flag(envoy["args"], "-c"))
    mounts = {mount["name"]: mount["mountPath"] for mount in envoy["volumeMounts"]}
    assert mounts["meshroute-envoy-bootstrap"] == str(config.parent)
    assert config.name == BOOTSTRAP_FILE.name  # the generator's key is the file's name


def test_plain_example_is_the_component_written_out() -> None:
    example = _one("Deployment", "example-app", _in_file(PLAIN_EXAMPLE))
    pod = example["spec"]["template"]["spec"]
    patch_pod = _sidecar_patch()["spec"]["template"]["spec"]
    assert pod["initContainers"] == patch_pod["initContainers"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    for volume in patch_pod["volumes"]:
        assert volumes[volume["name"]] == volume
    app = _load(DEPLOY / "examples" / "app-kustomize" / "app.yaml")[0]
    assert pod["containers"] == app["spec"]["template"]["spec"]["containers"]
    assert app["metadata"]["labels"]["meshroute.io/inject"] == "true"
    component = _load(DEPLOY / "sidecar" / "kustomization.yaml")[0]
    (patch,) = component["patches"]
    assert patch["target"]["labelSelector"] == "meshroute.io/inject=true"


def test_gateway_ports_leave_the_sidecars_ports_free() -> None:
    ports = [
        doc.body["spec"]["port"]
        for doc in _manifest_docs()
        if _is_meshroute(doc.body) and doc.kind == "Gateway"
    ]
    assert sorted(ports) == [8001, 12000]
    assert not set(ports) & SIDECAR_PORTS


# -------------------------------------------------------------------------- Dockerfile


@dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str


def _dockerfile() -> list[Instruction]:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    logical = re.sub(r"\\\n", " ", text)
    instructions = []
    for line in logical.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, value = stripped.partition(" ")
            instructions.append(Instruction(keyword.upper(), value.strip()))
    return instructions


def _final_stage() -> list[Instruction]:
    instructions = _dockerfile()
    last_from = max(i for i, ins in enumerate(instructions) if ins.keyword == "FROM")
    return instructions[last_from:]


def test_dockerfile_is_python_slim_as_a_non_root_user() -> None:
    for instruction in _dockerfile():
        if instruction.keyword == "FROM":
            assert instruction.value.split()[0] == "python:3.11-slim"
    final = _final_stage()
    users = [ins.value for ins in final if ins.keyword == "USER"]
    assert users, "the final stage sets USER"
    user = users[-1].split(":")[0]
    assert user.isdigit(), "a numeric USER, so runAsNonRoot can check it"
    assert int(user) == UID
    entrypoints = [ins.value for ins in final if ins.keyword == "ENTRYPOINT"]
    assert [json.loads(entry) for entry in entrypoints] == [["meshroute"]]
    env = " ".join(ins.value for ins in final if ins.keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env


def test_dockerfile_copies_what_the_package_is_built_from() -> None:
    sources = set()
    for instruction in _dockerfile():
        if instruction.keyword == "COPY" and "--from" not in instruction.value:
            parts = instruction.value.split()
            sources.update(part.rstrip("/") for part in parts[:-1])
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: not in the build context"
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    needed = {"pyproject.toml", pyproject["project"]["readme"], "meshroute"}
    needed |= set(pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"])
    assert needed <= sources, f"not copied into the image: {needed - sources}"
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert sources <= kept, f"excluded from the build context: {sources - kept}"


# ----------------------------------------------------------------------------- README


def test_readme_names_only_files_that_exist() -> None:
    text = (DEPLOY / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"(?<![\w/])deploy/[\w./-]*[\w/]", text))
    assert named
    for path in named:
        if path.startswith("deploy/crds"):
            continue  # another part of the project ships the CRDs
        assert (REPO / path).exists(), f"deploy/README.md names {path}, which does not exist"
