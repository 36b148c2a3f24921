"""Checking a resource against the generated CRD schemas, as the API server would.

kube-apiserver validates custom resources against the CRD's OpenAPI v3 schema before
storing them; these functions do the same with jsonschema, so tests (and the fake API
server) refuse exactly what a real cluster would refuse at admission.
"""

from __future__ import annotations

from typing import Any

import jsonschema

from meshroute.control_plane.k8s.crds import crd_documents

Json = dict[str, Any]


def open_api_schema(kind: str) -> Json:
    crd = next(crd for crd in crd_documents() if crd["spec"]["names"]["kind"] == kind)
    schema: Json = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def as_json_schema(node: Json) -> Json:
    """An OpenAPI v3 structural schema as JSON Schema (draft 4, whose exclusiveMinimum is
    the same boolean), and unknown fields refused as kubectl's strict validation does."""
    out = {k: v for k, v in node.items() if not k.startswith("x-kubernetes-") and k != "nullable"}
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if node.get("nullable"):
        types = out.get("type", [])
        out["type"] = [*(types if isinstance(types, list) else [types]), "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if "properties" in node:
        out["properties"] = {
            name: as_json_schema(child) for name, child in node["properties"].items()
        }
        out["additionalProperties"] = False
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            out[key] = as_json_schema(node[key])
    return out


def schema_errors(document: Json) -> list[str]:
    """What the CRD refuses in `document` (empty: it would be stored)."""
    validator = jsonschema.Draft4Validator(as_json_schema(open_api_schema(document["kind"])))
    return sorted(
        f"{'.'.join(str(part) for part in error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(document)
    )
