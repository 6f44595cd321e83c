"""One Kubernetes API call as every activity class makes it, and the readings of API objects
they share: `KubernetesActivities`, the database cutover and the release state all map a
client error the same way (`api_error`, `unavailable`) and read pods and rollouts alike.

The official client is synchronous, so each call runs in a worker thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from temporalio.exceptions import ApplicationError

from activities.deferred import deferred
from domain.cluster import PodState, RolloutState

# Deferred (activities.deferred): workflows import the activity modules for their typed
# activity references; these clients load only where an activity uses them.
if TYPE_CHECKING:
    import kubernetes.client
    import kubernetes.stream
    import kubernetes.utils.quantity
    import urllib3.exceptions
else:
    urllib3 = deferred("urllib3")
    kubernetes = deferred("kubernetes")  # its __init__ binds client, stream, utils

T = TypeVar("T")


def one_line(text: str, limit: int = 240) -> str:
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
            return one_line(data["message"])
    return ""


def api_error(e: kubernetes.client.ApiException, action: str, target: str) -> ApplicationError:
    """Map an API error to an ApplicationError with a one-line message."""
    status = int(e.status or 0)
    detail = _api_message(e)
    if status == 404:
        return ApplicationError(f"{target} not found", type="NotFound", non_retryable=True)
    if status == 403:
        msg = f"forbidden to {action} {target}" + (f": {detail}" if detail else "")
        return ApplicationError(one_line(msg, 400), type="Forbidden", non_retryable=True)
    if status == 401:
        return ApplicationError(f"unauthorized to {action} {target}: check the worker's credentials",
                                type="Unauthorized", non_retryable=True)
    if status in (400, 422):
        msg = f"cannot {action} {target}: HTTP {status}" + (f": {detail}" if detail else "")
        return ApplicationError(one_line(msg, 400), type="InvalidRequest", non_retryable=True)
    reason = detail or (e.reason or "")
    msg = f"cannot {action} {target}: HTTP {status}" + (f" {reason}" if reason else "")
    return ApplicationError(one_line(msg, 400), type="KubernetesApiError")


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


def desired_replicas(dep: kubernetes.client.V1Deployment) -> int:
    replicas = dep.spec.replicas if dep.spec is not None else None
    return 1 if replicas is None else int(replicas)


def rollout_state(dep: kubernetes.client.V1Deployment) -> RolloutState:
    """As `kubectl rollout status` judges it: the controller saw the latest spec, every
    replica runs the new template and is available, and no old replicas are left."""
    desired = desired_replicas(dep)
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


def read_text(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    """Call `fn` unpreloaded and read and decode its body here, in the caller's (worker)
    thread: reading the body is the slow, blocking part of a pod log."""
    resp = fn(*args, _preload_content=False, **kwargs)
    try:
        return resp.data.decode("utf-8", errors="replace")
    finally:
        resp.release_conn()


def pod_exec(configuration: kubernetes.client.Configuration, namespace: str, pod: str, container: str | None,
             command: list[str], timeout: float) -> int | None:
    """Run `command` in a pod: its exit code, or None if it still ran after `timeout` seconds.
    Blocking (a websocket read to the end): call it in a worker thread."""
    # `stream()` swaps the ApiClient's request method while it runs: use a private client.
    with kubernetes.client.ApiClient(configuration) as api:
        ws = kubernetes.stream.stream(
            kubernetes.client.CoreV1Api(api).connect_get_namespaced_pod_exec, pod, namespace,
            command=command, container=container, stderr=True, stdin=False, stdout=True, tty=False,
            _preload_content=False,
        )
        try:
            ws.run_forever(timeout=timeout)
            return ws.returncode if not ws.is_open() else None
        finally:
            ws.close()
