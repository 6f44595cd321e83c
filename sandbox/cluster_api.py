"""What a real API server answers that kmock's emulator does not, for the `kubectl` binary.

`sandbox.cluster.SandboxEmulator` calls these; they are pure functions of the object store:

* discovery as the API server serves it: `/api`, `/api/v1`, `/apis`, `/apis/G`, `/apis/G/V`
  with a correct `groupVersion`, a deterministic preferred version per group, and
  subresources with their own kind and verbs (`pods/log` get, `deployments/scale` an
  `autoscaling/v1` Scale); `/version` as a current release;
* typed lists (`PodList`, `apiVersion: v1`, a numeric `resourceVersion`), which kubectl needs
  to decode anything;
* field selectors (`metadata.name=...`, `involvedObject.uid=...`) on lists and watches;
* server-side printing: `Accept: application/json;as=Table;g=meta.k8s.io` answered with a
  `meta.k8s.io` Table whose columns are the API server's own for pods, services,
  deployments, replica sets, events, secrets, config maps, endpoints and namespaces
  (anything else: Name and Created At, as the server's default convertor does).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import kmock

SERVER_VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.0",
    "gitCommit": "60a317eadfcb839692a68eab88b2096f4d708f4f",
    "gitTreeState": "clean",
    "buildDate": "2025-04-23T13:07:04Z",
    "goVersion": "go1.24.2",
    "compiler": "gc",
    "platform": "linux/amd64",
}

# The order a real API server lists its groups in (kubectl resolves ambiguous names by it).
_GROUP_ORDER = [
    "", "apiregistration.k8s.io", "apps", "events.k8s.io", "authentication.k8s.io", "authorization.k8s.io",
    "autoscaling", "batch", "certificates.k8s.io", "networking.k8s.io", "policy", "rbac.authorization.k8s.io",
    "storage.k8s.io", "admissionregistration.k8s.io", "apiextensions.k8s.io", "scheduling.k8s.io",
    "coordination.k8s.io", "node.k8s.io", "discovery.k8s.io", "flowcontrol.apiserver.k8s.io",
]

_MUTATE = ["get", "patch", "update"]
# subresource -> (kind, group, version, verbs); None group/version: the parent's.
_SUBRESOURCES: dict[str, tuple[str | None, str | None, str | None, list[str]]] = {
    "status": (None, None, None, _MUTATE),
    "scale": ("Scale", "autoscaling", "v1", _MUTATE),
    "log": ("Pod", None, None, ["get"]),
    "exec": ("PodExecOptions", None, None, ["create", "get"]),
    "attach": ("PodAttachOptions", None, None, ["create", "get"]),
    "portforward": ("PodPortForwardOptions", None, None, ["create", "get"]),
    "binding": ("Binding", None, None, ["create"]),
    "eviction": ("Eviction", "policy", "v1", ["create"]),
    "ephemeralcontainers": (None, None, None, _MUTATE),
    "resize": (None, None, None, _MUTATE),
    "finalize": (None, None, None, ["update"]),
    "token": ("TokenRequest", "authentication.k8s.io", "v1", ["create"]),
    "approval": (None, None, None, _MUTATE),
}
_PROXY_VERBS = ["create", "delete", "get", "patch", "update"]


def _version_key(version: str) -> tuple[int, int, int]:
    """Kubernetes' version priority: GA > beta > alpha, then the higher number."""
    m = re.match(r"^v(\d+)(?:(alpha|beta)(\d+))?$", version)
    if m is None:
        return (-1, 0, 0)
    stability = {"alpha": 0, "beta": 1, None: 2}[m[2]]
    return (stability, int(m[1]), int(m[3] or 0))


def _group_rank(group: str) -> tuple[int, str]:
    return (_GROUP_ORDER.index(group), "") if group in _GROUP_ORDER else (len(_GROUP_ORDER), group)


def _served(resources: kmock.ResourcesArray) -> dict[str, dict[str, list[kmock.resource]]]:
    """group -> version (preferred first) -> resources."""
    out: dict[str, dict[str, list[kmock.resource]]] = {}
    for res in resources:
        if res.group is None or res.version is None or res.plural is None:
            continue
        out.setdefault(res.group, {}).setdefault(res.version, []).append(res)
    return {
        g: dict(sorted(versions.items(), key=lambda kv: _version_key(kv[0]), reverse=True))
        for g, versions in sorted(out.items(), key=lambda kv: _group_rank(kv[0]))
    }


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _group_entry(group: str, versions: Iterable[str]) -> dict[str, Any]:
    versions = list(versions)
    return {
        "name": group,
        "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
        "preferredVersion": {"groupVersion": f"{group}/{versions[0]}", "version": versions[0]},
    }


