"""The controllers a real cluster runs, reduced to what the CodeBlue drill needs.

`kmock.KubernetesEmulator` stores objects and serves them, but nothing turns a Deployment
into ReplicaSets and Pods. `Reconciler` does, directly on the emulator's object store:

* Deployment -> one ReplicaSet per pod template (`pod-template-hash`), revisions counted in
  `deployment.kubernetes.io/revision`; a template change replaces all pods at once.
* Pods get a status from their image tag: tags in `Behaviour.bad_tags` crash-loop
  (CrashLoopBackOff, last termination `Error`), tags in `Behaviour.oom_tags` crash-loop with
  `OOMKilled`; any other tag runs ready with no restarts, unless its pod template is in
  `Behaviour.pool_exhausted_templates` (running, not ready, pool-exhausted log lines).
* Deployment and ReplicaSet status, Endpoints of Services, metrics.k8s.io PodMetrics.
* Pod log text for the `pods/NAME/log` subresource.
* core/v1 Events as the controllers and the kubelet record them (ScalingReplicaSet,
  SuccessfulCreate, Scheduled, Pulled/Created/Started, BackOff, Unhealthy, Killing), repeats
  counted, at most `MAX_EVENTS_PER_NAMESPACE` kept; NodeMetrics for the node.

Every method here is synchronous: called from the event loop that serves the emulator, a
whole reconcile pass runs without yielding, so no request ever sees a half-written state.
"""

from __future__ import annotations

import collections
import copy
import hashlib
import itertools
import json
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kmock

DEPLOYMENTS = kmock.resource("apps", "v1", "deployments")
REPLICASETS = kmock.resource("apps", "v1", "replicasets")
PODS = kmock.resource("", "v1", "pods")
SERVICES = kmock.resource("", "v1", "services")
ENDPOINTS = kmock.resource("", "v1", "endpoints")
NAMESPACES = kmock.resource("", "v1", "namespaces")
SECRETS = kmock.resource("", "v1", "secrets")
POD_METRICS = kmock.resource("metrics.k8s.io", "v1beta1", "pods")
EVENTS = kmock.resource("", "v1", "events")
NODES = kmock.resource("", "v1", "nodes")
NODE_METRICS = kmock.resource("metrics.k8s.io", "v1beta1", "nodes")
# Events kept per namespace (the oldest go first), as the API server's event TTL would.
MAX_EVENTS_PER_NAMESPACE = 300

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
RESTARTED_AT_ANNOTATION = "kubectl.kubernetes.io/restartedAt"
NODE_NAME = "sandbox-node-1"
NODE_IP = "10.0.0.11"

