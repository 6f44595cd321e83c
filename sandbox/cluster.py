"""A Kubernetes API for drills and tests: kmock's emulator over real HTTP, plus controllers.

    async with SandboxCluster() as cluster:
        await cluster.seed_healthcare_prod(tag="v1.5.0")      # a known-bad tag: crash-looping
        api = cluster.api_client()                            # or kubeconfig: cluster.kubeconfig_path
        ...

What the official `kubernetes` client gets here:

* CRUD of any built-in resource (kmock's in-memory store), `labelSelector` on listings;
  namespaces as objects (GET/POST/PATCH/DELETE); creating into a missing namespace is a 404;
* `deployments/scale` answered as an `autoscaling/v1` Scale; `metadata.generation` counted
  on every spec change, synchronously with the write (so `observedGeneration` lags until
  the next reconcile, as it does in a real cluster);
* Pods, ReplicaSets, Endpoints, Deployment status and metrics.k8s.io PodMetrics kept up to
  date by the reconciler in `sandbox.cluster_reconciler` (every `reconcile_interval`
  seconds, or on `await cluster.reconcile()`);
* `GET .../pods/NAME/log` with `tailLines`, `container` and `previous`;
* `cluster.forbid(...)` answers chosen requests with 403, as missing RBAC would.

What the `kubectl` binary gets too (`KUBECONFIG=cluster.kubeconfig_path`; the helpers are in
`sandbox.cluster_api`): discovery as an API server serves it, typed lists, `fieldSelector`,
server-side Tables (`kubectl get` prints its usual columns), watches that see the reconciler's
changes (`rollout status`), Events from the controllers and the "kubelet" (`describe`), a Node,
`/version` 1.33 and empty OpenAPI documents (so `apply` works without schemas). Protobuf
request bodies (kubectl's typed `create secret|configmap`) are answered 415.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import functools
import gzip
import importlib.resources
import json
import logging
import re
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import aiohttp.web
import kmock
import kubernetes.client
import kubernetes.config
import yaml

from sandbox import cluster_api
from sandbox.cluster_reconciler import (
    DEPLOYMENTS,
    NAMESPACES,
    NODE_IP,
    NODE_NAME,
    PODS,
    SECRETS,
    SERVICES,
    Behaviour,
    PodLogError,
    Reconciler,
    labels_match,
    rfc3339,
    template_hash,
)

log = logging.getLogger(__name__)

_NAMESPACES_PATH = re.compile(r"^/api/v1/namespaces(?:/(?P<name>[^/]+)(?P<sub>/status|/finalize)?)?/?$")
_STRATEGIC_MERGE = "application/strategic-merge-patch+json"
_SELECTOR_TERM = re.compile(
    r"^\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9_.\-/]+)\s*"
    r"(?:(?P<op>==|!=|=|\s+in\s+|\s+notin\s+)\s*(?P<value>\([^)]*\)|[A-Za-z0-9_.\-]*))?\s*$"
)
_KEEP_REQUEST_LOG = 500


def _status_error(status: int, reason: str, message: str, **details: Any) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=status, reason=reason, message=message, details=details or {"status": status})


def parse_label_selector(selector: str) -> list[tuple[str, str, set[str]]]:
    """`a=b,c!=d,e in (x,y),f,!g` -> [(key, op, values)]; ops: = != in notin exists !exists."""
    terms: list[tuple[str, str, set[str]]] = []
    for part in re.split(r",(?![^()]*\))", selector):
        if not part.strip():
            continue
        m = _SELECTOR_TERM.match(part)
        if m is None:
            raise _status_error(400, "BadRequest", f"unable to parse requirement: {part.strip()!r}")
        key, op, value = m["key"], (m["op"] or "").strip(), m["value"]
        if not op:
            terms.append((key, "!exists" if m["neg"] else "exists", set()))
        elif op in ("in", "notin"):
            values = {v.strip() for v in (value or "").strip("()").split(",") if v.strip()}
            terms.append((key, op, values))
        else:
            terms.append((key, "!=" if op == "!=" else "=", {value or ""}))
    return terms


def selector_matches(terms: list[tuple[str, str, set[str]]], labels: Mapping[str, str] | None) -> bool:
    labels = labels or {}
    for key, op, values in terms:
        have = key in labels
        value = labels.get(key)
        ok = {
            "exists": have,
            "!exists": not have,
            "=": have and value in values,
            "in": have and value in values,
            "!=": not have or value not in values,
            "notin": not have or value not in values,
        }[op]
        if not ok:
            return False
    return True


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


def _merge_named_lists(patch: Any, current: Any) -> Any:
    """Pre-merge lists of named items (containers, env, ports, volumes) as a strategic merge
    patch would; kmock itself replaces lists wholesale."""
    if isinstance(patch, dict) and isinstance(current, dict):
        return {k: _merge_named_lists(v, current.get(k)) for k, v in patch.items()}
    if (
        isinstance(patch, list) and isinstance(current, list) and patch
        and all(isinstance(i, dict) and "name" in i for i in patch)
        and all(isinstance(i, dict) and "name" in i for i in current)
    ):
        by_name = {i["name"]: i for i in patch}
        merged = []
        for item in current:
            if item["name"] in by_name:
                change = by_name.pop(item["name"])
                if change.get("$patch") == "delete":
                    continue
                base = copy.deepcopy(item)
                for k, v in _merge_named_lists(change, item).items():
                    if v is None:
                        base.pop(k, None)
                    elif isinstance(v, dict) and isinstance(base.get(k), dict):
                        base[k] = _deep_merge(base[k], v)
                    else:
                        base[k] = v
                merged.append(base)
            else:
                merged.append(item)
        merged.extend(i for i in by_name.values() if i.get("$patch") != "delete")
        return merged
    return patch


def _deep_merge(base: dict[str, Any], change: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in change.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


class SandboxEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with the API-server behaviours a client of a real cluster relies on."""

    def __init__(self, behaviour: Behaviour | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.behaviour = behaviour if behaviour is not None else Behaviour()
        self.reconciler = Reconciler(self.objects, self.behaviour)
        # (resource or "resource/subresource" or "*", namespace or None, verbs or None=all)
        self.forbidden: list[tuple[str, str | None, frozenset[str] | None]] = []

    # -- namespaces: kmock parses /api/v1/namespaces[/NAME] as a namespace scope, not objects

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if raw_request.path.startswith("/openapi/") and raw_request.method == "GET":
            return self._serve_openapi(raw_request)
        if "protobuf" in (raw_request.headers.get("Content-Type") or "") and raw_request.body_exists:
            # kubectl's typed `create secret|configmap|...` sends protobuf; the emulator decodes JSON only
            return aiohttp.web.json_response(
                {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "code": 415,
                 "reason": "UnsupportedMediaType",
                 "message": "the sandbox API server accepts JSON bodies only (not protobuf): use "
                            "`kubectl create ... --dry-run=client -o yaml | kubectl apply -f -`"}, status=415)
        m = _NAMESPACES_PATH.match(raw_request.path)
        if m is None:
            return await super().__call__(raw_request)
        try:
            body = await raw_request.read()
            data = yaml.safe_load(body) if body else None
            payload, status = self._serve_namespaces(raw_request.method, m["name"], m["sub"], data, raw_request.query,
                                                     raw_request.headers.get("Accept"))
            return aiohttp.web.json_response(payload, status=status)
        except kmock.KubernetesError as e:
            return await self._render_error(e)

    @staticmethod
    def _serve_openapi(raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """No schemas, but answers kubectl accepts: with nothing to validate against, `apply`
        skips client-side validation and takes its patch strategy from its built-in types."""
        path = raw_request.path.rstrip("/")
        if path == "/openapi/v3":
            return aiohttp.web.json_response({"paths": {}})
        if path == "/openapi/v2":
            if "protobuf" in (raw_request.headers.get("Accept") or ""):
                # an empty openapi_v2.Document: no definitions
                return aiohttp.web.Response(body=b"", content_type="application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
            return aiohttp.web.json_response({"swagger": "2.0", "info": {"title": "Kubernetes", "version": cluster_api.SERVER_VERSION["gitVersion"]},
                                              "paths": {}, "definitions": {}})
        return aiohttp.web.json_response(
            {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "code": 404,
             "reason": "NotFound", "message": "the server could not find the requested resource"}, status=404)

    def _serve_namespaces(
        self, method: str, name: str | None, sub: str | None, data: Any, query: Mapping[str, str],
        accept: str | None = None,
    ) -> tuple[dict[str, Any], int]:
        verb = {"GET": "get" if name else "list", "POST": "create", "PATCH": "patch", "PUT": "update",
                "DELETE": "delete"}.get(method, method.lower())
        if query.get("watch") in ("true", "1"):
            verb = "watch"
        self._check_forbidden(verb, "", "namespaces", sub.strip("/") if sub else None, None, name)
        rec = self.reconciler
        if name is None:
            if method == "GET":
                terms = parse_label_selector(query.get("labelSelector", ""))
                fields = self._field_terms(query)
                items = sorted((
                    obj.raw for (res, _, _), obj in list(self.objects.items())
                    if res == NAMESPACES and not obj.deleted
                    and selector_matches(terms, (obj.raw.get("metadata") or {}).get("labels"))
                    and cluster_api.fields_match(fields, obj.raw)
                ), key=lambda o: o["metadata"]["name"])
                return self._list_payload(NAMESPACES, items, query, accept), 200
            if method == "POST":
                if not isinstance(data, dict) or not (data.get("metadata") or {}).get("name"):
                    raise _status_error(422, "Invalid", "Namespace: metadata.name: Required value")
                return self.add_namespace(data), 201
            raise _status_error(405, "MethodNotAllowed", f"method {method} not allowed on namespaces")
        obj = rec.get(NAMESPACES, None, name)
        if obj is None:
            raise _status_error(404, "NotFound", f'namespaces "{name}" not found', name=name, kind="namespaces")
        if method == "GET":
            version = cluster_api.wants_table(accept)
            if version and sub is None:
                return cluster_api.table(NAMESPACES, "Namespace", [obj.raw], self.reconciler.clock(), version=version,
                                         include_object=query.get("includeObject", "Metadata"),
                                         resource_version=str(self.reconciler.resource_version)), 200
            return obj.raw, 200
        if method in ("PATCH", "PUT") and isinstance(data, dict):
            if method == "PATCH":
                obj.patch(data)
            else:
                obj.create(dict(data, metadata=dict(data.get("metadata") or {}, **{
                    k: v for k, v in (obj.raw.get("metadata") or {}).items() if k in ("uid", "creationTimestamp")})))
            rec.bump_resource_version(obj)
            return obj.raw, 200
        if method == "DELETE":
            raw = obj.raw
            for key in [k for k in self.objects.keys() if k[1] == name]:
                del self.objects[key]
            del self.objects[NAMESPACES, None, name]
            return raw, 200
        raise _status_error(405, "MethodNotAllowed", f"method {method} not allowed on namespaces/{name}")

    def add_namespace(self, body: Mapping[str, Any]) -> dict[str, Any]:
        doc = copy.deepcopy(dict(body))
        name = doc["metadata"]["name"]
        if self.reconciler.get(NAMESPACES, None, name) is not None:
            raise _status_error(409, "AlreadyExists", f'namespaces "{name}" already exists', name=name, kind="namespaces")
        doc.setdefault("apiVersion", "v1")
        doc.setdefault("kind", "Namespace")
        labels = doc["metadata"].setdefault("labels", {})
        labels.setdefault("kubernetes.io/metadata.name", name)
        doc.setdefault("spec", {"finalizers": ["kubernetes"]})
        doc["status"] = {"phase": "Active"}
        self.reconciler.stamp(doc, NAMESPACES)
        self.objects[NAMESPACES, None, name] = doc
        return doc

    # -- RBAC stand-in, namespace existence, PUT, strategic merge of named lists

    def _check_forbidden(
        self, verb: str, group: str, plural: str, sub: str | None, namespace: str | None, name: str | None
    ) -> None:
        resource = f"{plural}/{sub}" if sub else plural
        for rule, rule_ns, verbs in self.forbidden:
            if rule not in (resource, "*"):
                continue
            if rule_ns is not None and rule_ns != namespace:
                continue
            if verbs is not None and verb not in verbs:
                continue
            kind = f"{plural}.{group}" if group else plural
            what = f'{kind} "{name}"' if name else kind
            where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
            raise _status_error(
                403, "Forbidden",
                f'{what} is forbidden: User "system:serviceaccount:codeblue:codeblue-worker" cannot {verb} '
                f'resource "{resource}" in API group "{group}"{where}',
                name=name or "", group=group, kind=plural,
            )

    @staticmethod
    def _verb(request: kmock.Request) -> str:
        method = request.method.value if request.method is not None else ""
        if method == "GET":
            if request.params.get("watch") in ("true", "1"):
                return "watch"
            return "get" if request.name else "list"
        return {"POST": "create", "PATCH": "patch", "PUT": "update",
                "DELETE": "delete" if request.name else "deletecollection"}.get(method, method.lower())

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        """kmock's own errors in the API server's words (reason NotFound / AlreadyExists)."""
        try:
            return await self._handle_k8s(request)
        except kmock.KubernetesError as e:
            res = request.resource
            if res is None or res.plural is None:
                raise
            data = request.data if isinstance(request.data, dict) else {}
            name = request.name or ((data.get("metadata") or {}).get("name")) or ""
            what = f"{res.plural}.{res.group}" if res.group else res.plural
            if isinstance(e, kmock.KubernetesObjectNotFoundError):
                raise _status_error(404, "NotFound", f'{what} "{name}" not found', name=name, group=res.group or "",
                                    kind=res.plural) from None
            if isinstance(e, kmock.KubernetesResourceNotFoundError):
                raise _status_error(404, "NotFound", "the server could not find the requested resource") from None
            if e.status == 409 and e.reason == "Object Already Exists":
                raise _status_error(409, "AlreadyExists", f'{what} "{name}" already exists', name=name,
                                    group=res.group or "", kind=res.plural) from None
            raise

    async def _handle_k8s(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        res = request.resource
        if res is not None and res.plural is not None:
            data = request.data if isinstance(request.data, dict) else None
            name = request.name or ((data or {}).get("metadata") or {}).get("name")
            self._check_forbidden(self._verb(request), res.group or "", res.plural, request.subresource,
                                  request.namespace, name)
            if request.action == kmock.action.WATCH:
                return await self._watch(request)
            if request.action == kmock.action.CREATE and data is not None:
                namespace = request.namespace or (data.get("metadata") or {}).get("namespace")
                if request.namespace is not None and not self.reconciler.namespace_exists(request.namespace):
                    raise _status_error(404, "NotFound", f'namespaces "{request.namespace}" not found',
                                        name=request.namespace, kind="namespaces")
                data.setdefault("metadata", {})
                if namespace:
                    data["metadata"].setdefault("namespace", namespace)
                self.reconciler.stamp(data, res)
            elif request.method == kmock.method.PUT and request.name:
                return await self._replace(request)
            elif (
                request.action == kmock.action.UPDATE and data is not None
                and any(k.lower() == "content-type" and _STRATEGIC_MERGE in v for k, v in request.headers.items())
            ):
                current = self.reconciler.get(res, request.namespace, request.name) if request.name is not None else None
                if current is not None:
                    merged = _merge_named_lists(data, current.raw)
                    data.clear()
                    data.update(merged)
        return await super()._handle(request)

    async def _replace(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        res = request.resource
        assert res is not None and request.name is not None
        obj = self.reconciler.get(res, request.namespace, request.name)
        if obj is None:
            raise _status_error(404, "NotFound", f'{res.plural} "{request.name}" not found', name=request.name, kind=res.plural)
        data = request.data if isinstance(request.data, dict) else {}
        old = copy.deepcopy(obj.raw)
        if request.subresource == "scale" and res == DEPLOYMENTS:
            new = old
            new.setdefault("spec", {})["replicas"] = int((data.get("spec") or {}).get("replicas") or 0)
        elif request.subresource == "status":
            new = dict(old, status=data.get("status") or {})
        elif request.subresource is None:
            meta = dict(data.get("metadata") or {})
            for k in ("uid", "creationTimestamp", "generation", "namespace", "name"):
                if k in (old.get("metadata") or {}):
                    meta[k] = old["metadata"][k]
            new = dict(data, metadata=meta)
            if "status" in old:
                new["status"] = old["status"]
        else:
            raise kmock.KubernetesEndpointNotFoundError()
        obj.create(new)
        self._after_write(request)
        if request.subresource == "scale":
            return aiohttp.web.json_response(self._scale(request.namespace, request.name))
        return aiohttp.web.json_response(obj.raw)

    def _after_write(self, request: kmock.Request) -> None:
        res = request.resource
        if res is None or request.name is None:
            return
        obj = self.reconciler.get(res, request.namespace, request.name)
        if obj is None:
            return
        if res == DEPLOYMENTS and request.namespace:
            self.reconciler.observe_spec(request.namespace, request.name)
        self.reconciler.bump_resource_version(obj)

    def _scale(self, namespace: str | None, name: str | None) -> dict[str, Any]:
        obj = self.reconciler.get(DEPLOYMENTS, namespace, name or "")
        if obj is None:
            raise _status_error(404, "NotFound", f'deployments.apps "{name}" not found', name=name, kind="deployments")
        raw = obj.raw
        meta = raw.get("metadata") or {}
        match_labels = ((raw.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        return {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta},
            "spec": {"replicas": int((raw.get("spec") or {}).get("replicas") or 0)},
            "status": {
                "replicas": int((raw.get("status") or {}).get("replicas") or 0),
                "selector": ",".join(f"{k}={v}" for k, v in sorted(match_labels.items())),
            },
        }

    # -- fallbacks (kmock calls these after it has stored the change)

    async def _serve_fetch(self, request: kmock.Request) -> Any:
        if request.resource == PODS and request.subresource == "log":
            params = request.params
            tail = params.get("tailLines")
            try:
                tail_lines = int(tail) if tail not in (None, "") else None
            except ValueError:
                raise _status_error(400, "BadRequest", f"invalid tailLines: {tail!r}") from None
            try:
                text = self.reconciler.pod_log(
                    request.namespace or "", request.name or "",
                    container=params.get("container") or None,
                    tail_lines=tail_lines,
                    previous=params.get("previous") in ("true", "1"),
                )
            except PodLogError as e:
                reason = "NotFound" if e.status == 404 else "BadRequest"
                raise _status_error(e.status, reason, e.message, name=request.name, kind="pods") from None
            return text.encode()
        if request.resource == DEPLOYMENTS and request.subresource == "scale":
            return self._scale(request.namespace, request.name)
        if request.subresource not in (None, "status"):
            raise kmock.KubernetesEndpointNotFoundError()
        # kmock's fetch of one object returns its raw dict (typed as any payload)
        obj = cast(dict[str, Any], await super()._serve_fetch(request))
        version = cluster_api.wants_table(_header(request.headers, "Accept"))
        if version and request.subresource is None and request.resource is not None:
            return cluster_api.table(request.resource, self._kind(request.resource), [obj], self.reconciler.clock(),
                                     version=version, include_object=request.params.get("includeObject", "Metadata"),
                                     resource_version=str(self.reconciler.resource_version))
        return obj

    async def _serve_update(self, request: kmock.Request) -> Any:
        self._after_write(request)
        if request.resource == DEPLOYMENTS and request.subresource == "scale":
            return self._scale(request.namespace, request.name)
        return await super()._serve_update(request)

    async def _serve_create(self, request: kmock.Request) -> Any:
        data = request.data if isinstance(request.data, dict) else {}
        name = (data.get("metadata") or {}).get("name")
        namespace = request.namespace or (data.get("metadata") or {}).get("namespace")
        if request.resource == SERVICES and name:
            obj = self.reconciler.get(SERVICES, namespace, name)
            if obj is not None:
                spec = dict(obj.raw.get("spec") or {})
                if spec.get("type", "ClusterIP") == "ClusterIP" and not spec.get("clusterIP"):
                    spec.setdefault("type", "ClusterIP")
                    spec["clusterIP"] = self.reconciler.next_cluster_ip()
                    spec["clusterIPs"] = [spec["clusterIP"]]
                    obj["spec"] = spec
        if request.resource == DEPLOYMENTS and name and namespace:
            self.reconciler.observe_spec(namespace, name)
        return await super()._serve_create(request)

    async def _serve_list(self, request: kmock.Request) -> Any:
        payload = await super()._serve_list(request)
        if not isinstance(payload, dict) or request.resource is None:
            return payload
        items = self._select(request, payload.get("items", []))
        items.sort(key=lambda i: ((i.get("metadata") or {}).get("namespace") or "", (i.get("metadata") or {}).get("name") or ""))
        return self._list_payload(request.resource, items, request.params, _header(request.headers, "Accept"))

    # -- what kubectl needs beyond kmock: discovery, typed lists, field selectors, Tables, watches

    def _kind(self, res: kmock.resource) -> str:
        info = self.resources[res] if res in self.resources else None
        return (info.kind if info is not None else None) or (res.plural or "").capitalize()

    @staticmethod
    def _field_terms(params: Mapping[str, str]) -> list[tuple[str, str, str]]:
        try:
            return cluster_api.parse_field_selector(params.get("fieldSelector", ""))
        except cluster_api.FieldSelectorError as e:
            raise _status_error(400, "BadRequest", str(e)) from None

    def _select(self, request: kmock.Request, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        labels = parse_label_selector(request.params.get("labelSelector", ""))
        fields = self._field_terms(request.params)
        return [
            i for i in items
            if selector_matches(labels, (i.get("metadata") or {}).get("labels")) and cluster_api.fields_match(fields, i)
        ]

    def _list_payload(
        self, res: kmock.resource, items: list[dict[str, Any]], params: Mapping[str, str], accept: str | None
    ) -> dict[str, Any]:
        rv = str(self.reconciler.resource_version)
        version = cluster_api.wants_table(accept)
        if version:
            return cluster_api.table(res, self._kind(res), items, self.reconciler.clock(), version=version,
                                     include_object=params.get("includeObject", "Metadata"), resource_version=rv)
        return cluster_api.typed_list(res, self._kind(res), items, rv)

    async def _serve_server_version(self, request: kmock.Request) -> Any:
        return dict(cluster_api.SERVER_VERSION)

    async def _serve_api(self, request: kmock.Request) -> Any:
        return cluster_api.api_versions(f"{request.url.host}:{request.url.port}")

    async def _serve_apis(self, request: kmock.Request) -> Any:
        return cluster_api.api_group_list(self.resources)

    async def _serve_group(self, request: kmock.Request) -> Any:
        group = cluster_api.api_group(self.resources, (request.resource.group if request.resource else None) or "")
        if group is None:
            raise _status_error(404, "NotFound", "the server could not find the requested resource")
        return group

    async def _serve_version(self, request: kmock.Request) -> Any:
        res = request.resource
        listing = None
        if res is not None and res.version:
            listing = cluster_api.api_resource_list(self.resources, res.group or "", res.version)
        if listing is None:
            raise _status_error(404, "NotFound", "the server could not find the requested resource")
        return listing

    def _snapshot(self, request: kmock.Request) -> dict[tuple[str | None, str], dict[str, Any]]:
        """The objects a watch on `request` sees now, by (namespace, name)."""
        res = request.resource
        found = [
            obj.raw for (r, ns, name), obj in list(self.objects.items())
            if r == res and not obj.deleted
            and (request.namespace is None or ns == request.namespace)
            and (request.name is None or name == request.name)
        ]
        return {
            ((o.get("metadata") or {}).get("namespace"), (o.get("metadata") or {}).get("name") or ""): o
            for o in self._select(request, found)
        }

    async def _watch(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        """A watch as the API server streams it: ADDED for what the client has not seen (all of
        it without a resourceVersion), then MODIFIED/DELETED as the store changes, whoever
        changed it (the reconciler writes straight into the store); ends after timeoutSeconds."""
        res = request.resource
        assert res is not None and request._raw_request is not None
        kind, api_version = self._kind(res), cluster_api.api_version_of(res)
        table_version = cluster_api.wants_table(_header(request.headers, "Accept"))
        include = request.params.get("includeObject", "Metadata")
        try:
            since = int(request.params.get("resourceVersion") or 0)
        except ValueError:
            since = 0
        try:
            timeout = float(request.params.get("timeoutSeconds") or 1800)
        except ValueError:
            timeout = 1800.0
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request._raw_request)

        def version_of(o: Mapping[str, Any]) -> str:
            rv = (o.get("metadata") or {}).get("resourceVersion")
            return str(rv) if rv is not None else json.dumps(o, sort_keys=True, default=str)

        def newer(o: Mapping[str, Any]) -> bool:
            try:
                return int((o.get("metadata") or {}).get("resourceVersion") or 0) > since
            except ValueError:
                return True

        async def send(event: str, o: dict[str, Any]) -> None:
            o = dict(o, kind=o.get("kind") or kind, apiVersion=o.get("apiVersion") or api_version)
            body: dict[str, Any] = o
            if table_version and event != "BOOKMARK":
                body = cluster_api.table(res, kind, [o], self.reconciler.clock(), version=table_version,
                                         include_object=include)
            await response.write(json.dumps({"type": event, "object": body}).encode() + b"\n")

        seen: dict[tuple[str | None, str], tuple[str, dict[str, Any]]] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        first = True
        try:
            while loop.time() < deadline:
                transport = request._raw_request.transport
                if transport is None or transport.is_closing():
                    break
                now = self._snapshot(request)
                for key, o in now.items():
                    v = version_of(o)
                    if key not in seen:
                        if first and since and not newer(o):
                            seen[key] = (v, o)
                            continue
                        await send("MODIFIED" if first and since else "ADDED", o)
                    elif seen[key][0] != v:
                        await send("MODIFIED", o)
                    seen[key] = (v, o)
                for key in [k for k in seen if k not in now]:
                    await send("DELETED", seen.pop(key)[1])
                first = False
                await asyncio.sleep(0.1)
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client went away
        return response


class SandboxCluster:
    """An API server on 127.0.0.1 with a Deployment controller; an async context manager.

    `reconcile_interval=None` runs no background reconciler: only `await cluster.reconcile()`
    moves pods (fully deterministic tests).
    """

    def __init__(
        self,
        *,
        bad_tags: Iterable[str] = (),
        oom_tags: Iterable[str] = (),
        reconcile_interval: float | None = 0.2,
        pod_start_seconds: float = 0.0,
        crash_period_seconds: float = 10.0,
        metrics: bool = True,
        host: str = "127.0.0.1",
        port: int | None = None,
        context_namespace: str = "healthcare-prod",
    ) -> None:
        self.behaviour = Behaviour(
            bad_tags=set(bad_tags),
            oom_tags=set(oom_tags),
            pod_start_seconds=pod_start_seconds,
            crash_period_seconds=crash_period_seconds,
            metrics_enabled=metrics,
        )
        self.reconcile_interval = reconcile_interval
        self.emulator = SandboxEmulator(self.behaviour)
        self.emulator.resources.load_data(_bundled_resources())
        if not metrics:
            for res in [r for r in self.emulator.resources if r.group == "metrics.k8s.io"]:
                del self.emulator.resources[res]
        self.reconciler: Reconciler = self.emulator.reconciler
        self.apply(_node())  # the node every pod is bound to (spec.nodeName)
        self._host = host
        self._port = port
        self._context_namespace = context_namespace
        self._server: kmock.Server | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._task: asyncio.Task[None] | None = None
        self._kubeconfig_path: Path | None = None

    # ------------------------------------------------------------------ behaviour knobs

    @property
    def bad_tags(self) -> set[str]:
        """Image tags whose containers crash-loop (mutable: add/discard at any time)."""
        return self.behaviour.bad_tags

    @property
    def oom_tags(self) -> set[str]:
        """Image tags whose containers are OOMKilled in a loop (mutable)."""
        return self.behaviour.oom_tags

    def forbid(self, resource: str, *, namespace: str | None = None, verbs: Iterable[str] | None = None) -> None:
        """Answer 403 to requests on `resource` ("deployments", "deployments/scale", "pods/log",
        "*"), optionally only in `namespace` and only for `verbs` (get, list, patch, ...)."""
        self.emulator.forbidden.append((resource, namespace, frozenset(verbs) if verbs is not None else None))

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the sandbox cluster is not running (use `async with SandboxCluster()`)")
        return str(self._server.url).rstrip("/")

    @property
    def kubeconfig_path(self) -> Path:
        if self._kubeconfig_path is None:
            raise RuntimeError("the sandbox cluster is not running (use `async with SandboxCluster()`)")
        return self._kubeconfig_path

    def api_client(self) -> kubernetes.client.ApiClient:
        """A new client configured from the kubeconfig; the caller closes it."""
        return kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig_path))

    async def __aenter__(self) -> SandboxCluster:
        stack = contextlib.AsyncExitStack()
        try:
            await stack.enter_async_context(self.emulator)
            self._server = await stack.enter_async_context(kmock.Server(self.emulator, host=self._host, port=self._port))
            self._tmpdir = tempfile.TemporaryDirectory(prefix="codeblue-sandbox-")
            stack.callback(self._tmpdir.cleanup)
            self._kubeconfig_path = Path(self._tmpdir.name) / "kubeconfig"
            self._kubeconfig_path.write_text(yaml.safe_dump(self.kubeconfig()))
        except BaseException:
            await stack.aclose()
            self._server = None
            raise
        self._stack = stack
        if self.reconcile_interval is not None:
            self._task = asyncio.create_task(self._reconcile_loop(), name="sandbox-reconciler")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
        self._server = None
        self._kubeconfig_path = None

    def kubeconfig(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "codeblue-sandbox", "cluster": {"server": self.url}}],
            "users": [{"name": "codeblue-sandbox", "user": {}}],
            "contexts": [{
                "name": "codeblue-sandbox",
                "context": {"cluster": "codeblue-sandbox", "user": "codeblue-sandbox", "namespace": self._context_namespace},
            }],
            "current-context": "codeblue-sandbox",
            "preferences": {},
        }

    async def _reconcile_loop(self) -> None:
        assert self.reconcile_interval is not None
        while True:
            try:
                self.reconciler.reconcile()
                self._trim_request_log()
            except Exception:  # keep reconciling: one odd object must not stop the cluster
                log.exception("sandbox reconcile pass failed")
            await asyncio.sleep(self.reconcile_interval)

    def _trim_request_log(self) -> None:
        # kmock records every request (and every error) for assertions; a drill runs for hours.
        requests = getattr(self.emulator, "_requests", None)
        if isinstance(requests, list) and len(requests) > 2 * _KEEP_REQUEST_LOG:
            del requests[:-_KEEP_REQUEST_LOG]
        with contextlib.suppress(RuntimeError):
            errors = self.emulator.errors
            if len(errors) > 2 * _KEEP_REQUEST_LOG:
                del errors[:-_KEEP_REQUEST_LOG]

    async def reconcile(self) -> None:
        """One reconcile pass now (deterministic tests); the background loop keeps running."""
        self.reconciler.reconcile()

    # ------------------------------------------------------------------ seeding & helpers

    def ensure_namespace(self, namespace: str, labels: Mapping[str, str] | None = None) -> None:
        if not self.reconciler.namespace_exists(namespace):
            self.emulator.add_namespace({"metadata": {"name": namespace, "labels": dict(labels or {})}})

    def apply(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace an object directly in the store (no HTTP, no RBAC)."""
        doc = copy.deepcopy(dict(body))
        api_version, kind = doc["apiVersion"], doc["kind"]
        group, _, version = api_version.rpartition("/")
        plural = next(
            (r.plural for r in self.emulator.resources
             if r.group == group and r.version == version and self.emulator.resources[r].kind == kind),
            kind.lower() + "s",
        )
        res = kmock.resource(group, version, plural)
        meta = doc.setdefault("metadata", {})
        namespace, name = meta.get("namespace"), meta["name"]
        if res == NAMESPACES:
            self.ensure_namespace(name, meta.get("labels"))
            made = self.reconciler.get(NAMESPACES, None, name)
            assert made is not None  # ensure_namespace just added it
            return made.raw
        if namespace:
            self.ensure_namespace(namespace)
        self.reconciler.stamp(doc, res)
        if res == SERVICES:
            spec = doc.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            if spec["type"] == "ClusterIP" and not spec.get("clusterIP"):
                spec["clusterIP"] = self.reconciler.next_cluster_ip()
                spec["clusterIPs"] = [spec["clusterIP"]]
        self.emulator.objects[res, namespace, name] = doc
        if res == DEPLOYMENTS:
            self.reconciler.observe_spec(namespace, name)
        return doc

    async def seed_healthcare_prod(
        self,
        namespace: str = "healthcare-prod",
        gateway: str = "api-gateway",
        image_repo: str = "registry.local/api-gateway",
        tag: str = "v1.4.2",
        replicas: int = 3,
        bad_tags: Iterable[str] = ("v1.5.0",),
        oom_tags: Iterable[str] = ("v1.5.0-oom",),
        *,
        release: str = "healthcare-platform",
        database_url: str | None = "postgresql://postgres@127.0.0.1:5432/postgres",
        db_secret_name: str = "healthcare-db-secret",
        db_secret_key: str = "DATABASE_URL",
        portal_replicas: int = 2,
        portal_release: str | None = None,
        portal_tag: str = "v2.3.1",
    ) -> None:
        """The production namespace of the runbook: the gateway (at `tag`), a healthy
        patient-portal, their Services, and the database Secret; then one reconcile pass."""
        self.bad_tags.update(bad_tags)
        self.oom_tags.update(oom_tags)
        self.ensure_namespace(namespace, {"environment": "production"})
        self.apply(_deployment(namespace, gateway, f"{image_repo}:{tag}", replicas, release, port=8080, memory="512Mi"))
        self.apply(_service(namespace, gateway, release, target_port=8080))
        portal_image = f"{image_repo.rsplit('/', 1)[0]}/patient-portal:{portal_tag}"
        self.add_service(namespace, "patient-portal", portal_image, portal_replicas, portal_release or release, port=3000)
        if database_url is not None:
            self.apply({
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {"name": db_secret_name, "namespace": namespace,
                             "labels": {"app.kubernetes.io/instance": release}},
                "data": {db_secret_key: base64.b64encode(database_url.encode()).decode()},
            })
        await self.reconcile()

    def add_service(self, namespace: str, name: str, image: str, replicas: int, release: str, *, port: int,
                    memory: str = "256Mi") -> None:
        """A Deployment and its Service, labelled as `release`'s (helm acts on them with it)."""
        self.apply(_deployment(namespace, name, image, replicas, release, port=port, memory=memory))
        self.apply(_service(namespace, name, release, target_port=port))

    def set_image(self, namespace: str, deployment: str, image: str, container: str | None = None) -> None:
        """What `kubectl set image` or a helm upgrade does to the pod template (a new revision)."""
        obj = self.reconciler.get(DEPLOYMENTS, namespace, deployment)
        if obj is None:
            raise KeyError(f"deployment {namespace}/{deployment} not found")
        spec = copy.deepcopy(obj.raw.get("spec") or {})
        containers = spec["template"]["spec"]["containers"]
        target = next((c for c in containers if container is None or c["name"] == container), None)
        if target is None:
            raise KeyError(f"container {container} not in deployment {namespace}/{deployment}")
        target["image"] = image
        obj.patch({"spec": {"template": spec["template"]}})
        self.reconciler.observe_spec(namespace, deployment)

    def exhaust_connection_pool(self, namespace: str, deployment: str) -> None:
        """The deployment's current pods run their database pool dry (readiness fails, logs say
        `connection pool exhausted`); pods of a later template, e.g. after a rollout restart, are fine."""
        obj = self.reconciler.get(DEPLOYMENTS, namespace, deployment)
        if obj is None:
            raise KeyError(f"deployment {namespace}/{deployment} not found")
        self.behaviour.pool_exhausted_templates.add(template_hash((obj.raw.get("spec") or {}).get("template") or {}))

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self.reconciler.get(DEPLOYMENTS, namespace, name)
        return copy.deepcopy(obj.raw) if obj is not None else None

    def pods(self, namespace: str, deployment: str | None = None) -> list[dict[str, Any]]:
        """Current pods (of one deployment's current template, if given), sorted by name."""
        if deployment is not None:
            return self.reconciler.deployment_pods(namespace, deployment)
        return sorted(
            (copy.deepcopy(obj.raw) for (res, ns, _), obj in list(self.emulator.objects.items())
             if res == PODS and ns == namespace and not obj.deleted),
            key=lambda p: p["metadata"]["name"],
        )

    def gateway_healthy(self, namespace: str = "healthcare-prod", deployment: str = "api-gateway") -> bool:
        """True when every desired replica of the deployment's current template is ready."""
        return self.reconciler.deployment_healthy(namespace, deployment)

    def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        obj = self.reconciler.get(SECRETS, namespace, name)
        if obj is None:
            return None
        value = (obj.raw.get("data") or {}).get(key)
        return base64.b64decode(value).decode() if value is not None else None


@functools.cache
def _bundled_resources() -> bytes:
    """kmock's bundled discovery data (what `resources.load_bundled()` reads), read once
    and without the deprecated `importlib.resources.read_binary`."""
    return gzip.decompress(importlib.resources.files("kmock._internal").joinpath("resources.json.gz").read_bytes())


def _labels(name: str, release: str) -> dict[str, str]:
    return {
        "app": name,
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": release,
        "app.kubernetes.io/managed-by": "Helm",
    }


def _deployment(namespace: str, name: str, image: str, replicas: int, release: str, *, port: int, memory: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": _labels(name, release),
            "annotations": {"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": namespace},
        },
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": {"app": name, "app.kubernetes.io/instance": release}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": name, "app.kubernetes.io/instance": release}},
                "spec": {
                    "containers": [{
                        "name": name,
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
                        "resources": {
                            "requests": {"cpu": "100m", "memory": "256Mi" if memory != "256Mi" else "128Mi"},
                            "limits": {"cpu": "1", "memory": memory},
                        },
                        "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 5},
                        "livenessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10},
                    }],
                },
            },
        },
    }