def api_group_list(resources: kmock.ResourcesArray) -> dict[str, Any]:
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group_entry(g, versions) for g, versions in _served(resources).items() if g],
    }


def api_group(resources: kmock.ResourcesArray, group: str) -> dict[str, Any] | None:
    versions = _served(resources).get(group)
    if not group or not versions:
        return None
    return dict(_group_entry(group, versions), kind="APIGroup", apiVersion="v1")


def api_resource_list(resources: kmock.ResourcesArray, group: str, version: str) -> dict[str, Any] | None:
    served = _served(resources).get(group, {}).get(version)
    if not served:
        return None
    entries: list[dict[str, Any]] = []
    for res in sorted(served, key=lambda r: r.plural or ""):
        info = resources[res]
        kind = info.kind or (res.plural or "").capitalize()
        entry: dict[str, Any] = {
            "name": res.plural,
            "singularName": info.singular or kind.lower(),
            "namespaced": bool(info.namespaced),
            "kind": kind,
            "verbs": sorted(info.verbs),
        }
        if info.shortnames:
            entry["shortNames"] = sorted(info.shortnames)
        if info.categories:
            entry["categories"] = sorted(info.categories)
        entries.append(entry)
        for sub in sorted(info.subresources):
            sub_kind, sub_group, sub_version, verbs = _SUBRESOURCES.get(sub, (None, None, None, _MUTATE))
            if sub == "proxy":
                sub_kind, verbs = f"{kind}ProxyOptions", _PROXY_VERBS
            sub_entry: dict[str, Any] = {
                "name": f"{res.plural}/{sub}",
                "singularName": "",
                "namespaced": bool(info.namespaced),
                "kind": sub_kind or kind,
                "verbs": verbs,
            }
            if sub_group is not None:
                sub_entry["group"], sub_entry["version"] = sub_group, sub_version
            entries.append(sub_entry)
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": entries,
    }


def api_version_of(res: kmock.resource) -> str:
    return f"{res.group}/{res.version}" if res.group else str(res.version)


def typed_list(res: kmock.resource, kind: str, items: list[dict[str, Any]], resource_version: str) -> dict[str, Any]:
    """What the API server answers to a list: kind `<Kind>List`, and each item typed too."""
    api_version = api_version_of(res)
    typed = []
    for item in items:
        if item.get("kind") and item.get("apiVersion"):
            typed.append(item)
        else:
            typed.append(dict(item, kind=item.get("kind") or kind, apiVersion=item.get("apiVersion") or api_version))
    return {"kind": f"{kind}List", "apiVersion": api_version, "metadata": {"resourceVersion": resource_version},
            "items": typed}


# ---------------------------------------------------------------------------------- field selectors

_FIELD_TERM = re.compile(r"^\s*(?P<key>[A-Za-z0-9_.\-/]+)\s*(?P<op>==|!=|=)\s*(?P<value>.*?)\s*$")


class FieldSelectorError(ValueError):
    pass


def parse_field_selector(selector: str) -> list[tuple[str, str, str]]:
    """`metadata.name=a,involvedObject.kind!=Pod` -> [(path, op, value)]; op is = or !=."""
    terms = []
    for part in selector.split(","):
        if not part.strip():
            continue
        m = _FIELD_TERM.match(part)
        if m is None:
            raise FieldSelectorError(f"invalid selector: {selector!r}; can't understand {part!r}")
        terms.append((m["key"], "!=" if m["op"] == "!=" else "=", m["value"].replace("\\,", ",").replace("\\=", "=")))
    return terms


def _field(obj: Mapping[str, Any], path: str) -> str:
    node: Any = obj
    for key in path.split("."):
        if not isinstance(node, Mapping):
            return ""
        node = node.get(key)
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def fields_match(terms: list[tuple[str, str, str]], obj: Mapping[str, Any]) -> bool:
    return all((_field(obj, path) == value) == (op == "=") for path, op, value in terms)


# ---------------------------------------------------------------------------------- tables


def wants_table(accept: str | None) -> str | None:
    """The Table version kubectl asks for (`v1` or `v1beta1`) in its Accept header, if any."""
    for part in (accept or "").split(","):
        params = {k.strip(): v.strip() for k, _, v in (p.partition("=") for p in part.split(";")[1:])}
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io":
            return params.get("v") or "v1"
    return None


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery's duration.HumanDuration, as the AGE column shows it."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def _ts(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def _since(value: str | None, now: float) -> str:
    ts = _ts(value)
    return "<unknown>" if ts is None else human_duration(now - ts)


