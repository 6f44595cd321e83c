"""What a drill changed in the sandbox, counted: the side effects a fault drill checks.

    log = WriteLog.attach(sb.cluster)           # before the worker starts
    ...
    deployment_changes(log, NAMESPACE, GATEWAY)  # {"restarts": 1, "scales": 0, "image_changes": 0}
    helm_revisions(sb.cluster, NAMESPACE, RELEASE)
    deliveries(sb.receiver)

`WriteLog` is a hook on the Kubernetes emulator: every write that reaches the sandbox API
(from CodeBlue's activities or from the helm stand-in) is recorded with the object's spec,
annotations and data before and after it, so a retry that writes the same value again is
told apart from a second change. Status, which only the reconciler writes, is left out.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import kmock

from sandbox.helm_cli import configmap_name

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
_READS = {None, kmock.method.GET, kmock.method.HEAD, kmock.method.OPTIONS}
_KEEP = 5000  # a drill kept running for hours must not grow without bound


@dataclass
class Write:
    verb: str  # POST, PATCH, PUT, DELETE
    plural: str  # deployments, secrets, configmaps, ...
    subresource: str | None
    namespace: str | None
    name: str | None
    before: dict[str, Any] | None  # None: the object did not exist
    after: dict[str, Any] | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


def _state(obj: Any) -> dict[str, Any] | None:
    if obj is None:
        return None
    raw = obj.raw
    meta = raw.get("metadata") or {}
    return copy.deepcopy({
        "annotations": meta.get("annotations") or {},
        "labels": meta.get("labels") or {},
        "spec": raw.get("spec"),
        "data": raw.get("data"),
    })


class WriteLog:
    """Records the sandbox API's writes (a hook around the emulator's request handler)."""

    def __init__(self) -> None:
        self.writes: list[Write] = []

    @classmethod
    def attach(cls, cluster: Any) -> WriteLog:
        log = cls()
        emulator = cluster.emulator
        handle = emulator._handle  # bound method of the emulator; kmock calls self._handle(request)
        rec = emulator.reconciler

        async def observed(request: kmock.Request) -> Any:
            res = request.resource
            if request.method in _READS or res is None or res.plural is None:
                return await handle(request)
            data = request.data if isinstance(request.data, dict) else {}
            name = request.name or ((data.get("metadata") or {}).get("name"))
            ns = request.namespace or ((data.get("metadata") or {}).get("namespace"))
            before = _state(rec.get(res, ns, name)) if name else None
            response = await handle(request)
            if 200 <= getattr(response, "status", 200) < 300 and name:
                log.writes.append(Write(str(request.method.value), res.plural, request.subresource, ns, name,
                                        before, _state(rec.get(res, ns, name))))
                if len(log.writes) > 2 * _KEEP:
                    del log.writes[:-_KEEP]
            return response

        emulator._handle = observed
        return log

    def of(self, plural: str, namespace: str | None = None, name: str | None = None) -> list[Write]:
        return [w for w in self.writes if w.plural == plural
                and (namespace is None or w.namespace == namespace) and (name is None or w.name == name)]


def _images(state: dict[str, Any] | None) -> list[str]:
    spec = ((state or {}).get("spec") or {}).get("template", {}).get("spec", {})
    return [c.get("image", "") for c in spec.get("containers", [])]


def _template_annotation(state: dict[str, Any] | None, key: str) -> str | None:
    tmpl = ((state or {}).get("spec") or {}).get("template") or {}
    return ((tmpl.get("metadata") or {}).get("annotations") or {}).get(key)


def _replicas(state: dict[str, Any] | None) -> Any:
    return ((state or {}).get("spec") or {}).get("replicas")


def deployment_changes(log: WriteLog, namespace: str, name: str) -> dict[str, int]:
    """Writes that changed the Deployment: a new restartedAt (a rollout restart), a new
    replica count (a scale), new container images (a rollback or upgrade). A write that
    sets what is already there (a retry) counts for nothing."""
    out = {"restarts": 0, "scales": 0, "image_changes": 0, "writes": 0}
    for w in log.of("deployments", namespace, name):
        if w.before is None:
            continue
        out["writes"] += 1
        if _template_annotation(w.before, RESTARTED_AT) != _template_annotation(w.after, RESTARTED_AT):
            out["restarts"] += 1
        if _replicas(w.before) != _replicas(w.after):
            out["scales"] += 1
        if _images(w.before) != _images(w.after):
            out["image_changes"] += 1
    return out


def secret_key_changes(log: WriteLog, namespace: str, name: str, key: str) -> int:
    """Writes that changed one key of an existing Secret."""
    return sum(1 for w in log.of("secrets", namespace, name)
               if w.before is not None and (w.before.get("data") or {}).get(key) != ((w.after or {}).get("data") or {}).get(key))


def created(log: WriteLog, plural: str, namespace: str | None = None, name_contains: str = "") -> list[str]:
    """Names of objects created (POSTed while absent)."""
    return [w.name or "" for w in log.of(plural, namespace)
            if w.verb == "POST" and w.before is None and w.after is not None and name_contains in (w.name or "")]


def helm_revisions(cluster: Any, namespace: str, release: str) -> list[dict[str, Any]]:
    """The helm stand-in's release history, as stored in its ConfigMap."""
    cm = cluster.emulator.reconciler.get(kmock.resource("", "v1", "configmaps"), namespace, configmap_name(release))
    if cm is None:
        return []
    return json.loads((cm.raw.get("data") or {}).get("history") or "[]")