def _node() -> dict[str, Any]:
    ready_since = rfc3339(time.time())
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": NODE_NAME, "labels": {
            "kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "node-role.kubernetes.io/worker": "",
        }},
        "spec": {"podCIDR": "10.42.0.0/16", "podCIDRs": ["10.42.0.0/16"]},
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "kubelet is posting ready status", "lastHeartbeatTime": ready_since,
                            "lastTransitionTime": ready_since}],
            "addresses": [{"type": "InternalIP", "address": NODE_IP}, {"type": "Hostname", "address": NODE_NAME}],
            "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"},
            "allocatable": {"cpu": "8", "memory": "31Gi", "pods": "110", "ephemeral-storage": "95Gi"},
            "nodeInfo": {
                "kubeletVersion": cluster_api.SERVER_VERSION["gitVersion"], "kubeProxyVersion": "",
                "osImage": "CodeBlue sandbox", "kernelVersion": "6.1.0", "operatingSystem": "linux",
                "architecture": "amd64", "containerRuntimeVersion": "containerd://1.7.27",
                "machineID": "", "systemUUID": "", "bootID": "",
            },
        },
    }


def _service(namespace: str, name: str, release: str, *, target_port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": _labels(name, release)},
        "spec": {
            "type": "ClusterIP",
            "selector": {"app": name, "app.kubernetes.io/instance": release},
            "ports": [{"name": "http", "port": 80, "targetPort": target_port, "protocol": "TCP"}],
        },
    }


__all__ = ["SandboxCluster", "SandboxEmulator", "labels_match", "parse_label_selector", "selector_matches"]
