"""The runbook's kubectl steps as activities: read pods, services, logs, metrics; scale,
restart and watch a rollout; check the database the gateway uses.

Every activity takes one model from `domain.cluster` and returns one. The official client
is synchronous, so each API call runs in a worker thread (`asyncio.to_thread`).

Errors (`ApplicationError.type`; `activities.kubernetes_calls` maps the API's):
  Forbidden       403, non-retryable: RBAC will not change by retrying.
  NotFound        404 of the namespace/deployment/secret asked for, non-retryable.
  Unauthorized    401, non-retryable.
  InvalidRequest  400/422 or a bad input, non-retryable.
  RolloutTimeout  wait_rollout ran past its timeout, non-retryable.
  KubernetesUnavailable / KubernetesApiError: connection problems, 5xx, 409, 429: retryable.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.database_check import check_database
from activities.deferred import deferred
from activities.heartbeat import DEFAULT_INTERVAL_SECONDS, Heartbeater, resume_details
from activities.kubernetes_calls import (
    api_error,
    desired_replicas,
    k8s_call,
    memory_bytes,
    pod_exec,
    pod_state,
    read_text,
    rollout_state,
    selector_string,
)
from activities.preconditions import moved
from activities.targets import Targets
from domain.cluster import (
    DbCheckRequest,
    DbCheckResult,
    DeploymentsReport,
    DeploymentState,
    LogsQuery,
    LogsReport,
    MetricsReport,
    NamespaceQuery,
    PodMetric,
    PodsReport,
    RestartRequest,
    RolloutState,
    RolloutWaitRequest,
    ScaleRequest,
    ScaleResult,
    ServicesReport,
    ServiceState,
)

# Deferred (activities.deferred): workflows import this module for its typed activity
# references; these clients (~80 MiB) load only where an activity uses them.
if TYPE_CHECKING:
    import kubernetes.client
else:
    kubernetes = deferred("kubernetes")  # its __init__ binds client

T = TypeVar("T")

RESTARTED_AT_ANNOTATION = "kubectl.kubernetes.io/restartedAt"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
MAX_LOG_TAIL_LINES = 10_000
_MIN_POLL_SECONDS = 0.05


class KubernetesActivities:
    """Activities on one cluster, through the `ApiClient` given (the worker owns and closes it)."""

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        *,
        request_timeout_seconds: float = 10.0,
        exec_timeout_seconds: float = 120.0,
        targets: Targets | None = None,
        heartbeat_seconds: float = DEFAULT_INTERVAL_SECONDS,
    ) -> None:
        self.targets = targets
        self._api_client = api_client
        self._core = kubernetes.client.CoreV1Api(api_client)
        self._apps = kubernetes.client.AppsV1Api(api_client)
        self._custom = kubernetes.client.CustomObjectsApi(api_client)
        self.request_timeout_seconds = request_timeout_seconds
        self.exec_timeout_seconds = exec_timeout_seconds
        self.heartbeat_seconds = heartbeat_seconds

    # ------------------------------------------------------------------ plumbing

    async def _call(self, action: str, target: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return cast(T, await k8s_call(action, target, fn, *args, timeout=self.request_timeout_seconds, **kwargs))

    async def _call_or_none(self, statuses: tuple[int, ...], action: str, target: str,
                            fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """As `_call`, but the listed HTTP statuses mean "not there" and return None."""
        return await k8s_call(action, target, fn, *args, timeout=self.request_timeout_seconds, missing=statuses, **kwargs)

    async def _require_namespace(self, namespace: str) -> None:
        """An empty listing is also what a missing namespace gives: tell the two apart.
        Without the right to read namespaces (403), assume it exists."""
        await self._call_or_none((403,), "read", f"namespace {namespace}", self._core.read_namespace, namespace)

    async def _read_deployment(self, namespace: str, name: str) -> kubernetes.client.V1Deployment:
        return await self._call(
            "read", f"deployment {namespace}/{name}", self._apps.read_namespaced_deployment, name, namespace
        )

    # ------------------------------------------------------------------ reads

    @activity.defn
    async def pod_status(self, query: NamespaceQuery) -> PodsReport:
        ns = query.namespace
        pods = await self._call("list", f"pods in namespace {ns}", self._core.list_namespaced_pod, ns)
        if not pods.items:
            await self._require_namespace(ns)
        return PodsReport(
            namespace=ns, pods=[pod_state(p) for p in sorted(pods.items, key=lambda p: p.metadata.name)]
        )

    @activity.defn
    async def service_status(self, query: NamespaceQuery) -> ServicesReport:
        ns = query.namespace
        services = await self._call("list", f"services in namespace {ns}", self._core.list_namespaced_service, ns)
        if not services.items:
            await self._require_namespace(ns)
            return ServicesReport(namespace=ns)
        endpoints = await self._call_or_none(
            (404,), "list", f"endpoints in namespace {ns}", self._core.list_namespaced_endpoints, ns
        )
        ready: dict[str, int] = {}
        for ep in endpoints.items if endpoints is not None else []:
            ready[ep.metadata.name] = sum(len(s.addresses or []) for s in ep.subsets or [])
        return ServicesReport(
            namespace=ns,
            services=[
                ServiceState(
                    name=s.metadata.name,
                    type=(s.spec.type if s.spec is not None and s.spec.type else "ClusterIP"),
                    ready_endpoints=ready.get(s.metadata.name, 0),
                )
                for s in sorted(services.items, key=lambda s: s.metadata.name)
            ],
        )

    @activity.defn
    async def deployment_status(self, query: NamespaceQuery) -> DeploymentsReport:
        ns = query.namespace
        deps = await self._call("list", f"deployments in namespace {ns}", self._apps.list_namespaced_deployment, ns)
        if not deps.items:
            await self._require_namespace(ns)
        states = []
        for d in sorted(deps.items, key=lambda d: d.metadata.name):
            status = d.status or kubernetes.client.V1DeploymentStatus()
            template = d.spec.template if d.spec is not None else None
            containers = (template.spec.containers if template is not None and template.spec is not None else None) or []
            states.append(DeploymentState(
                name=d.metadata.name,
                desired=desired_replicas(d),
                ready=int(status.ready_replicas or 0),
                available=int(status.available_replicas or 0),
                updated=int(status.updated_replicas or 0),
                unavailable=int(status.unavailable_replicas or 0),
                generation=int(d.metadata.generation or 0),
                observed_generation=int(status.observed_generation or 0),
                revision=(d.metadata.annotations or {}).get(REVISION_ANNOTATION),
                images=[c.image for c in containers if c.image],
            ))
        return DeploymentsReport(namespace=ns, deployments=states)

    @activity.defn
    async def gateway_logs(self, query: LogsQuery) -> LogsReport:
        """Counts of lines matching each pattern over the deployment's pods; the lines
        themselves (which may carry patient data) never leave this function."""
        ns, name = query.namespace, query.deployment
        dep = await self._read_deployment(ns, name)
        selector = selector_string(dep.spec.selector if dep.spec is not None else None)
        if not selector:
            raise ApplicationError(f"deployment {ns}/{name} has no label selector", type="InvalidRequest",
                                   non_retryable=True)
        pods = await self._call("list", f"pods of deployment {ns}/{name}", self._core.list_namespaced_pod, ns,
                                label_selector=selector)
        tail = max(1, min(int(query.tail_lines), MAX_LOG_TAIL_LINES))
        patterns = {key: sub.lower() for key, sub in query.patterns.items()}
        counts = dict.fromkeys(patterns, 0)
        pods_read = lines_scanned = 0
        async with Heartbeater(self.heartbeat_seconds, {"pods_read": 0}) as hb:
            for pod in sorted(pods.items, key=lambda p: p.metadata.name):
                text = await self._pod_log(ns, pod, name, tail)
                if text is None:
                    continue
                pods_read += 1
                for line in text.splitlines()[-tail:]:
                    lines_scanned += 1
                    low = line.lower()
                    for key, sub in patterns.items():
                        if sub in low:
                            counts[key] += 1
                hb.update({"pods_read": pods_read})
        return LogsReport(deployment=name, pods_read=pods_read, lines_scanned=lines_scanned, error_counts=counts)

    async def _pod_log(self, ns: str, pod: kubernetes.client.V1Pod, deployment: str, tail: int) -> str | None:
        """The last `tail` lines of the pod's main container; None if it has none to give
        (not started yet, gone meanwhile). Read raw: kubernetes 36 returns `str` responses
        as a bytes repr and parses JSON-looking logs (client issue #2596)."""
        pod_name = pod.metadata.name
        containers = (pod.spec.containers if pod.spec is not None else None) or []
        container = next((c.name for c in containers if c.name == deployment), containers[0].name if containers else None)
        target = f"logs of pod {ns}/{pod_name}"
        for previous in (False, True):
            # the body is read in the thread too: read on the loop, it stalls every other
            # activity's heartbeats (and its errors are mapped like the call's)
            text = await self._call_or_none(
                (400, 404), "read", target, read_text, self._core.read_namespaced_pod_log, pod_name, ns,
                container=container, tail_lines=tail, previous=previous,
            )
            if text is not None:
                return text
            # 400: container waiting to start; then try the previous instance
        return None

    @activity.defn
    async def pod_metrics(self, query: NamespaceQuery) -> MetricsReport:
        ns = query.namespace
        pods = await self._call("list", f"pods in namespace {ns}", self._core.list_namespaced_pod, ns)
        if not pods.items:
            await self._require_namespace(ns)
        limits: dict[str, int | None] = {}
        for pod in pods.items:
            total: int | None = 0
            for c in (pod.spec.containers if pod.spec is not None else None) or []:
                limit = memory_bytes(((c.resources.limits if c.resources is not None else None) or {}).get("memory"))
                total = None if limit is None or total is None else total + limit
            limits[pod.metadata.name] = total or None
        listing = await self._call_or_none(
            (404, 503), "list", f"pod metrics in namespace {ns}",
            self._custom.list_namespaced_custom_object, "metrics.k8s.io", "v1beta1", ns, "pods",
        )
        if listing is None:
            return MetricsReport(namespace=ns, served=False)
        metrics = []
        for item in listing.get("items", []) if isinstance(listing, Mapping) else []:
            name = (item.get("metadata") or {}).get("name")
            if not name:
                continue
            usage = [memory_bytes((c.get("usage") or {}).get("memory")) for c in item.get("containers") or []]
            metrics.append(PodMetric(
                pod=name,
                memory_bytes=sum(u for u in usage if u is not None),
                memory_limit_bytes=limits.get(name),
            ))
        return MetricsReport(namespace=ns, served=True, pods=sorted(metrics, key=lambda m: m.pod))

    # ------------------------------------------------------------------ changes

    @activity.defn
    async def scale_deployment(self, req: ScaleRequest) -> ScaleResult:
        """Set an absolute replica count (a retry sets the same count again)."""
        ns, name = req.namespace, req.deployment
        if self.targets is not None:
            self.targets.deployment(ns, name)
        if req.replicas < 0:
            raise ApplicationError(f"cannot scale deployment {ns}/{name} to {req.replicas} replicas",
                                   type="InvalidRequest", non_retryable=True)
        target = f"deployment {ns}/{name}"
        scale = await self._call("read the scale of", target, self._apps.read_namespaced_deployment_scale, name, ns)
        previous = int((scale.spec.replicas if scale.spec is not None else None) or 0)
        replicas = previous
        if req.expected_replicas is not None and previous not in (req.expected_replicas, req.replicas):
            raise moved("ReplicasMoved", f"{target} moved: it has {previous} replicas, the scale to {req.replicas} "
                        f"was approved at {req.expected_replicas}",
                        {"current_replicas": previous, "approved_replicas": req.expected_replicas})
        if previous != req.replicas:
            result = await self._call(
                "scale", target, self._apps.patch_namespaced_deployment_scale, name, ns,
                {"spec": {"replicas": req.replicas}},
            )
            replicas = int((result.spec.replicas if result.spec is not None else None) or 0)
        return ScaleResult(deployment=name, previous_replicas=previous, replicas=replicas)

    @activity.defn
    async def rollout_restart(self, req: RestartRequest) -> RolloutState:
        """`kubectl rollout restart`, with the timestamp fixed by the workflow: a retry writes
        the same annotation, which changes nothing the second time."""
        ns, name = req.namespace, req.deployment
        if self.targets is not None:
            self.targets.deployment(ns, name)
        if req.expected_revision is not None:
            dep = await self._read_deployment(ns, name)
            template = dep.spec.template if dep.spec is not None else None
            stamped = ((template.metadata.annotations if template is not None and template.metadata else None) or {})
            current = (dep.metadata.annotations or {}).get(REVISION_ANNOTATION)
            if stamped.get(RESTARTED_AT_ANNOTATION) == req.restarted_at:
                return rollout_state(dep)  # an earlier attempt of this restart got through
            if current != req.expected_revision:
                raise moved("RolloutMoved", f"deployment {ns}/{name} moved: revision {current} is current, the "
                            f"restart was approved at revision {req.expected_revision}",
                            {"current_revision": current, "approved_revision": req.expected_revision})
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: req.restarted_at}}}}}
        dep = await self._call("restart", f"deployment {ns}/{name}", self._apps.patch_namespaced_deployment,
                               name, ns, patch)
        return rollout_state(dep)

    @activity.defn
    async def wait_rollout(self, req: RolloutWaitRequest) -> RolloutState:
        """Poll until the rollout completes, heartbeating on a timer with the last poll's
        state. The deadline counts from the first attempt (carried in the heartbeat details
        across retries)."""
        ns, name = req.namespace, req.deployment
        started = time.time()
        details = resume_details()
        if details and isinstance(details.get("started_at"), (int, float)):
            started = float(details["started_at"])
        deadline = started + req.timeout_seconds
        poll = max(float(req.poll_seconds), _MIN_POLL_SECONDS)
        async with Heartbeater(self.heartbeat_seconds, {"started_at": started}) as hb:
            while True:
                state = rollout_state(await self._read_deployment(ns, name))
                hb.update({
                    "started_at": started, "desired": state.desired, "updated": state.updated,
                    "available": state.available,
                })
                hb.beat()
                if state.complete:
                    return state
                remaining = deadline - time.time()
                if remaining <= 0:
                    raise ApplicationError(
                        f"rollout of deployment {ns}/{name} not complete after {req.timeout_seconds}s: "
                        f"{state.updated}/{state.desired} updated, {state.available}/{state.desired} available",
                        state.model_dump(mode="json"),
                        type="RolloutTimeout",
                        non_retryable=True,
                    )
                await asyncio.sleep(min(poll, remaining))

    # ------------------------------------------------------------------ database

    @activity.defn
    async def db_check(self, req: DbCheckRequest) -> DbCheckResult:
        """CodeBlue's own check (connect + `SELECT 1` with the URL from the Secret), or the
        runbook's command run in a gateway pod. Never reports the URL or its password."""
        if self.targets:
            self.targets.db_check(req)
        # an exec may run `exec_timeout_seconds`, a connect its timeout: heartbeat meanwhile
        async with Heartbeater(self.heartbeat_seconds):
            if req.command:
                return await self._db_check_exec(req)
            return await self._db_check_url(req)

    async def _db_check_url(self, req: DbCheckRequest) -> DbCheckResult:
        ns = req.namespace
        secret = await self._call("read", f"secret {ns}/{req.secret_name}", self._core.read_namespaced_secret,
                                  req.secret_name, ns)
        encoded = (secret.data or {}).get(req.secret_key)
        if encoded is None:
            raise ApplicationError(f"secret {ns}/{req.secret_name} has no key {req.secret_key}",
                                   type="NotFound", non_retryable=True)
        try:
            url = base64.b64decode(encoded, validate=True).decode("utf-8").strip()
        except (binascii.Error, ValueError):
            raise ApplicationError(f"key {req.secret_key} of secret {ns}/{req.secret_name} is not base64 UTF-8 text",
                                   type="InvalidRequest", non_retryable=True) from None
        return await check_database(url, req.connect_timeout_seconds,
                                    source=f"key {req.secret_key} of secret {ns}/{req.secret_name}")

    async def _db_check_exec(self, req: DbCheckRequest) -> DbCheckResult:
        assert req.command
        ns, name = req.namespace, req.deployment
        dep = await self._read_deployment(ns, name)
        pods = await self._call("list", f"pods of deployment {ns}/{name}", self._core.list_namespaced_pod, ns,
                                label_selector=selector_string(dep.spec.selector if dep.spec is not None else None))
        running = [p for p in pods.items if (p.status.phase if p.status is not None else None) == "Running"]
        running.sort(key=lambda p: (not pod_state(p).ready, p.metadata.name))
        if not running:
            return DbCheckResult(ok=False, detail=f"no running pod of deployment {ns}/{name} to run the check in")
        pod = running[0]
        containers = (pod.spec.containers if pod.spec is not None else None) or []
        container = next((c.name for c in containers if c.name == name), containers[0].name if containers else None)
        command = list(req.command)
        timeout = self.exec_timeout_seconds
        shown = " ".join(command)
        t0 = time.perf_counter()
        try:
            code = await asyncio.to_thread(pod_exec, self._api_client.configuration, ns, pod.metadata.name, container,
                                           command, timeout)
        except kubernetes.client.ApiException as e:
            raise api_error(e, "exec in", f"pod {ns}/{pod.metadata.name}") from None
        except Exception as e:  # noqa: BLE001 - websocket errors come in many types
            return DbCheckResult(ok=False, detail=f"`{shown}` in pod {pod.metadata.name} could not run: {type(e).__name__}")
        latency = round((time.perf_counter() - t0) * 1000.0, 2)
        if code is None:
            return DbCheckResult(ok=False, detail=f"`{shown}` in pod {pod.metadata.name} did not finish within {timeout:g}s")
        return DbCheckResult(
            ok=code == 0, latency_ms=latency if code == 0 else None,
            detail=f"`{shown}` in pod {pod.metadata.name} exited with code {code}",
        )