def deliveries(receiver: Any) -> dict[str, Any]:
    """The notifications the receiver applied, by kind, plus what its idempotency cache absorbed.

    `applied_per_key`: how often each (channel, Idempotency-Key) was applied; a retry with the
    same key is answered from the cache, so a count above 1 means a key was reused for a
    different change, and a retry that made up a new key shows as one more delivery of its kind."""
    applied = [c for c in receiver.calls if c.applied]
    kinds: Counter[str] = Counter()
    for c in applied:
        kinds[_kind(c)] += 1
    per_key = Counter((c.channel, c.idempotency_key) for c in applied)
    return {
        "kinds": dict(kinds),
        "applied_per_key": per_key,
        "absorbed_retries": len(receiver.duplicates),
        "keys": sorted(f"{ch}:{k}" for ch, k in per_key),
    }


def _kind(call: Any) -> str:
    body = call.json if isinstance(call.json, dict) else {}
    if call.channel == "pagerduty":
        return f"page {body.get('dedup_key')}"
    if call.channel == "statuspage":
        if call.method == "POST":
            return "status page incident created"
        status = ((body.get("incident") or {}).get("status")) if isinstance(body.get("incident"), dict) else None
        return f"status page update ({status})"
    if call.channel == "webhook":
        return f"webhook {body.get('kind')}"
    if call.channel == "slack":
        return "slack message"
    return f"{call.channel} {call.method}"


def slack_posts(receiver: Any, event_type: str = "codeblue_proposal") -> Counter:
    """Messages posted to the receiver's Slack Web API stand-in (any channel) that carry
    CodeBlue's metadata, by their idempotency key. chat.update edits a message in place and
    adds none."""
    api = getattr(receiver, "slack_api", None)
    keys: Counter[str] = Counter()
    for messages in (getattr(api, "messages", None) or {}).values():
        for m in messages:
            meta = m.get("metadata") or {}
            if meta.get("event_type") == event_type:
                keys[str((meta.get("event_payload") or {}).get("idempotency_key"))] += 1
    return keys


def slack_channels(receiver: Any, name: str) -> tuple[int, int]:
    """Channels named `name` in the receiver's Slack Web API stand-in, and the bookmarks they
    hold: an incident channel created once and bookmarked once is (1, 1)."""
    api = getattr(receiver, "slack_api", None)
    chans = [c for c in (getattr(api, "channels", None) or {}).values() if c.get("name") == name]
    marks = sum(len((getattr(api, "bookmarks", None) or {}).get(c["id"], [])) for c in chans)
    return len(chans), marks