# The alphabet Kubernetes uses for generated name suffixes (no vowels, no ambiguous digits).
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def image_tag(image: str) -> str:
    """`registry.local:5000/api-gateway:v1.4.2@sha256:...` -> `v1.4.2` ('latest' if untagged)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else "latest"


def _canonical(value: Any) -> Any:
    """As the API server stores a template: a null or empty field is the same as none (so the
    template kubectl's `rollout undo` sends back, `creationTimestamp: null` and all, is the
    revision it came from)."""
    if isinstance(value, Mapping):
        out = {k: _canonical(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def template_hash(template: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(_canonical(template), sort_keys=True, default=str).encode()).digest()
    return "".join(_NAME_ALPHABET[b % len(_NAME_ALPHABET)] for b in digest[:10])


_BINARY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_DECIMAL_SUFFIXES = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def quantity_bytes(quantity: str | None) -> int | None:
    """'512Mi' -> 536870912, '1G' -> 10**9, '1000' -> 1000; None or garbage -> None."""
    if not quantity:
        return None
    q = str(quantity).strip()
    for suffixes in (_BINARY_SUFFIXES, _DECIMAL_SUFFIXES):
        for suffix, factor in suffixes.items():
            if q.endswith(suffix):
                try:
                    return int(float(q[: -len(suffix)]) * factor)
                except ValueError:
                    return None
    try:
        return int(float(q))
    except ValueError:
        return None


def labels_match(selector: Mapping[str, str] | None, labels: Mapping[str, str] | None) -> bool:
    """Equality-based selection as Services and `matchLabels` use it; empty selects nothing."""
    if not selector:
        return False
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


@dataclass
class Behaviour:
    """How the simulated workloads behave; mutable at any time (the next pass applies it)."""

    bad_tags: set[str] = field(default_factory=set)
    oom_tags: set[str] = field(default_factory=set)
    # Seconds a new pod stays Pending/ContainerCreating before its containers start.
    pod_start_seconds: float = 0.0
    # A crash-looping container restarts once per period (restartCount grows with pod age).
    crash_period_seconds: float = 10.0
    metrics_enabled: bool = True
    healthy_memory: str = "300Mi"
    crash_memory: str = "180Mi"
    oom_memory: str = "508Mi"
    # Per-tag override of the reported container memory usage, e.g. {"v1.6.0": "450Mi"}.
    memory_by_tag: dict[str, str] = field(default_factory=dict)
    # Pod-template hashes whose pods ran their database connection pool dry: running, /health
    # (readiness) failing, `ERROR connection pool exhausted` in their logs. Pods of a new
    # template (e.g. after `kubectl rollout restart`) start with a fresh pool and are healthy.
    pool_exhausted_templates: set[str] = field(default_factory=set)

    def mode(self, image: str) -> str:
        tag = image_tag(image)
        if tag in self.oom_tags:
            return "oom"
        if tag in self.bad_tags:
            return "crash"
        return "ok"

    def memory(self, image: str, limit: str | None = None) -> str:
        """Reported usage: the configured figure, kept in proportion below a smaller limit
        (healthy <= 60%, crash-looping <= 50%, OOM ~ 99% of it)."""
        tag = image_tag(image)
        if tag in self.memory_by_tag:
            return self.memory_by_tag[tag]
        mode = self.mode(image)
        usage = {"oom": self.oom_memory, "crash": self.crash_memory}.get(mode, self.healthy_memory)
        limit_bytes = quantity_bytes(limit)
        if limit_bytes is None:
            return usage
        cap = limit_bytes * {"oom": 0.99, "crash": 0.5}.get(mode, 0.6)
        usage_bytes = quantity_bytes(usage) or 0
        if mode == "oom":
            return f"{int(cap) // 1024}Ki"
        return usage if usage_bytes <= cap else f"{int(cap) // 1024}Ki"

    def pool_exhausted(self, pod: Mapping[str, Any]) -> bool:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        return labels.get("pod-template-hash") in self.pool_exhausted_templates


class PodLogError(Exception):
    """A pod's log cannot be served; `status` is the HTTP status a real API server would use."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Reconciler:
    def __init__(
        self,
        objects: kmock.ObjectsArray,
        behaviour: Behaviour,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.objects = objects
        self.behaviour = behaviour
        self.clock = clock
        self._rv = itertools.count(1000)
        self.resource_version = 999  # the last one issued: what a list answers as its resourceVersion
        self._ips = itertools.count(10)
        self._cluster_ips = itertools.count(10)
        self._rand = random.Random(0x5EED)
        self._pod_born: dict[tuple[str, str], float] = {}
        # (namespace, name) -> (uid, canonical spec JSON) as last seen, to count generations.
        self._seen_specs: dict[tuple[str, str], tuple[str, str]] = {}
        self._managed_endpoints: set[tuple[str | None, str]] = set()
        # (namespace, involved uid, reason, message, fieldPath) -> event name, to count repeats
        self._event_keys: dict[tuple[Any, ...], str] = {}
        self._event_order: dict[str, collections.deque[str]] = {}
        self._event_seq = itertools.count()

    # ------------------------------------------------------------------ object store helpers

    def _items(self, resource: kmock.resource, namespace: str | None = None) -> list[tuple[str | None, str, kmock.Object]]:
        out = []
        for (res, ns, name), obj in list(self.objects.items()):
            if res == resource and not obj.deleted and (namespace is None or ns == namespace):
                out.append((ns, name, obj))
        return out

    def get(self, resource: kmock.resource, namespace: str | None, name: str) -> kmock.Object | None:
        key = (resource, namespace, name)
        if key not in self.objects:
            return None
        obj = self.objects[key]
        return None if obj.deleted else obj

    def _put(self, resource: kmock.resource, namespace: str | None, name: str, body: dict[str, Any]) -> None:
        self.stamp(body, resource)
        self.objects[resource, namespace, name] = body

    def _remove(self, resource: kmock.resource, namespace: str | None, name: str) -> None:
        if (resource, namespace, name) in self.objects:
            del self.objects[resource, namespace, name]

    def _set(self, obj: kmock.Object, key: str, value: Any) -> bool:
        """Replace one top-level key of the latest version (no new history entry) if it differs."""
        if obj.raw.get(key) == value:
            return False
        obj[key] = value
        meta = dict(obj.raw.get("metadata") or {})
        meta["resourceVersion"] = self.next_resource_version()
        obj["metadata"] = meta
        return True

    def stamp(self, body: dict[str, Any], resource: kmock.resource | None = None) -> dict[str, Any]:
        """Fill the server-set metadata of a new object (uid, timestamps, resourceVersion)."""
        meta = body.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", rfc3339(self.clock()))
        meta["resourceVersion"] = self.next_resource_version()
        if resource is not None and resource == DEPLOYMENTS:
            meta.setdefault("generation", 1)
        return body

    def next_resource_version(self) -> str:
        self.resource_version = next(self._rv)
        return str(self.resource_version)

    def bump_resource_version(self, obj: kmock.Object) -> None:
        meta = dict(obj.raw.get("metadata") or {})
        meta["resourceVersion"] = self.next_resource_version()
        obj["metadata"] = meta

    def next_cluster_ip(self) -> str:
        n = next(self._cluster_ips)
        return f"10.43.{n // 250}.{n % 250 + 1}"

    def namespace_exists(self, namespace: str) -> bool:
        return self.get(NAMESPACES, None, namespace) is not None

    # ------------------------------------------------------------------ generations

    def observe_spec(self, namespace: str, name: str) -> None:
        """Count `metadata.generation` up when a Deployment's spec changed since last seen.

        Called synchronously by the API handler on every write (as a real API server does),
        and by each reconcile pass for objects changed directly in the store.
        """
        obj = self.get(DEPLOYMENTS, namespace, name)
        if obj is None:
            self._seen_specs.pop((namespace, name), None)
            return
        raw = obj.raw
        meta = dict(raw.get("metadata") or {})
        if not meta.get("uid"):
            meta["uid"] = str(uuid.uuid4())
            meta.setdefault("creationTimestamp", rfc3339(self.clock()))
        spec_json = json.dumps(raw.get("spec") or {}, sort_keys=True, default=str)
        seen = self._seen_specs.get((namespace, name))
        generation = int(meta.get("generation") or 0)
        if seen is None or seen[0] != meta["uid"]:
            generation = max(generation, 1)
        elif seen[1] != spec_json:
            generation += 1
        self._seen_specs[(namespace, name)] = (meta["uid"], spec_json)
        if generation != meta.get("generation") or meta != raw.get("metadata"):
            meta["generation"] = generation
            obj["metadata"] = meta

    # ------------------------------------------------------------------ reconcile

    def reconcile(self) -> None:
        now = self.clock()
        self._collect_garbage()
        for ns, name, obj in self._items(DEPLOYMENTS):
            assert ns is not None
            self._reconcile_deployment(ns, name, obj, now)
        self._reconcile_metrics(now)
        self._reconcile_endpoints()

    def _collect_garbage(self) -> None:
        """Cascade deletion: ReplicaSets of deleted Deployments, Pods of deleted ReplicaSets."""
        dep_uids = {(obj.raw.get("metadata") or {}).get("uid") for _, _, obj in self._items(DEPLOYMENTS)}
        for ns, name, obj in self._items(REPLICASETS):
            owners = (obj.raw.get("metadata") or {}).get("ownerReferences") or []
            if owners and not any(o.get("uid") in dep_uids for o in owners):
                self._remove(REPLICASETS, ns, name)
        rs_uids = {(obj.raw.get("metadata") or {}).get("uid") for _, _, obj in self._items(REPLICASETS)}
        for ns, name, obj in self._items(PODS):
            owners = (obj.raw.get("metadata") or {}).get("ownerReferences") or []
            if owners and not any(o.get("uid") in rs_uids for o in owners):
                self._delete_pod(ns, name)
        for key in [k for k in self._seen_specs if self.get(DEPLOYMENTS, *k) is None]:
            del self._seen_specs[key]

    def _delete_pod(self, namespace: str | None, name: str) -> None:
        self._remove(PODS, namespace, name)
        self._remove(POD_METRICS, namespace, name)
        self._pod_born.pop((namespace or "", name), None)

    def _reconcile_deployment(self, ns: str, name: str, obj: kmock.Object, now: float) -> None:
        self.observe_spec(ns, name)
        dep = copy.deepcopy(obj.raw)
        meta = dep.get("metadata") or {}
        spec = dep.get("spec") or {}
        desired = _replicas(spec)
        template = spec.get("template") or {}
        pod_hash = template_hash(template)
        current_rs = f"{name}-{pod_hash}"

        owned = {
            rs_name: rs_obj
            for _, rs_name, rs_obj in self._items(REPLICASETS, ns)
            if any(o.get("uid") == meta.get("uid") for o in (rs_obj.raw.get("metadata") or {}).get("ownerReferences") or [])
        }
        revisions = {
            rs_name: int(((rs.raw.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION, "0"))
            for rs_name, rs in owned.items()
        }
        top = max(revisions.values(), default=0)
        if current_rs not in owned:
            revision = top + 1
            self._put(REPLICASETS, ns, current_rs, self._replicaset_body(ns, current_rs, dep, template, pod_hash, revision))
            owned[current_rs] = self.objects[REPLICASETS, ns, current_rs]
        elif revisions[current_rs] < top:  # back to an older template: that RS becomes the newest
            revision = top + 1
            rs_meta = copy.deepcopy(owned[current_rs].raw["metadata"])
            rs_meta.setdefault("annotations", {})[REVISION_ANNOTATION] = str(revision)
            self._set(owned[current_rs], "metadata", rs_meta)
        else:
            revision = revisions[current_rs]

        # Pods: the old templates' pods go at once; the current template's pods follow replicas.
        pods_by_rs: dict[str, list[tuple[str, kmock.Object]]] = {rs: [] for rs in owned}
        rs_by_uid = {(rs.raw.get("metadata") or {}).get("uid"): rs_name for rs_name, rs in owned.items()}
        for _, pod_name, pod in self._items(PODS, ns):
            for o in (pod.raw.get("metadata") or {}).get("ownerReferences") or []:
                if o.get("uid") in rs_by_uid:
                    pods_by_rs[rs_by_uid[o["uid"]]].append((pod_name, pod))
        for rs_name, pods in pods_by_rs.items():
            if rs_name != current_rs:
                for pod_name, pod in pods:
                    self._pod_killed(ns, owned[rs_name].raw, pod.raw, now)
                    self._delete_pod(ns, pod_name)
        current = pods_by_rs.get(current_rs, [])
        current.sort(key=lambda p: (self._pod_born.get((ns, p[0]), 0.0), p[0]))
        while len(current) > desired:
            # Like the ReplicaSet controller: not-ready pods first, then the youngest.
            victim = max(current, key=lambda p: (not self._pod_ready(p[1]), self._pod_born.get((ns, p[0]), 0.0)))
            current.remove(victim)
            self._pod_killed(ns, owned[current_rs].raw, victim[1].raw, now)
            self._delete_pod(ns, victim[0])
        rs_obj = owned[current_rs]
        while len(current) < desired:
            pod_name = f"{current_rs}-{''.join(self._rand.choice(_NAME_ALPHABET) for _ in range(5))}"
            if self.get(PODS, ns, pod_name) is not None:
                continue
            self._put(PODS, ns, pod_name, self._pod_body(ns, pod_name, rs_obj.raw, template, pod_hash, now))
            self._pod_born[(ns, pod_name)] = now
            current.append((pod_name, self.objects[PODS, ns, pod_name]))
            pod_raw = self.objects[PODS, ns, pod_name].raw
            self.record_event(ns, rs_obj.raw, "SuccessfulCreate", f"Created pod: {pod_name}",
                              component="replicaset-controller", now=now)
            self.record_event(ns, pod_raw, "Scheduled", f"Successfully assigned {ns}/{pod_name} to {NODE_NAME}",
                              component="default-scheduler", now=now)

        for pod_name, pod in current:
            before = copy.deepcopy(pod.raw.get("status") or {})
            if self._set(pod, "status", self._pod_status(ns, pod_name, pod.raw, now)):
                self._pod_events(ns, pod.raw, before, now)

        ready = sum(1 for _, pod in current if self._pod_ready(pod))
        for rs_name, rs in owned.items():
            rs_spec = dict(rs.raw.get("spec") or {})
            was = int(rs_spec.get("replicas") or 0)
            rs_spec["replicas"] = desired if rs_name == current_rs else 0
            if self._set(rs, "spec", rs_spec) and was != rs_spec["replicas"]:
                direction = "up" if rs_spec["replicas"] > was else "down"
                self.record_event(ns, obj.raw, "ScalingReplicaSet",
                                  f"Scaled {direction} replica set {rs_name} from {was} to {rs_spec['replicas']}",
                                  component="deployment-controller", now=now)
            n = len(current) if rs_name == current_rs else 0
            r = ready if rs_name == current_rs else 0
            self._set(rs, "status", _without_zeros({
                "replicas": n,
                "fullyLabeledReplicas": n,
                "readyReplicas": r,
                "availableReplicas": r,
                "observedGeneration": int(((rs.raw.get("metadata") or {}).get("generation")) or 1),
            }, keep=("replicas",)))

        # Deployment: revision annotation and status.
        fresh = obj.raw
        fmeta = copy.deepcopy(fresh.get("metadata") or {})
        annotations = fmeta.setdefault("annotations", {})
        if annotations.get(REVISION_ANNOTATION) != str(revision):
            annotations[REVISION_ANNOTATION] = str(revision)
            self._set(obj, "metadata", fmeta)
        available = ready
        complete = available == desired and len(current) == desired
        old_status = fresh.get("status") or {}
        self._set(obj, "status", _without_zeros({
            "observedGeneration": int(fmeta.get("generation") or 1),
            "replicas": len(current),
            "updatedReplicas": len(current),
            "readyReplicas": ready,
            "availableReplicas": available,
            "unavailableReplicas": max(desired - available, 0),
            "conditions": self._deployment_conditions(old_status, available >= desired, complete, current_rs, now),
        }, keep=("observedGeneration",)))

    # ------------------------------------------------------------------ events

    def record_event(
        self, ns: str, involved: Mapping[str, Any], reason: str, message: str, *, component: str,
        now: float, type_: str = "Normal", field_path: str | None = None,
    ) -> None:
        """A core/v1 Event about `involved`, as controllers and the kubelet record them: a repeat
        (same object, reason, message) counts up on the existing event."""
        meta = involved.get("metadata") or {}
        key = (ns, meta.get("uid"), reason, message, field_path)
        existing = self._event_keys.get(key)
        obj = self.get(EVENTS, ns, existing) if existing else None
        if obj is not None:
            obj["count"] = int(obj.raw.get("count") or 1) + 1
            obj["lastTimestamp"] = rfc3339(now)
            self.bump_resource_version(obj)
            return
        name = f"{meta.get('name')}.{int(now * 1e9) + next(self._event_seq):x}"
        ref: dict[str, Any] = {
            "kind": involved.get("kind"), "namespace": ns, "name": meta.get("name"), "uid": meta.get("uid"),
            "apiVersion": involved.get("apiVersion"), "resourceVersion": meta.get("resourceVersion"),
        }
        if field_path:
            ref["fieldPath"] = field_path
        host = NODE_NAME if component == "kubelet" else None
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": ref,
            "reason": reason,
            "message": message,
            "source": {"component": component, **({"host": host} if host else {})},
            "firstTimestamp": rfc3339(now),
            "lastTimestamp": rfc3339(now),
            "count": 1,
            "type": type_,
            "eventTime": None,
            "reportingComponent": component,
            "reportingInstance": host or "",
        }
        self._put(EVENTS, ns, name, body)
        self._event_keys[key] = name
        order = self._event_order.setdefault(ns, collections.deque())
        order.append(name)
        while len(order) > MAX_EVENTS_PER_NAMESPACE:
            self._remove(EVENTS, ns, order.popleft())
        if len(self._event_keys) > 4 * MAX_EVENTS_PER_NAMESPACE * max(len(self._event_order), 1):
            live = {(k[0], n) for k, n in self._event_keys.items() if self.get(EVENTS, k[0], n) is not None}
            self._event_keys = {k: n for k, n in self._event_keys.items() if (k[0], n) in live}

    def _pod_events(self, ns: str, pod: Mapping[str, Any], before: Mapping[str, Any], now: float) -> None:
        """The kubelet's events for what changed in a pod's container statuses."""
        pod_name = (pod.get("metadata") or {}).get("name")
        old = {cs.get("name"): cs for cs in before.get("containerStatuses") or []}
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            cname = cs.get("name")
            prev = old.get(cname) or {}
            field_path = f"spec.containers{{{cname}}}"
            state = cs.get("state") or {}
            started = bool(state.get("running") or cs.get("lastState"))
            was_started = bool((prev.get("state") or {}).get("running") or prev.get("lastState"))
            if started and not was_started:
                for reason, message in (
                    ("Pulled", f'Container image "{cs.get("image")}" already present on machine'),
                    ("Created", f"Created container: {cname}"),
                    ("Started", f"Started container {cname}"),
                ):
                    self.record_event(ns, pod, reason, message, component="kubelet", now=now, field_path=field_path)
            restarts, was_restarts = int(cs.get("restartCount") or 0), int(prev.get("restartCount") or 0)
            if restarts > was_restarts and (state.get("waiting") or {}).get("reason") == "CrashLoopBackOff":
                uid = (pod.get("metadata") or {}).get("uid")
                self.record_event(ns, pod, "BackOff", f"Back-off restarting failed container {cname} in pod "
                                  f"{pod_name}_{ns}({uid})", component="kubelet", now=now, type_="Warning",
                                  field_path=field_path)
            if state.get("running") and not cs.get("ready") and (prev.get("ready") or not was_started):
                self.record_event(ns, pod, "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503",
                                  component="kubelet", now=now, type_="Warning", field_path=field_path)

    def _pod_killed(self, ns: str, rs: Mapping[str, Any], pod: Mapping[str, Any], now: float) -> None:
        pod_name = (pod.get("metadata") or {}).get("name")
        self.record_event(ns, rs, "SuccessfulDelete", f"Deleted pod: {pod_name}", component="replicaset-controller", now=now)
        for c in (pod.get("spec") or {}).get("containers") or []:
            self.record_event(ns, pod, "Killing", f"Stopping container {c.get('name')}", component="kubelet", now=now,
                              field_path=f"spec.containers{{{c.get('name')}}}")

    @staticmethod
    def _pod_ready(pod: kmock.Object) -> bool:
        for c in (pod.raw.get("status") or {}).get("conditions") or []:
            if c.get("type") == "Ready":
                return c.get("status") == "True"
        return False

    def _deployment_conditions(
        self, old_status: Mapping[str, Any], available: bool, complete: bool, rs_name: str, now: float
    ) -> list[dict[str, Any]]:
        old = {c.get("type"): c for c in old_status.get("conditions") or []}
        wanted = [
            ("Available", "True" if available else "False",
             "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
             "Deployment has minimum availability." if available else "Deployment does not have minimum availability."),
            ("Progressing", "True",
             "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
             f'ReplicaSet "{rs_name}" has successfully progressed.' if complete else f'ReplicaSet "{rs_name}" is progressing.'),
        ]
        out = []
        for ctype, status, reason, message in wanted:
            prev = old.get(ctype) or {}
            same = prev.get("status") == status and prev.get("reason") == reason and prev.get("message") == message
            out.append({
                "type": ctype,
                "status": status,
                "reason": reason,
                "message": message,
                "lastUpdateTime": prev.get("lastUpdateTime") if same else rfc3339(now),
                "lastTransitionTime": prev.get("lastTransitionTime") if prev.get("status") == status else rfc3339(now),
            })
        return out

    # ------------------------------------------------------------------ bodies

    def _replicaset_body(
        self, ns: str, rs_name: str, dep: Mapping[str, Any], template: Mapping[str, Any], pod_hash: str, revision: int
    ) -> dict[str, Any]:
        meta = dep.get("metadata") or {}
        labels = dict((template.get("metadata") or {}).get("labels") or {}, **{"pod-template-hash": pod_hash})
        selector = copy.deepcopy((dep.get("spec") or {}).get("selector") or {})
        selector.setdefault("matchLabels", {})["pod-template-hash"] = pod_hash
        tmpl = copy.deepcopy(dict(template))
        tmpl.setdefault("metadata", {})["labels"] = labels
        return {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": rs_name,
                "namespace": ns,
                "labels": labels,
                "annotations": {REVISION_ANNOTATION: str(revision)},
                "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "Deployment", "name": meta.get("name"),
                    "uid": meta.get("uid"), "controller": True, "blockOwnerDeletion": True,
                }],
                "generation": 1,
            },
            "spec": {"replicas": 0, "selector": selector, "template": tmpl},
        }

    def _pod_body(
        self, ns: str, pod_name: str, rs: Mapping[str, Any], template: Mapping[str, Any], pod_hash: str, now: float
    ) -> dict[str, Any]:
        rs_meta = rs.get("metadata") or {}
        tmeta = template.get("metadata") or {}
        spec = copy.deepcopy(dict(template.get("spec") or {}))
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        for c in spec.get("containers") or []:  # the API server's defaults, as `describe pod` shows them
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            for probe in (c.get(k) for k in ("livenessProbe", "readinessProbe", "startupProbe")):
                if isinstance(probe, dict):
                    for key, value in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1),
                                       ("failureThreshold", 3)):
                        probe.setdefault(key, value)
                    if isinstance(probe.get("httpGet"), dict):
                        probe["httpGet"].setdefault("scheme", "HTTP")
        spec["nodeName"] = NODE_NAME
        n = next(self._ips)
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name,
                "generateName": f"{rs_meta.get('name')}-",
                "namespace": ns,
                "labels": dict(tmeta.get("labels") or {}, **{"pod-template-hash": pod_hash}),
                "annotations": dict(tmeta.get("annotations") or {}),
                "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs_meta.get("name"),
                    "uid": rs_meta.get("uid"), "controller": True, "blockOwnerDeletion": True,
                }],
                "creationTimestamp": rfc3339(now),
            },
            "spec": spec,
            "status": {"podIP": f"10.42.{n // 250}.{n % 250 + 1}", "hostIP": NODE_IP, "startTime": rfc3339(now)},
        }
        if not body["metadata"]["annotations"]:
            del body["metadata"]["annotations"]
        return body

    def _pod_status(self, ns: str, pod_name: str, pod: Mapping[str, Any], now: float) -> dict[str, Any]:
        old = pod.get("status") or {}
        born = self._pod_born.setdefault((ns, pod_name), now)
        age = max(now - born, 0.0)
        started = age >= self.behaviour.pod_start_seconds
        start_ts = born + self.behaviour.pod_start_seconds
        statuses = []
        for c in (pod.get("spec") or {}).get("containers") or []:
            image = c.get("image") or ""
            cs: dict[str, Any] = {
                "name": c.get("name"),
                "image": image,
                "imageID": f"{image.split(':')[0]}@sha256:{hashlib.sha256(image.encode()).hexdigest()}",
                "containerID": f"containerd://{hashlib.sha256((pod_name + str(c.get('name'))).encode()).hexdigest()}",
            }
            mode = self.behaviour.mode(image)
            if mode == "ok" and self.behaviour.pool_exhausted(pod):
                mode = "pool_exhausted"
            if not started:
                cs.update(ready=False, started=False, restartCount=0,
                          state={"waiting": {"reason": "ContainerCreating"}})
                del cs["containerID"]
            elif mode in ("ok", "pool_exhausted"):  # an exhausted pool fails readiness (/health), not liveness
                cs.update(ready=mode == "ok", started=True, restartCount=0,
                          state={"running": {"startedAt": rfc3339(start_ts)}})
            else:
                period = max(self.behaviour.crash_period_seconds, 0.001)
                restarts = 1 + int((age - self.behaviour.pod_start_seconds) / period)
                last_start = start_ts + (restarts - 1) * period
                oom = mode == "oom"
                cs.update(
                    ready=False, started=False, restartCount=restarts,
                    state={"waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off {min(10 * 2 ** min(restarts, 5), 300)}s restarting failed "
                                   f"container={c.get('name')} pod={pod_name}_{ns}",
                    }},
                    lastState={"terminated": {
                        "reason": "OOMKilled" if oom else "Error",
                        "exitCode": 137 if oom else 1,
                        # the run that ended in the restart now backing off: over by now
                        "startedAt": rfc3339(max(start_ts, last_start - min(period / 2, 5.0))),
                        "finishedAt": rfc3339(last_start),
                        "containerID": cs["containerID"],
                    }},
                )
            statuses.append(cs)
        ready = bool(statuses) and all(s["ready"] for s in statuses)
        transition = rfc3339(start_ts if started else born)

        def cond(ctype: str, ok: bool, reason: str | None = None) -> dict[str, Any]:
            c: dict[str, Any] = {"type": ctype, "status": "True" if ok else "False", "lastTransitionTime": transition}
            if not ok and reason:
                c["reason"] = reason
            return c

        return {
            "phase": "Running" if started else "Pending",
            "conditions": [
                cond("PodReadyToStartContainers", started),
                cond("Initialized", True),
                cond("Ready", ready, "ContainersNotReady"),
                cond("ContainersReady", ready, "ContainersNotReady"),
                cond("PodScheduled", True),
            ],
            "hostIP": old.get("hostIP", NODE_IP),
            "podIP": old.get("podIP"),
            "podIPs": [{"ip": old.get("podIP")}] if old.get("podIP") else [],
            "startTime": old.get("startTime", rfc3339(born)),
            "qosClass": "Burstable",
            "containerStatuses": statuses,
        }

    # ------------------------------------------------------------------ metrics & endpoints

    def _reconcile_metrics(self, now: float) -> None:
        live = set()
        if self.behaviour.metrics_enabled:
            for ns, pod_name, pod in self._items(PODS):
                raw = pod.raw
                if (raw.get("status") or {}).get("phase") != "Running":
                    continue
                live.add((ns, pod_name))
                containers = [
                    {"name": c.get("name"), "usage": {"cpu": "25m", "memory": self.behaviour.memory(
                        c.get("image") or "", ((c.get("resources") or {}).get("limits") or {}).get("memory"))}}
                    for c in (raw.get("spec") or {}).get("containers") or []
                ]
                body = {
                    "apiVersion": "metrics.k8s.io/v1beta1",
                    "kind": "PodMetrics",
                    "metadata": {
                        "name": pod_name,
                        "namespace": ns,
                        "labels": dict((raw.get("metadata") or {}).get("labels") or {}),
                        "creationTimestamp": rfc3339(now),
                    },
                    "timestamp": rfc3339(now),
                    "window": "30s",
                    "containers": containers,
                }
                existing = self.get(POD_METRICS, ns, pod_name)
                if existing is None:
                    self.objects[POD_METRICS, ns, pod_name] = body
                elif existing.raw.get("containers") != containers:
                    existing["containers"] = containers
                    existing["timestamp"] = rfc3339(now)
        for ns, name, _ in self._items(POD_METRICS):
            if (ns, name) not in live:
                self._remove(POD_METRICS, ns, name)
        self._reconcile_node_metrics(now)

    def _reconcile_node_metrics(self, now: float) -> None:
        """`kubectl top nodes`: the node's usage is its pods' plus a system share."""
        for _, name, _ in self._items(NODES):
            if not self.behaviour.metrics_enabled:
                self._remove(NODE_METRICS, None, name)
                continue
            pods = [m.raw for _, _, m in self._items(POD_METRICS)]
            memory = 2**30 + sum(quantity_bytes(c["usage"]["memory"]) or 0 for p in pods for c in p.get("containers") or [])
            usage = {"cpu": f"{150 + 25 * sum(len(p.get('containers') or []) for p in pods)}m", "memory": f"{memory // 1024}Ki"}
            existing = self.get(NODE_METRICS, None, name)
            if existing is None:
                self.objects[NODE_METRICS, None, name] = {
                    "apiVersion": "metrics.k8s.io/v1beta1", "kind": "NodeMetrics",
                    "metadata": {"name": name, "creationTimestamp": rfc3339(now)},
                    "timestamp": rfc3339(now), "window": "30s", "usage": usage,
                }
            elif existing.raw.get("usage") != usage:
                existing["usage"] = usage
                existing["timestamp"] = rfc3339(now)

    def _reconcile_endpoints(self) -> None:
        services = {(ns, name): obj.raw for ns, name, obj in self._items(SERVICES)}
        pods_by_ns: dict[str | None, list[dict[str, Any]]] = {}
        for ns, _, obj in self._items(PODS):
            pods_by_ns.setdefault(ns, []).append(obj.raw)
        for (ns, name), svc in services.items():
            selector = (svc.get("spec") or {}).get("selector")
            if not selector:
                continue  # endpoints of selector-less services are managed by their owners
            ready: list[dict[str, Any]] = []
            not_ready: list[dict[str, Any]] = []
            for pod in sorted(pods_by_ns.get(ns, []), key=lambda p: p["metadata"]["name"]):
                pmeta, pstatus = pod.get("metadata") or {}, pod.get("status") or {}
                if not labels_match(selector, pmeta.get("labels")) or not pstatus.get("podIP"):
                    continue
                address = {
                    "ip": pstatus["podIP"],
                    "nodeName": NODE_NAME,
                    "targetRef": {"kind": "Pod", "namespace": ns, "name": pmeta.get("name"), "uid": pmeta.get("uid")},
                }
                is_ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in pstatus.get("conditions") or [])
                (ready if is_ready else not_ready).append(address)
            ports = [
                {k: v for k, v in {
                    "name": p.get("name"),
                    "port": p.get("targetPort") if isinstance(p.get("targetPort"), int) else p.get("port"),
                    "protocol": p.get("protocol", "TCP"),
                }.items() if v is not None}
                for p in (svc.get("spec") or {}).get("ports") or []
            ]
            subset: dict[str, Any] = {"ports": ports}
            if ready:
                subset["addresses"] = ready
            if not_ready:
                subset["notReadyAddresses"] = not_ready
            subsets = [subset] if (ready or not_ready) else []
            existing = self.get(ENDPOINTS, ns, name)
            if existing is None:
                body: dict[str, Any] = {
                    "apiVersion": "v1",
                    "kind": "Endpoints",
                    "metadata": {"name": name, "namespace": ns, "labels": dict((svc.get("metadata") or {}).get("labels") or {})},
                }
                if subsets:
                    body["subsets"] = subsets
                self._put(ENDPOINTS, ns, name, body)
                self._managed_endpoints.add((ns, name))
            elif (existing.raw.get("subsets") or []) != subsets:
                self._set(existing, "subsets", subsets)
        for key in [k for k in self._managed_endpoints if k not in services]:
            self._remove(ENDPOINTS, *key)
            self._managed_endpoints.discard(key)

    # ------------------------------------------------------------------ queries

    def deployment_pods(self, namespace: str, deployment: str) -> list[dict[str, Any]]:
        """Pods of the deployment's current template (as the next reconcile leaves them)."""
        dep = self.get(DEPLOYMENTS, namespace, deployment)
        if dep is None:
            return []
        current_rs = f"{deployment}-{template_hash((dep.raw.get('spec') or {}).get('template') or {})}"
        out = []
        for _, _, pod in self._items(PODS, namespace):
            raw = pod.raw
            if any(o.get("name") == current_rs for o in (raw.get("metadata") or {}).get("ownerReferences") or []):
                out.append(copy.deepcopy(raw))
        return sorted(out, key=lambda p: p["metadata"]["name"])

    def deployment_healthy(self, namespace: str, deployment: str) -> bool:
        dep = self.get(DEPLOYMENTS, namespace, deployment)
        if dep is None:
            return False
        desired = _replicas(dep.raw.get("spec") or {})
        if desired < 1:
            return False
        pods = self.deployment_pods(namespace, deployment)
        ready = [
            p for p in pods
            if any(c.get("type") == "Ready" and c.get("status") == "True" for c in (p.get("status") or {}).get("conditions") or [])
        ]
        return len(ready) >= desired

    # ------------------------------------------------------------------ logs

    def pod_log(self, namespace: str, name: str, *, container: str | None = None,
                tail_lines: int | None = None, previous: bool = False) -> str:
        pod = self.get(PODS, namespace, name)
        if pod is None:
            raise PodLogError(404, f'pods "{name}" not found')
        raw = pod.raw
        containers = (raw.get("spec") or {}).get("containers") or []
        if container is None:
            if len(containers) > 1:
                names = " ".join(str(c.get("name")) for c in containers)
                raise PodLogError(400, f"a container name must be specified for pod {name}, choose one of: [{names}]")
            spec = containers[0] if containers else {}
        else:
            spec = next((c for c in containers if c.get("name") == container), None)
            if spec is None:
                raise PodLogError(400, f"container {container} is not valid for pod {name}")
        cname = str(spec.get("name"))
        status: dict[str, Any] = next(
            (s for s in (raw.get("status") or {}).get("containerStatuses") or [] if s.get("name") == cname), {}
        )
        waiting = ((status.get("state") or {}).get("waiting") or {}).get("reason")
        if waiting == "ContainerCreating":
            raise PodLogError(400, f'container "{cname}" in pod "{name}" is waiting to start: ContainerCreating')
        if previous and not status.get("lastState"):
            raise PodLogError(400, f'previous terminated container "{cname}" in pod "{name}" not found')
        lines = self._log_lines(namespace, name, str(spec.get("image") or ""), int(status.get("restartCount") or 0),
                                pool_exhausted=self.behaviour.pool_exhausted(raw))
        if tail_lines is not None:
            lines = lines[-tail_lines:] if tail_lines > 0 else []
        return "".join(line + "\n" for line in lines)

    def _log_lines(self, namespace: str, pod_name: str, image: str, restarts: int, *, pool_exhausted: bool = False) -> list[str]:
        tag = image_tag(image)
        mode = self.behaviour.mode(image)
        born = self._pod_born.get((namespace, pod_name), self.clock())
        rnd = random.Random(pod_name)

        def ts(i: int) -> str:
            return datetime.fromtimestamp(born + i * 0.25, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"

        if mode == "ok" and pool_exhausted:
            lines = [f"INFO api-gateway {tag} listening on :8080", "INFO connected to database pool (size=10)"]
            for _ in range(12):
                lines.append(f"WARN database pool at 10/10 in use, {rnd.randint(20, 90)} requests waiting")
                lines.append("ERROR connection pool exhausted: timed out after 5000ms acquiring a database connection")
                lines.append("INFO GET /health 503")
            return [f"{ts(i)} {line}" for i, line in enumerate(lines)]
        if mode == "ok":
            lines = [f"INFO api-gateway {tag} listening on :8080", "INFO connected to database pool (size=10)"]
            lines += ["INFO GET /health 200"] * 4
            lines += [f"INFO GET /api/v1/appointments 200 {rnd.randint(8, 40)}ms"]
            return [f"{ts(i)} {line}" for i, line in enumerate(lines)]
        lines = []
        attempts = 8 + restarts
        for attempt in range(attempts):
            lines.append(f"INFO api-gateway {tag} starting (attempt {attempt + 1})")
            if mode == "oom":
                lines += [
                    "INFO loading provider directory cache",
                    f"WARN heap usage {rnd.randint(88, 99)}% of limit",
                    "ERROR upstream timeout waiting for cache warm-up",
                    "FATAL JavaScript heap out of memory",
                ]
            else:
                for retry in range(1, 5):
                    lines.append(f"ERROR connection refused to database {namespace}:5432")
                    lines.append(f"WARN retrying database connection ({retry}/4)")
                lines += [
                    "ERROR upstream timeout: GET /api/v1/patients/search 504",
                    "ERROR upstream timeout: GET /api/v1/appointments 504",
                    "FATAL giving up: database unavailable",
                ]
        return [f"{ts(i)} {line}" for i, line in enumerate(lines)]


def _replicas(spec: Mapping[str, Any]) -> int:
    replicas = spec.get("replicas")
    return 1 if replicas is None else int(replicas)


def _without_zeros(status: dict[str, Any], keep: Iterable[str] = ()) -> dict[str, Any]:
    """As the API server serializes them: zero counters are omitted (readers must default to 0)."""
    keep = set(keep)
    return {k: v for k, v in status.items() if k in keep or v not in (0, None, [])}