def _age(obj: Mapping[str, Any], now: float) -> str:
    return _since((obj.get("metadata") or {}).get("creationTimestamp"), now)


def _col(name: str, type_: str = "string", description: str = "", *, priority: int = 0, fmt: str = "") -> dict[str, Any]:
    return {"name": name, "type": type_, "format": fmt, "description": description, "priority": priority}


_NAME = _col("Name", fmt="name", description="Name must be unique within a namespace.")
_AGE = _col("Age", description="CreationTimestamp is a timestamp representing the server time when this object was created.")


def _selector_text(selector: Mapping[str, Any] | None) -> str:
    if not selector:
        return "<none>"
    structured = "matchLabels" in selector or "matchExpressions" in selector
    labels = (selector.get("matchLabels") or {}) if structured else selector
    parts = [f"{k}={v}" for k, v in sorted((labels or {}).items())]
    for expr in (selector.get("matchExpressions") or []) if structured else []:
        values = ",".join(expr.get("values") or [])
        parts.append(f"{expr.get('key')} {str(expr.get('operator', '')).lower()} ({values})")
    return ",".join(parts) or "<none>"


def _containers_images(spec: Mapping[str, Any]) -> tuple[str, str]:
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return ",".join(str(c.get("name")) for c in containers), ",".join(str(c.get("image")) for c in containers)


