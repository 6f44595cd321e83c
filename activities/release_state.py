"""What a complete service recovery reads and keeps in the cluster: whether every Deployment
of a helm release is ready, and the last known-good tag CodeBlue verified.

The known-good record lives in the release's namespace, in ConfigMap `codeblue-known-good`
(configurable), one data key per release holding JSON ``{image_tag, revision, verified_at,
incident_id}``: durable outside any workflow, visible with `kubectl get cm -o yaml`, and
deleted with the namespace.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deferred import deferred
from activities.kubernetes_calls import api_error, k8s_call, unavailable
from domain.service_recovery import KnownGood, KnownGoodQuery, ReleaseReadiness, ReleaseReadyRequest

# Deferred (activities.deferred): workflows import this module for its typed activity
# references; these clients (~80 MiB) load only where an activity uses them.
if TYPE_CHECKING:
    import kubernetes.client
    import urllib3.exceptions
else:
    urllib3 = deferred("urllib3")
    kubernetes = deferred("kubernetes")  # its __init__ binds client, stream, utils

T = TypeVar("T")
INSTANCE_LABEL = "app.kubernetes.io/instance"


class ReleaseStateActivities:
    def __init__(self, api_client: kubernetes.client.ApiClient, *, request_timeout_seconds: float = 10.0) -> None:
        self._core = kubernetes.client.CoreV1Api(api_client)
        self._apps = kubernetes.client.AppsV1Api(api_client)
        self._timeout = request_timeout_seconds

    async def _call(self, action: str, target: str, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        return cast(T, await k8s_call(action, target, fn, *args, timeout=self._timeout, **kw))

    # ---------------------------------------------------------------- readiness

    async def _readiness(self, namespace: str, release: str) -> ReleaseReadiness:
        deps = await self._call(
            "list",
            f"deployments of release {release} in {namespace}",
            self._apps.list_namespaced_deployment,
            namespace,
            label_selector=f"{INSTANCE_LABEL}={release}",
        )
        items = [d for d in deps.items if (d.metadata.labels or {}).get(INSTANCE_LABEL) == release]
        if not items:
            return ReleaseReadiness(ready=False, detail=f"no deployment labelled {INSTANCE_LABEL}={release}")
        parts, ok = [], True
        for d in sorted(items, key=lambda d: d.metadata.name):
            st = d.status or kubernetes.client.V1DeploymentStatus()
            desired = 1 if d.spec.replicas is None else int(d.spec.replicas)
            ready, updated = int(st.ready_replicas or 0), int(st.updated_replicas or 0)
            current = int(st.observed_generation or 0) >= int(d.metadata.generation or 0)
            this_ok = current and ready >= desired and updated >= desired
            ok = ok and this_ok
            parts.append(f"{d.metadata.name} {ready}/{desired}" + ("" if current else " (rollout not observed)"))
        return ReleaseReadiness(ready=ok, detail=", ".join(parts), deployments=len(items))

    @activity.defn
    async def release_ready(self, req: ReleaseReadyRequest) -> ReleaseReadiness:
        """Poll until every replica of the release's Deployments is ready, or the timeout;
        not ready by then is an answer (ready=False), not an error."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + req.timeout_seconds
        while True:
            state = await self._readiness(req.namespace, req.release)
            if state.ready or loop.time() >= deadline:
                return state
            if activity.in_activity():
                activity.heartbeat(state.detail)
            await asyncio.sleep(max(0.05, min(req.poll_seconds, deadline - loop.time())))

    # ---------------------------------------------------------------- known good

    @activity.defn
    async def read_known_good(self, q: KnownGoodQuery) -> KnownGood:
        target = f"configmap {q.namespace}/{q.configmap}"
        try:
            cm = await asyncio.to_thread(
                self._core.read_namespaced_config_map, q.configmap, q.namespace, _request_timeout=self._timeout
            )
        except kubernetes.client.ApiException as e:
            if e.status == 404:
                return KnownGood(found=False, namespace=q.namespace, release=q.release, configmap=q.configmap)
            raise api_error(e, "read", target) from None
        except (urllib3.exceptions.HTTPError, OSError, TimeoutError) as e:
            raise unavailable(e, "read", target) from None
        raw = (cm.data or {}).get(q.release)
        if not raw:
            return KnownGood(found=False, namespace=q.namespace, release=q.release, configmap=q.configmap)
        try:
            rec = json.loads(raw)
            return KnownGood(
                found=True,
                namespace=q.namespace,
                release=q.release,
                configmap=q.configmap,
                image_tag=str(rec["image_tag"]),
                revision=rec.get("revision"),
                verified_at=rec.get("verified_at"),
                incident_id=rec.get("incident_id"),
            )
        except (ValueError, KeyError, TypeError):
            raise ApplicationError(
                f"{target}: key {q.release} is not a known-good record", type="BadConfig", non_retryable=True
            ) from None

    @activity.defn
    async def record_known_good(self, rec: KnownGood) -> KnownGood:
        """Create or merge-patch the release's key; writing the same record twice is harmless."""
        if not rec.image_tag:
            raise ApplicationError("a known-good record needs an image tag", type="BadConfig", non_retryable=True)
        value = json.dumps(
            {
                "image_tag": rec.image_tag,
                "revision": rec.revision,
                "verified_at": rec.verified_at,
                "incident_id": rec.incident_id,
            }
        )
        target = f"configmap {rec.namespace}/{rec.configmap}"
        body = {"data": {rec.release: value}}
        try:
            try:
                await asyncio.to_thread(
                    self._core.patch_namespaced_config_map,
                    rec.configmap,
                    rec.namespace,
                    body,
                    _request_timeout=self._timeout,
                )
            except kubernetes.client.ApiException as e:
                if e.status != 404:
                    raise
                create = {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {
                        "name": rec.configmap,
                        "namespace": rec.namespace,
                        "labels": {"app.kubernetes.io/managed-by": "codeblue"},
                    },
                    **body,
                }
                try:
                    await asyncio.to_thread(
                        self._core.create_namespaced_config_map, rec.namespace, create, _request_timeout=self._timeout
                    )
                except kubernetes.client.ApiException as e2:
                    if e2.status != 409:  # created meanwhile: the retry patches it
                        raise
                    raise ApplicationError(f"{target} appeared meanwhile; retrying", type="Conflict") from None
        except kubernetes.client.ApiException as e:
            raise api_error(e, "write", target) from None
        except (urllib3.exceptions.HTTPError, OSError, TimeoutError) as e:
            raise unavailable(e, "write", target) from None
        return rec.model_copy(update={"found": True})
