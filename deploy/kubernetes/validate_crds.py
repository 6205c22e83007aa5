#!/usr/bin/env python3
"""Validate rendered Kubernetes manifests against the CustomResourceDefinitions they use.

    kubectl kustomize deploy/kubernetes/overlays/envoy-gateway | validate_crds.py
    validate_crds.py --crds /work/shared/crds rendered.yaml [more.yaml ...]

Every object whose apiVersion and kind a CRD in the CRD directory defines (default: the
first of $TOLLGATE_CRDS, ../shared/crds beside the project, /work/shared/crds) is checked
against that CRD's `openAPIV3Schema` for the object's version, which must be served,
the way the API server would check it:

- as JSON Schema (the `jsonschema` package, draft 4 as OpenAPI v3.0 is);
- unknown fields are errors: an object schema without `additionalProperties` or
  `x-kubernetes-preserve-unknown-fields: true` allows only the fields it lists (the API
  server would prune the others, or refuse them under `kubectl apply --validate=strict`);
  `apiVersion`, `kind` and `metadata` are allowed at the root and in embedded resources;
- `nullable: true` allows null; a `required` field with a `default` may be left out (the
  API server fills it in before validating).

Not checked: the CEL rules (`x-kubernetes-validations`) and the other `x-kubernetes-*`
extensions, which are ignored; `format`; metadata beyond names, labels and annotations.

Objects of built-in API groups (apps, v1, policy, ...) are skipped: kubernetes-validate
checks those. Objects of any other kind with no CRD in the directory (e.g. Traefik's
Middleware) are listed as "skipped: no CRD" and are not errors.

Output: one line per object validated ("ok: ..." or one line per error) and per object
skipped for want of a CRD. Exit status: 0 when every validated object passed, 1 on any
validation error, 2 when the input, the CRDs or this script's dependencies are unusable.
"""

import argparse
import copy
import os
import sys
from pathlib import Path

try:
    import jsonschema
    import yaml
except ImportError as e:  # the CI venv has both (.ci/run: ci_wheels)
    print(
        f"validate_crds.py: missing Python package: {e.name} (pip install jsonschema pyyaml)",
        file=sys.stderr,
    )
    sys.exit(2)

# API groups served by the API server itself (kubernetes-validate has their schemas).
BUILTIN_GROUPS = {
    "",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
    "apps",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "internal.apiserver.k8s.io",
    "networking.k8s.io",
    "node.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "resource.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
    "storagemigration.k8s.io",
}