def _pod_row(pod: Mapping[str, Any], now: float) -> list[Any]:
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    containers = spec.get("containers") or []
    statuses = status.get("containerStatuses") or []
    reason = status.get("reason") or status.get("phase") or "Unknown"
    restarts, ready, last_restart = 0, 0, None
    has_running = False
    for cs in reversed(statuses):
        restarts += int(cs.get("restartCount") or 0)
        finished = _ts(((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt"))
        if finished is not None and (last_restart is None or finished > last_restart):
            last_restart = finished
        state = cs.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif (state.get("terminated") or {}).get("reason"):
            reason = state["terminated"]["reason"]
        elif state.get("terminated"):
            term = state["terminated"]
            reason = f"Signal:{term['signal']}" if term.get("signal") else f"ExitCode:{term.get('exitCode', 0)}"
        elif cs.get("ready") and state.get("running"):
            has_running = True
            ready += 1
    if reason == "Completed" and has_running:
        ready_cond = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        reason = "Running" if ready_cond else "NotReady"
    if meta.get("deletionTimestamp"):
        reason = "Terminating"
    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        restarts_text = f"{restarts} ({human_duration(now - last_restart)} ago)"
    gates = spec.get("readinessGates") or []
    return [
        meta.get("name"), f"{ready}/{len(containers)}", reason, restarts_text, _age(pod, now),
        status.get("podIP") or "<none>", spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        "<none>" if not gates else f"0/{len(gates)}",
    ]


def _service_ports(spec: Mapping[str, Any]) -> str:
    out = []
    for p in spec.get("ports") or []:
        text = f"{p.get('port')}"
        if p.get("nodePort"):
            text += f":{p['nodePort']}"
        out.append(f"{text}/{p.get('protocol', 'TCP')}")
    return ",".join(out) or "<none>"


def _service_row(svc: Mapping[str, Any], now: float) -> list[Any]:
    spec = svc.get("spec") or {}
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    external = ",".join(i.get("ip") or i.get("hostname") or "" for i in ingress) or ",".join(spec.get("externalIPs") or [])
    if not external:
        external = "<pending>" if spec.get("type") == "LoadBalancer" else "<none>"
    if spec.get("type") == "ExternalName":
        external = spec.get("externalName") or "<none>"
    return [
        (svc.get("metadata") or {}).get("name"), spec.get("type", "ClusterIP"), spec.get("clusterIP") or "<none>",
        external, _service_ports(spec), _age(svc, now), _selector_text(spec.get("selector")),
    ]


def _deployment_row(dep: Mapping[str, Any], now: float) -> list[Any]:
    spec, status = dep.get("spec") or {}, dep.get("status") or {}
    desired = 1 if spec.get("replicas") is None else int(spec["replicas"])
    containers, images = _containers_images(spec)
    return [
        (dep.get("metadata") or {}).get("name"), f"{int(status.get('readyReplicas') or 0)}/{desired}",
        int(status.get("updatedReplicas") or 0), int(status.get("availableReplicas") or 0), _age(dep, now),
        containers, images, _selector_text(spec.get("selector")),
    ]


def _replicaset_row(rs: Mapping[str, Any], now: float) -> list[Any]:
    spec, status = rs.get("spec") or {}, rs.get("status") or {}
    containers, images = _containers_images(spec)
    return [
        (rs.get("metadata") or {}).get("name"), int(spec.get("replicas") or 0), int(status.get("replicas") or 0),
        int(status.get("readyReplicas") or 0), _age(rs, now), containers, images, _selector_text(spec.get("selector")),
    ]


def _event_row(ev: Mapping[str, Any], now: float) -> list[Any]:
    involved = ev.get("involvedObject") or {}
    kind = str(involved.get("kind") or "").lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    first = ev.get("firstTimestamp") or ev.get("eventTime") or (ev.get("metadata") or {}).get("creationTimestamp")
    last = ev.get("lastTimestamp") or first
    count = int(ev.get("count") or 1)
    last_seen = _since(last, now)
    if count > 1:
        last_seen = f"{last_seen} (x{count} over {_since(first, now)})"
    source = ev.get("source") or {}
    source_text = ", ".join(x for x in (source.get("component"), source.get("host")) if x) or ev.get("reportingComponent") or ""
    return [
        last_seen, ev.get("type") or "", ev.get("reason") or "", target, involved.get("fieldPath") or "",
        source_text, str(ev.get("message") or "").strip(), _since(first, now), count,
        (ev.get("metadata") or {}).get("name"),
    ]


def _endpoints_text(ep: Mapping[str, Any]) -> str:
    pairs = []
    for subset in ep.get("subsets") or []:
        ports = subset.get("ports") or [{}]
        for address in subset.get("addresses") or []:
            for port in ports:
                pairs.append(f"{address.get('ip')}:{port['port']}" if port.get("port") else str(address.get("ip")))
    if not pairs:
        return "<none>"
    text = ",".join(pairs[:3])
    return text + (f" + {len(pairs) - 3} more..." if len(pairs) > 3 else "")


def _node_row(node: Mapping[str, Any], now: float) -> list[Any]:
    meta, spec, status = node.get("metadata") or {}, node.get("spec") or {}, node.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    state = "Ready" if ready and ready.get("status") == "True" else "NotReady" if ready else "Unknown"
    if spec.get("unschedulable"):
        state += ",SchedulingDisabled"
    roles = sorted(k.split("/", 1)[1] for k in meta.get("labels") or {} if k.startswith("node-role.kubernetes.io/"))
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    info = status.get("nodeInfo") or {}
    return [
        meta.get("name"), state, ",".join(roles) or "<none>", _age(node, now), info.get("kubeletVersion") or "",
        addresses.get("InternalIP") or "<none>", addresses.get("ExternalIP") or "<none>", info.get("osImage") or "",
        info.get("kernelVersion") or "", info.get("containerRuntimeVersion") or "",
    ]


def _namespace_phase(ns: Mapping[str, Any]) -> str:
    return str((ns.get("status") or {}).get("phase") or "Active")


# plural (core or apps) -> (columns, row builder)
_PRINTERS: dict[tuple[str, str], tuple[list[dict[str, Any]], Any]] = {
    ("", "pods"): ([
        _NAME,
        _col("Ready", description="The aggregate readiness state of this pod for accepting traffic."),
        _col("Status", description="The aggregate status of the containers in this pod."),
        _col("Restarts", description="The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
        _AGE,
        _col("IP", priority=1, description="IP address allocated to the pod."),
        _col("Node", priority=1, description="Name of the node the pod is assigned to."),
        _col("Nominated Node", priority=1, description="Name of the node the pod is nominated to."),
        _col("Readiness Gates", priority=1, description="Readiness gates of the pod."),
    ], _pod_row),
    ("", "services"): ([
        _NAME,
        _col("Type", description="The type of the service."),
        _col("Cluster-IP", description="The cluster IP of the service."),
        _col("External-IP", description="The external IPs of the service."),
        _col("Port(s)", description="The ports of the service."),
        _AGE,
        _col("Selector", priority=1, description="Route service traffic to pods with label keys and values matching this selector."),
    ], _service_row),
    ("apps", "deployments"): ([
        _NAME,
        _col("Ready", description="Number of the pod with ready state"),
        _col("Up-to-date", "integer", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
        _col("Available", "integer", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
        _AGE,
        _col("Containers", priority=1, description="Names of each container in the template."),
        _col("Images", priority=1, description="Images referenced by each container in the template."),
        _col("Selector", priority=1, description="Label selector for pods."),
    ], _deployment_row),
    ("apps", "replicasets"): ([
        _NAME,
        _col("Desired", "integer", "Replicas is the number of desired replicas."),
        _col("Current", "integer", "Replicas is the most recently observed number of replicas."),
        _col("Ready", "integer", "The number of ready replicas for this replica set."),
        _AGE,
        _col("Containers", priority=1, description="Names of each container in the template."),
        _col("Images", priority=1, description="Images referenced by each container in the template."),
        _col("Selector", priority=1, description="Selector is a label query over pods that should match the replica count."),
    ], _replicaset_row),
    ("", "events"): ([
        _col("Last Seen", description="The time at which the most recent occurrence of this event was recorded."),
        _col("Type", description="Type of this event (Normal, Warning), new types could be added in the future."),
        _col("Reason", description="This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
        _col("Object", description="The object that this event is about."),
        _col("Subobject", priority=1, description="The field of the object this event is about."),
        _col("Source", priority=1, description="The component reporting this event."),
        _col("Message", description="A human-readable description of the status of this operation."),
        _col("First Seen", priority=1, description="The time at which the event was first recorded."),
        _col("Count", "integer", "The number of times this event has occurred.", priority=1),
        _col("Name", priority=1, fmt="name", description="Name must be unique within a namespace."),
    ], _event_row),
    ("", "secrets"): ([
        _NAME,
        _col("Type", description="Used to facilitate programmatic handling of secret data."),
        _col("Data", "integer", "The number of keys in the secret."),
        _AGE,
    ], lambda o, now: [(o.get("metadata") or {}).get("name"), o.get("type") or "Opaque",
                       len(o.get("data") or {}) + len(o.get("stringData") or {}), _age(o, now)]),
    ("", "configmaps"): ([
        _NAME, _col("Data", "integer", "The number of keys in the config map."), _AGE,
    ], lambda o, now: [(o.get("metadata") or {}).get("name"),
                       len(o.get("data") or {}) + len(o.get("binaryData") or {}), _age(o, now)]),
    ("", "endpoints"): ([
        _NAME, _col("Endpoints", description="Endpoints of the service"), _AGE,
    ], lambda o, now: [(o.get("metadata") or {}).get("name"), _endpoints_text(o), _age(o, now)]),
    ("", "nodes"): ([
        _NAME,
        _col("Status", description="The status of the node"),
        _col("Roles", description="The roles of the node"),
        _AGE,
        _col("Version", description="Kubelet Version reported by the node."),
        _col("Internal-IP", priority=1, description="List of addresses reachable to the node. Queried from cloud provider, if available."),
        _col("External-IP", priority=1, description="List of addresses reachable to the node. Queried from cloud provider, if available."),
        _col("OS-Image", priority=1, description="OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
        _col("Kernel-Version", priority=1, description="Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
        _col("Container-Runtime", priority=1, description="ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
    ], _node_row),
    ("", "namespaces"): ([
        _NAME, _col("Status", description="The status of the namespace"), _AGE,
    ], lambda o, now: [(o.get("metadata") or {}).get("name"), _namespace_phase(o), _age(o, now)]),
}

_DEFAULT_COLUMNS = [
    _NAME,
    _col("Created At", "date", "CreationTimestamp is a timestamp representing the server time when this object was created."),
]


def table(
    res: kmock.resource, kind: str, objects: list[dict[str, Any]], now: float, *,
    version: str = "v1", include_object: str = "Metadata", resource_version: str = "",
) -> dict[str, Any]:
    """A meta.k8s.io Table of `objects` (of resource `res`), as `kubectl get` prints it."""
    columns, row_of = _PRINTERS.get((res.group or "", res.plural or ""), (_DEFAULT_COLUMNS, None))
    rows = []
    for obj in objects:
        meta = obj.get("metadata") or {}
        cells = row_of(obj, now) if row_of is not None else [meta.get("name"), meta.get("creationTimestamp")]
        row: dict[str, Any] = {"cells": cells}
        if include_object == "Object":
            row["object"] = dict(obj, kind=obj.get("kind") or kind, apiVersion=obj.get("apiVersion") or api_version_of(res))
        elif include_object != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": f"meta.k8s.io/{version}",
                             "metadata": copy.deepcopy(meta)}
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": columns,
        "rows": rows,
    }


__all__ = [
    "SERVER_VERSION", "FieldSelectorError", "api_group", "api_group_list", "api_resource_list", "api_versions",
    "fields_match", "human_duration", "parse_field_selector", "table", "typed_list", "wants_table",
]
