"""The runbook's kubectl steps as activities: read pods, services, logs, metrics; scale,
restart and watch a rollout; check the database the gateway uses.

Every activity takes one model from `domain.cluster` and returns one. The official client
is synchronous, so each API call runs in a worker thread (`asyncio.to_thread`).

Errors (`ApplicationError.type`):
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
import json
import math
import re
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deferred import deferred
from activities.heartbeat import DEFAULT_INTERVAL_SECONDS, Heartbeater, resume_details
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
    PodState,
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
    import kubernetes.stream
    import kubernetes.utils.quantity
    import psycopg
    import psycopg.conninfo
    import urllib3.exceptions
else:
    psycopg = deferred("psycopg")  # binds psycopg.conninfo when it loads
    urllib3 = deferred("urllib3")
    kubernetes = deferred("kubernetes")  # its __init__ binds client, stream, utils

T = TypeVar("T")

RESTARTED_AT_ANNOTATION = "kubectl.kubernetes.io/restartedAt"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
MAX_LOG_TAIL_LINES = 10_000
_MIN_POLL_SECONDS = 0.05


def _one_line(text: str, limit: int = 240) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _api_message(e: kubernetes.client.ApiException) -> str:
    """The `message` of the Kubernetes Status in the error body, if there is one."""
    body = e.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if isinstance(body, str) and body:
        try:
            data = json.loads(body)
        except ValueError:
            return ""
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            return _one_line(data["message"])
    return ""


def api_error(e: kubernetes.client.ApiException, action: str, target: str) -> ApplicationError:
    """Map an API error to an ApplicationError with a one-line message."""
    status = int(e.status or 0)
    detail = _api_message(e)
    if status == 404:
        return ApplicationError(f"{target} not found", type="NotFound", non_retryable=True)
    if status == 403:
        msg = f"forbidden to {action} {target}" + (f": {detail}" if detail else "")
        return ApplicationError(_one_line(msg, 400), type="Forbidden", non_retryable=True)
    if status == 401:
        return ApplicationError(f"unauthorized to {action} {target}: check the worker's credentials",
                                type="Unauthorized", non_retryable=True)
    if status in (400, 422):
        msg = f"cannot {action} {target}: HTTP {status}" + (f": {detail}" if detail else "")
        return ApplicationError(_one_line(msg, 400), type="InvalidRequest", non_retryable=True)
    reason = detail or (e.reason or "")
    msg = f"cannot {action} {target}: HTTP {status}" + (f" {reason}" if reason else "")
    return ApplicationError(_one_line(msg, 400), type="KubernetesApiError")


def unavailable(e: BaseException, action: str, target: str) -> ApplicationError:
    kind = "timed out" if isinstance(e, (TimeoutError, urllib3.exceptions.TimeoutError)) else "unreachable"
    return ApplicationError(
        f"cannot {action} {target}: Kubernetes API {kind} ({type(e).__name__})", type="KubernetesUnavailable"
    )


async def k8s_call(action: str, target: str, fn: Callable[..., T], *args: Any, timeout: float,
                   missing: tuple[int, ...] = (), **kwargs: Any) -> T | None:
    """One Kubernetes client call in a thread, with one error mapping for every activity class:
    an HTTP status in `missing` means "not there" (None); other API errors become `api_error`;
    a timeout or a dead connection becomes `unavailable` (retryable, and says which)."""
    kwargs.setdefault("_request_timeout", timeout)
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except kubernetes.client.ApiException as e:
        if e.status in missing:
            return None
        raise api_error(e, action, target) from None
    except (urllib3.exceptions.HTTPError, OSError, TimeoutError) as e:
        raise unavailable(e, action, target) from None


def memory_bytes(quantity: str | int | float | None) -> int | None:
    """`'512Mi'` -> 536870912; `'1G'`, `'300000Ki'`, plain bytes; None/garbage -> None."""
    if quantity is None or quantity == "":
        return None
    try:
        return int(math.ceil(kubernetes.utils.quantity.parse_quantity(quantity)))
    except (ValueError, TypeError, ArithmeticError):
        return None


def selector_string(selector: kubernetes.client.V1LabelSelector | None) -> str:
    """A LabelSelector as the `labelSelector` query parameter."""
    if selector is None:
        return ""
    terms = [f"{k}={v}" for k, v in sorted((selector.match_labels or {}).items())]
    for expr in selector.match_expressions or []:
        values = ",".join(expr.values or [])
        op = expr.operator
        if op == "In":
            terms.append(f"{expr.key} in ({values})")
        elif op == "NotIn":
            terms.append(f"{expr.key} notin ({values})")
        elif op == "Exists":
            terms.append(expr.key)
        elif op == "DoesNotExist":
            terms.append(f"!{expr.key}")
    return ",".join(terms)


def _replicas(dep: kubernetes.client.V1Deployment) -> int:
    replicas = dep.spec.replicas if dep.spec is not None else None
    return 1 if replicas is None else int(replicas)


def rollout_state(dep: kubernetes.client.V1Deployment) -> RolloutState:
    """As `kubectl rollout status` judges it: the controller saw the latest spec, every
    replica runs the new template and is available, and no old replicas are left."""
    desired = _replicas(dep)
    status = dep.status or kubernetes.client.V1DeploymentStatus()
    updated = int(status.updated_replicas or 0)
    available = int(status.available_replicas or 0)
    total = int(status.replicas or 0)
    generation = int(dep.metadata.generation or 0)
    observed = int(status.observed_generation or 0)
    complete = observed >= generation and updated == desired and available == desired and total == desired
    return RolloutState(
        deployment=dep.metadata.name, complete=complete, desired=desired, updated=updated, available=available
    )


def pod_state(pod: kubernetes.client.V1Pod) -> PodState:
    meta = pod.metadata
    status = pod.status or kubernetes.client.V1PodStatus()
    statuses = list(status.container_statuses or [])
    ready_cond = next((c for c in status.conditions or [] if c.type == "Ready"), None)
    if ready_cond is not None:
        ready = ready_cond.status == "True"
    else:
        ready = bool(statuses) and all(s.ready for s in statuses)
    waiting = next((s.state.waiting.reason for s in statuses if s.state and s.state.waiting and s.state.waiting.reason), None)
    last_term = next(
        (s.last_state.terminated.reason for s in statuses
         if s.last_state and s.last_state.terminated and s.last_state.terminated.reason),
        None,
    ) or next((s.state.terminated.reason for s in statuses if s.state and s.state.terminated and s.state.terminated.reason), None)
    containers = (pod.spec.containers if pod.spec is not None else None) or []
    labels = meta.labels or {}
    owner = labels.get("app") or labels.get("app.kubernetes.io/name")
    if owner is None:
        for ref in meta.owner_references or []:
            if ref.kind == "ReplicaSet" and labels.get("pod-template-hash"):
                owner = ref.name.removesuffix("-" + labels["pod-template-hash"])
            elif ref.kind in ("Deployment", "StatefulSet", "DaemonSet"):
                owner = ref.name
    phase = status.phase or "Unknown"
    if meta.deletion_timestamp is not None:
        phase = "Terminating"
    return PodState(
        name=meta.name,
        phase=phase,
        ready=ready,
        restarts=sum(int(s.restart_count or 0) for s in statuses),
        waiting_reason=waiting,
        last_termination_reason=last_term,
        image=containers[0].image if containers else None,
        owner=owner,
    )


def _read_text(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    """Call `fn` unpreloaded and read and decode its body here, in the caller's (worker)
    thread: reading the body is the slow, blocking part of a pod log."""
    resp = fn(*args, _preload_content=False, **kwargs)
    try:
        return resp.data.decode("utf-8", errors="replace")
    finally:
        resp.release_conn()


def _redact(text: str, secrets: list[str]) -> str:
    for s in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(s, "***")
    text = re.sub(r"(\w+://)[^/@\s]*@", r"\1***@", text)  # user:password@ in any URL
    return re.sub(r"(?i)(password\s*=\s*)\S+", r"\1***", text)


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
                desired=_replicas(d),
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
                (400, 404), "read", target, _read_text, self._core.read_namespaced_pod_log, pod_name, ns,
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
        configuration = self._api_client.configuration

        def run() -> int | None:
            # `stream()` swaps the ApiClient's request method while it runs: use a private client.
            with kubernetes.client.ApiClient(configuration) as api:
                ws = kubernetes.stream.stream(
                    kubernetes.client.CoreV1Api(api).connect_get_namespaced_pod_exec, pod.metadata.name, ns,
                    command=command, container=container, stderr=True, stdin=False, stdout=True, tty=False,
                    _preload_content=False,
                )
                try:
                    ws.run_forever(timeout=timeout)
                    return ws.returncode if not ws.is_open() else None
                finally:
                    ws.close()

        shown = " ".join(command)
        t0 = time.perf_counter()
        try:
            code = await asyncio.to_thread(run)
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


async def check_database(url: str, connect_timeout_seconds: float, *, source: str = "the database URL") -> DbCheckResult:
    """Connect with `url`, run `SELECT 1`; the result names host:port/db, never credentials."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return DbCheckResult(ok=False, detail=f"{source} is not a valid PostgreSQL connection string")
    password = str(params.get("password") or "")
    user = str(params.get("user") or "")
    where = f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}/{params.get('dbname') or user or 'postgres'}"
    # libpq counts connect_timeout in whole seconds and treats anything below 2 as 2.
    timeout = max(2, math.ceil(connect_timeout_seconds))
    t0 = time.perf_counter()
    try:
        async with asyncio.timeout(timeout + 2.0):
            conn = await psycopg.AsyncConnection.connect(url, connect_timeout=timeout, autocommit=True)
            async with conn:
                cur = await conn.execute("SELECT 1")
                row = await cur.fetchone()
        if not row or row[0] != 1:
            return DbCheckResult(ok=False, detail=f"connected to {where} but SELECT 1 returned {row!r}")
    except TimeoutError:
        return DbCheckResult(ok=False, detail=f"cannot connect to {where}: timed out after {timeout}s")
    except (psycopg.Error, OSError) as e:
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        reason = _one_line(_redact(first, [url, password, f"{user}:{password}" if password else ""]))
        return DbCheckResult(ok=False, detail=f"cannot connect to {where}: {reason}")
    latency = round((time.perf_counter() - t0) * 1000.0, 2)
    return DbCheckResult(ok=True, latency_ms=latency, detail=f"connected to {where}; SELECT 1 ok")
