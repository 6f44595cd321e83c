"""Readers for the production files under deploy/ and the repo root, shared by the deploy tests."""

from __future__ import annotations

import ast
import inspect
import re
from typing import Any

import kubernetes.client
import yaml

from tests.support.paths import ROOT

MANIFESTS = ROOT / "deploy" / "kubernetes"
ACTIVITIES = ROOT / "activities"

# (api group, resource[/subresource], verb)
Permission = tuple[str, str, str]

# Subresources whose (websocket) GET the API server authorizes as `create`.
_CONNECT_AS_CREATE = {"exec", "attach", "portforward"}
_API_CLASSES = [
    getattr(kubernetes.client, n) for n in dir(kubernetes.client)
    if n.endswith("Api") and inspect.isclass(getattr(kubernetes.client, n))
    and n not in ("CustomObjectsApi", "ApiClient")
]
_CALL_API = re.compile(r"call_api\(\s*'(?P<path>[^']+)',\s*'(?P<method>[A-Z]+)'")
_PATH = re.compile(
    r"^/apis?/(?:(?P<group>[^/{]+)/)?(?P<version>v[^/{]+)"
    r"(?:/namespaces/\{namespace\})?/(?P<plural>[^/{]+)(?:/\{name\}(?:/(?P<sub>[^/{]+))?)?$"
)


def manifests(*names: str) -> list[dict[str, Any]]:
    """Every object in the given files (default: all of deploy/kubernetes), in file order."""
    files = [MANIFESTS / n for n in names] if names else sorted(MANIFESTS.glob("*.yaml"))
    return [doc for f in files for doc in yaml.safe_load_all(f.read_text()) if doc]


def one(kind: str, name: str) -> dict[str, Any]:
    found = [m for m in manifests() if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def client_method(name: str) -> tuple[str, str] | None:
    """`read_namespaced_pod_log` -> ('/api/v1/namespaces/{namespace}/pods/{name}/log', 'GET')
    from the official client's own generated code; None if no typed API has that method."""
    for cls in _API_CLASSES:
        fn = getattr(cls, f"{name}_with_http_info", None)
        if fn is not None:
            m = _CALL_API.search(inspect.getsource(fn))
            if m:
                return m["path"], m["method"]
    return None


def permission_for(path: str, method: str, *, group: str | None = None, plural: str | None = None) -> Permission:
    m = _PATH.match(path)
    assert m, f"unexpected API path {path}"
    g = group if group is not None else (m["group"] or "")
    p = plural if plural is not None else m["plural"]
    named = "{name}" in path
    resource = f"{p}/{m['sub']}" if m["sub"] else p
    if m["sub"] in _CONNECT_AS_CREATE:
        verb = "create"
    else:
        verb = {"GET": "get" if named else "list", "POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete" if named else "deletecollection"}[method]
    return g, resource, verb


def _string(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def derived_permissions() -> dict[Permission, list[str]]:
    """What activities/*.py call on the Kubernetes API -> where (file:line). A client method
    is found whether it is called or handed to a helper (`self._call(..., api.method, args)`);
    custom objects take their group and plural from the literal arguments that follow."""
    found: dict[Permission, list[str]] = {}
    for f in sorted(ACTIVITIES.glob("*.py")):
        tree = ast.parse(f.read_text(), filename=str(f))
        for call in ast.walk(tree):
            if not isinstance(call, ast.Call):
                continue
            candidates: list[tuple[ast.Attribute, list[ast.expr]]] = []
            if isinstance(call.func, ast.Attribute):
                candidates.append((call.func, list(call.args)))
            for i, arg in enumerate(call.args):
                if isinstance(arg, ast.Attribute):
                    candidates.append((arg, list(call.args[i + 1:])))
            for attr, rest in candidates:
                perm = _permission_of(attr.attr, rest)
                if perm is not None:
                    found.setdefault(perm, []).append(f"{f.name}:{attr.lineno}")
    return found


def _permission_of(method: str, args: list[ast.expr]) -> Permission | None:
    if method.endswith("_custom_object"):
        group, plural = _string(args[0] if args else None), _string(args[3] if len(args) > 3 else None)
        assert group and plural, f"{method}: group and plural must be literal strings to derive RBAC"
        path = "/apis/{group}/{version}/namespaces/{namespace}/{plural}"
        if method.startswith(("get_", "patch_", "replace_", "delete_")):
            path += "/{name}"
        http = {"list": "GET", "get": "GET", "create": "POST", "patch": "PATCH", "replace": "PUT", "delete": "DELETE"}
        verb_http = http[method.split("_", 1)[0]]
        return permission_for(path.replace("{group}", group).replace("{version}", "v1").replace("{plural}", plural),
                              verb_http, group=group, plural=plural)
    spec = client_method(method)
    if spec is None:
        return None
    path, http_method = spec
    if path == "/api/v1/namespaces/{name}":  # the namespace object itself
        return "", "namespaces", {"GET": "get", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}[http_method]
    return permission_for(path, http_method)


def role_permissions(role: dict[str, Any]) -> dict[Permission, frozenset[str] | None]:
    """(group, resource, verb) -> resourceNames (None: any name)."""
    out: dict[Permission, frozenset[str] | None] = {}
    for rule in role.get("rules") or []:
        names = frozenset(rule["resourceNames"]) if rule.get("resourceNames") else None
        for g in rule.get("apiGroups") or []:
            for r in rule.get("resources") or []:
                for v in rule.get("verbs") or []:
                    key = (g, r, v)
                    assert key not in out, f"{key} granted twice in {role['metadata']['name']}"
                    out[key] = names
    return out