# What the API server checks in any object's metadata (the rest of ObjectMeta is open here).
OBJECT_META = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "generateName": {"type": "string"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


class Loader(yaml.SafeLoader):
    """YAML as the API server reads it: timestamps stay strings."""


Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def default_crd_dir():
    candidates = [os.environ.get("TOLLGATE_CRDS")]
    project = Path(__file__).resolve().parents[2]
    candidates.append(str(project.parent / "shared" / "crds"))
    candidates.append("/work/shared/crds")
    for c in candidates:
        if c and Path(c).is_dir():
            return c
    return "/work/shared/crds"


def to_json_schema(node, structural=True, root=False):
    """The CRD schema `node` as a draft-4 JSON Schema with the API server's semantics.

    `structural` is false inside value validations (allOf, anyOf, oneOf, not), which may
    not declare fields of their own: only the structural schema closes objects.
    """
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key == "nullable":
            continue
        if key == "properties":
            out[key] = {name: to_json_schema(s, structural) for name, s in value.items()}
        elif key == "items":
            if isinstance(value, list):
                out[key] = [to_json_schema(s, structural) for s in value]
            else:
                out[key] = to_json_schema(value, structural)
        elif key == "additionalProperties":
            out[key] = to_json_schema(value, structural) if isinstance(value, dict) else value
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [to_json_schema(s, False) for s in value]
        elif key == "not":
            out[key] = to_json_schema(value, False)
        else:
            out[key] = copy.deepcopy(value)

    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = out["enum"] + [None]

    # A required field with a default is filled in before validation.
    props = node.get("properties") or {}
    if "required" in out:
        out["required"] = [r for r in out["required"] if "default" not in (props.get(r) or {})]
        if not out["required"]:
            del out["required"]

    if root or node.get("x-kubernetes-embedded-resource"):
        out.setdefault("properties", {})
        out["properties"]["apiVersion"] = {"type": "string"}
        out["properties"]["kind"] = {"type": "string"}
        out["properties"]["metadata"] = metadata_schema(node.get("properties", {}).get("metadata"))

    is_object = "properties" in node or node.get("type") == "object"
    if (
        structural
        and is_object
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def metadata_schema(crd_metadata):
    """ObjectMeta, with the name constraints a CRD may add (the only ones it may add)."""
    schema = copy.deepcopy(OBJECT_META)
    for field in ("name", "generateName"):
        extra = ((crd_metadata or {}).get("properties") or {}).get(field)
        if extra:
            schema["properties"][field] = to_json_schema(extra, structural=False)
    return schema


def load_crds(directory):
    """(group, version, kind) -> (served, schema, CRD name); (group, kind) -> versions."""
    by_version, by_kind = {}, {}
    files = sorted(p for p in Path(directory).iterdir() if p.suffix in (".yaml", ".yml", ".json"))
    for path in files:
        with open(path, encoding="utf-8") as f:
            docs = list(yaml.load_all(f, Loader=Loader))
        for doc in docs:
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            group, kind = spec["group"], spec["names"]["kind"]
            top_schema = (spec.get("validation") or {}).get("openAPIV3Schema")
            for v in spec.get("versions", []):
                schema = (v.get("schema") or {}).get("openAPIV3Schema") or top_schema
                served = v.get("served", False)
                by_version[(group, v["name"], kind)] = (served, schema, doc["metadata"]["name"])
                by_kind.setdefault((group, kind), []).append(v["name"])
    return by_version, by_kind


def field_path(error):
    path = ""
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path or "."


def describe(error):
    if error.validator == "additionalProperties" and error.validator_value is False:
        allowed = set((error.schema.get("properties") or {}).keys())
        extra = sorted(k for k in error.instance if k not in allowed)
        return f"unknown field{'s' if len(extra) > 1 else ''} {', '.join(map(repr, extra))}"
    if error.context:
        best = jsonschema.exceptions.best_match(error.context)
        return f"{error.message.splitlines()[0][:200]} ({field_path(best)}: {best.message[:200]})"
    return error.message[:300]


def objects(docs):
    for doc in docs:
        if doc is None:
            continue
        is_list = isinstance(doc, dict) and str(doc.get("kind", "")).endswith("List")
        if is_list and isinstance(doc.get("items"), list):
            yield from objects(doc["items"])
        else:
            yield doc


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", help="multi-document YAML; stdin when none or -")
    parser.add_argument(
        "--crds",
        default=None,
        help="directory of CRD YAML files (default: $TOLLGATE_CRDS, else ../shared/crds "
        "beside the project, else /work/shared/crds)",
    )
    args = parser.parse_args(argv)

    crd_dir = args.crds or default_crd_dir()
    if not Path(crd_dir).is_dir():
        print(f"validate_crds.py: no CRD directory {crd_dir}", file=sys.stderr)
        return 2
    try:
        by_version, by_kind = load_crds(crd_dir)
    except (OSError, yaml.YAMLError, KeyError) as e:
        print(f"validate_crds.py: reading the CRDs in {crd_dir}: {e}", file=sys.stderr)
        return 2

    inputs = args.files or ["-"]
    errors = validated = builtin = 0
    validators = {}
    for name in inputs:
        try:
            if name == "-":
                docs = list(yaml.load_all(sys.stdin, Loader=Loader))
                name = "<stdin>"
            else:
                with open(name, encoding="utf-8") as f:
                    docs = list(yaml.load_all(f, Loader=Loader))
        except (OSError, yaml.YAMLError) as e:
            print(f"validate_crds.py: {name}: {e}", file=sys.stderr)
            return 2

        for index, obj in enumerate(objects(docs)):
            if not (
                isinstance(obj, dict)
                and isinstance(obj.get("apiVersion"), str)
                and isinstance(obj.get("kind"), str)
            ):
                print(f"{name}: document {index}: not a Kubernetes object (no apiVersion/kind)")
                errors += 1
                continue
            api_version, kind = obj["apiVersion"], obj["kind"]
            group, _, version = api_version.rpartition("/")
            meta = obj.get("metadata") or {}
            where = f"{kind} {api_version} {meta.get('namespace', '-')}/{meta.get('name', '?')}"

            known = by_version.get((group, version, kind))
            if known is None:
                if (group, kind) in by_kind:
                    served = ", ".join(by_kind[(group, kind)])
                    print(f"{name}: {where}: version {version} is not in the CRD (versions: {served})")
                    errors += 1
                elif group in BUILTIN_GROUPS:
                    builtin += 1
                else:
                    print(f"skipped: no CRD: {where}")
                continue
            served, schema, crd_name = known
            if not served:
                print(f"{name}: {where}: version {version} is not served by CRD {crd_name}")
                errors += 1
                continue
            if schema is None:
                print(f"{name}: {where}: CRD {crd_name} has no openAPIV3Schema for {version}")
                errors += 1
                continue
            key = (group, version, kind)
            if key not in validators:
                json_schema = to_json_schema(schema, root=True)
                jsonschema.Draft4Validator.check_schema(json_schema)
                validators[key] = jsonschema.Draft4Validator(json_schema)
            found = sorted(validators[key].iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
            validated += 1
            if found:
                for error in found:
                    print(f"{name}: {where}: {field_path(error)}: {describe(error)}")
                errors += len(found)
            else:
                print(f"ok: {where} (CRD {crd_name})")

    print(
        f"{validated} object(s) validated against CRDs in {crd_dir}, "
        f"{builtin} built-in skipped, {errors} error(s)"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
