"""Activity calls with CodeBlue's timeouts and retry policies, recorded on the timeline.

Reads never fail the workflow (a failure is logged and answers None); writes raise so a
saga can compensate; notifications are logged as delivered, skipped or failed.

Each step takes the activity's method (`KubernetesActivities.pod_status`), not its name: a
missing activity or a wrong argument shows in mypy, and the result's type comes from the
method's annotation. The activity type recorded in history is still the method's name, so
renaming a method renames the type: tests/activities/test_activity_names.py pins them (keep an old name
with `@activity.defn(name=...)`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Literal, TypeVar, overload

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.timeline import CODEBLUE, Timeline, reason

with workflow.unsafe.imports_passed_through():
    from activities.environment import EnvironmentActivities
    from activities.health import HealthActivities
    from activities.helm import HelmActivities
    from activities.kubernetes import KubernetesActivities
    from activities.notify import NotifierActivities
    from domain.cluster import HelmRollbackRequest, ScaleRequest
    from domain.config import CodeBlueConfig, Contacts, EnvironmentQuery
    from domain.identity import UNVERIFIED, StartedBy
    from domain.incident import TimelineKind, Undo
    from domain.notify import Audience, ChangeEventRequest, Delivery, Link, PageRequest

A = TypeVar("A")
R = TypeVar("R")
# An activity as a workflow names it: a method of an activity class, unbound
# (`KubernetesActivities.pod_status`), whose argument and result mypy checks; the worker's
# registered instance, real or fake, runs it by its name.
Activity = Callable[[Any, A], Awaitable[R]]

NON_RETRYABLE = ["Forbidden", "NotFound", "BadConfig", "HelmNotFound", "NotificationRejected"]
READ_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=NON_RETRYABLE,
)
WRITE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=3,
    non_retryable_error_types=NON_RETRYABLE + ["RolloutTimeout"],
)
NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=20),
    maximum_attempts=5,
    non_retryable_error_types=NON_RETRYABLE,
)
# PagerDuty's events: a 429 backs off for minutes (activities.notify.PD_BACKOFF_*): about
# 1 + 2 + 4 + 4 minutes before the step is recorded failed and the incident goes on
PAGE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=4),
    maximum_attempts=5,
    non_retryable_error_types=NON_RETRYABLE,
)
# a worker that dies mid-step is noticed within this, and the step retried elsewhere
HEARTBEAT_TIMEOUT_SECONDS = 15
READ_TIMEOUT_SECONDS = 60
# reads whose activities heartbeat on a timer (activities.heartbeat): a dead worker shows in 15 s
HEARTBEATING_READS: set[Activity[Any, Any]] = {HealthActivities.probe_health, KubernetesActivities.gateway_logs}


# One config object for every open incident that read the same config: each incident's own
# copy was about 24 KiB, and a worker holds a thousand. The deployed worker shares this module
# between runs (worker.temporal.workflow_runner); under the strict sandbox each run has its own
# table and nothing is shared. Equal by value, so which object a run gets cannot change what it
# does: never mutate a config in a workflow (model_copy makes a changed one). A worker reads one
# config; when differing ones pile up (a config change mid-rollout), the least recently read goes.
_SHARED_CONFIGS: OrderedDict[str, CodeBlueConfig] = OrderedDict()
SHARED_CONFIGS_MAX = 8


def shared_config(cfg: CodeBlueConfig) -> CodeBlueConfig:
    # Each OrderedDict call is atomic, so another workflow thread using the table at the same
    # time costs at most a miss, and a miss keeps the caller's own (equal) object.
    key = cfg.model_dump_json()
    hit = _SHARED_CONFIGS.get(key)
    if hit is not None:
        try:
            _SHARED_CONFIGS.move_to_end(key)  # the most recently read
        except KeyError:  # evicted by another thread just now
            pass
        return hit
    _SHARED_CONFIGS[key] = cfg
    while len(_SHARED_CONFIGS) > SHARED_CONFIGS_MAX:
        try:
            _SHARED_CONFIGS.popitem(last=False)  # the least recently read
        except KeyError:
            break
    return cfg


def shared_config_count() -> int:
    return len(_SHARED_CONFIGS)


def activity_name(fn: Callable[..., Any]) -> str:
    """The activity type an activity method runs as (what history records): for a compensation
    kept as data, so it names its activity through the method too, never a typed string."""
    defn = getattr(fn, "__temporal_activity_definition", None)  # set by @activity.defn
    if defn is None:
        raise TypeError(f"{fn!r} is not an activity")
    return str(defn.name)


def budget(arg: Any, floor: float) -> float:
    """The start-to-close timeout a request needs (its own `budget_seconds()`: attempts x
    timeout, helm's --timeout, a wait's deadline), never below `floor`."""
    need = getattr(arg, "budget_seconds", None)
    return max(floor, need()) if callable(need) else floor


# The only activities a compensation kept as data may name, each with the request it takes.
COMPENSATIONS: dict[str, type[BaseModel]] = {
    activity_name(HelmActivities.helm_rollback): HelmRollbackRequest,
    activity_name(KubernetesActivities.scale_deployment): ScaleRequest,
}


class Steps:
    def __init__(self, timeline: Timeline, incident_id: str, contacts: Callable[[], Contacts]) -> None:
        self.timeline = timeline
        self.incident_id = incident_id
        self.contacts = contacts
        self.service = ""  # the incident's, on its pages (their source and component)
        self.paged: dict[str, str] = {}  # dedup key -> audience: the pages to resolve at the end
        self.acknowledged: set[str] = set()  # pages acknowledged (a repeat would change nothing)
        self.ui_base = ""  # the Temporal UI (the worker's config): each page links to its workflow there
        self.runbook = ""  # the service's runbook (the catalog's), linked beside it

    async def worker_config(self, start: StartedBy, service: str = "") -> CodeBlueConfig:
        """The worker's config, read once and kept in history: the worker, not the starter,
        decides where a workflow acts. A person's start is checked there too: a proof an
        earlier run of this workflow ID used marks it refused (`start.start_refused`). A start
        already refused reads nothing (its run ends without acting)."""
        if start.start_refused:
            return shared_config(CodeBlueConfig())
        cfg = await self._worker_config(start, service)
        self.ui_base = cfg.ui.base_url.rstrip("/")
        self.runbook = cfg.runbook_url or ""
        return cfg

    async def _worker_config(self, start: StartedBy, service: str) -> CodeBlueConfig:
        info = workflow.info()
        first = info.parent is None and info.continued_run_id is None
        query = EnvironmentQuery(incident_id=self.incident_id, service=service)
        if first and start.start_proof:
            query = EnvironmentQuery(incident_id=self.incident_id, service=service, workflow_id=info.workflow_id,
                                     run_id=info.run_id, start_proof=start.start_proof,
                                     start_issued_at=start.start_issued_at)
        try:
            return await self._read_config(query, "read the worker's environment")
        except ActivityError as e:
            if not (isinstance(e.cause, ApplicationError) and e.cause.type == "StartRefused"):
                raise
            start.requested_by, start.start_refused = UNVERIFIED, e.cause.message
            return shared_config(CodeBlueConfig())

    async def service_config(self, service: str) -> CodeBlueConfig:
        """The worker's config for another catalog service of this incident (the IC named it)."""
        cfg = await self._read_config(EnvironmentQuery(incident_id=self.incident_id, service=service),
                                      f"read the worker's environment for {service}")
        self.runbook = cfg.runbook_url or ""
        return cfg

    async def _read_config(self, query: EnvironmentQuery, summary: str) -> CodeBlueConfig:
        return shared_config(await workflow.execute_activity_method(
            EnvironmentActivities.worker_config, query, start_to_close_timeout=timedelta(seconds=30),
            retry_policy=READ_RETRY, summary=summary))

    @overload
    async def read(self, activity: Activity[A, R], arg: A, summary: str) -> R | None: ...

    @overload  # an activity function (activities.authority)
    async def read(self, activity: Callable[[A], Awaitable[R]], arg: A, summary: str) -> R | None: ...

    async def read(self, activity: Callable[..., Awaitable[R]], arg: Any, summary: str) -> R | None:
        """A read-only activity; its failure is recorded, never fatal to the incident."""
        try:
            return await workflow.execute_activity(
                activity,
                arg,
                start_to_close_timeout=timedelta(seconds=budget(arg, READ_TIMEOUT_SECONDS)),
                heartbeat_timeout=timedelta(seconds=HEARTBEAT_TIMEOUT_SECONDS) if activity in HEARTBEATING_READS else None,
                schedule_to_close_timeout=timedelta(minutes=20),
                retry_policy=READ_RETRY,
                summary=summary,
            )
        except ActivityError as e:
            self.timeline.log(CODEBLUE, f"{summary} failed", reason(e), kind=TimelineKind.FAILED)
            return None

    async def write(
        self,
        activity: Activity[A, R],
        arg: A,
        summary: str,
        timeout_seconds: int = 120,
        heartbeat: bool = False,
        retry: RetryPolicy = WRITE_RETRY,
    ) -> R:
        return await workflow.execute_activity_method(
            activity,
            arg,
            start_to_close_timeout=timedelta(seconds=budget(arg, timeout_seconds)),
            heartbeat_timeout=timedelta(seconds=HEARTBEAT_TIMEOUT_SECONDS) if heartbeat else None,
            retry_policy=retry,
            summary=summary,
        )

    async def undo(self, u: Undo) -> None:
        """A compensation kept as data (so it survives continue-as-new) names its activity by
        the type string in history: the one step called by name, so only the names in
        COMPENSATIONS run, with their own request model; anything else is refused."""
        model = COMPENSATIONS.get(u.activity)
        if model is None:
            raise ApplicationError(f"refused compensation {u.activity!r}: not one of CodeBlue's", type="UnknownCompensation",
                                   non_retryable=True)
        await workflow.execute_activity(
            u.activity,
            model.model_validate(u.arg),
            result_type=dict,
            start_to_close_timeout=timedelta(seconds=u.timeout_seconds),
            heartbeat_timeout=timedelta(seconds=HEARTBEAT_TIMEOUT_SECONDS) if u.heartbeat else None,
            retry_policy=WRITE_RETRY,
            summary=u.summary,
        )

    async def notify(self, activity: Activity[A, Delivery], arg: A, summary: str,
                     retry: RetryPolicy = NOTIFY_RETRY) -> Delivery | None:
        try:
            d: Delivery = await workflow.execute_activity_method(
                activity,
                arg,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=retry,
                summary=summary,
            )
        except ActivityError as e:
            self.timeline.log(CODEBLUE, f"{summary} failed", reason(e), kind=TimelineKind.FAILED)
            return None
        if d.skipped:
            self.timeline.log(CODEBLUE, f"{summary} skipped", d.detail, kind=TimelineKind.NOTIFICATION)
        else:
            self.timeline.log(CODEBLUE, summary, d.detail or "delivered", kind=TimelineKind.NOTIFICATION)
        return d

    def _contact(self, who: Audience, commander: str | None) -> str:
        c = self.contacts()
        return {
            Audience.ON_CALL: c.on_call,
            Audience.ENGINEERING_MANAGER: c.engineering_manager,
            Audience.DEVOPS_LEAD: c.devops_lead,
            Audience.SECURITY: c.security,
            Audience.COMMANDER: commander or c.on_call,
        }[who]

    def links(self) -> list[Link]:
        """This workflow in the Temporal UI, where its timeline, report and proposals are."""
        runbook = [Link(href=self.runbook, text=f"{self.service or 'service'} runbook")] if self.runbook else []
        if not self.ui_base:
            return runbook
        info = workflow.info()
        return [Link(href=f"{self.ui_base}/namespaces/{info.namespace}/workflows/{info.workflow_id}",
                     text=f"{self.incident_id} in the Temporal UI"), *runbook]

    async def page(
        self, who: Audience, key: str, text: str, severity: str, commander: str | None = None
    ) -> Delivery | None:
        """Pages once per (incident, audience, key): the dedup key makes retries harmless."""
        dedup = f"{self.incident_id}:{who.value}:{key}"
        d = await self.notify(
            NotifierActivities.page,
            PageRequest(incident_id=self.incident_id, audience=who, contact=self._contact(who, commander),
                        severity=severity, summary=text, dedup_key=dedup, service=self.service, links=self.links()),
            f"Page {who.value.replace('_', ' ')}",
            retry=PAGE_RETRY,
        )
        if d is not None and d.delivered:
            self.paged[dedup] = who.value
        return d

    async def acknowledge_pages(self, severity: str, commander: str | None) -> None:
        """The IC took the incident: the pages that asked someone to take it stop escalating
        (the others, to the manager or security, stay open until the incident ends)."""
        for dedup, audience in list(self.paged.items()):
            who = Audience(audience)
            if who not in (Audience.ON_CALL, Audience.COMMANDER) or dedup in self.acknowledged:
                continue
            self.acknowledged.add(dedup)
            await self._follow_up(dedup, who, "acknowledge", severity, commander)

    async def _follow_up(self, dedup: str, who: Audience, action: Literal["acknowledge", "resolve"], severity: str,
                         commander: str | None) -> None:
        """An earlier page's next event (Events API v2: by its dedup key)."""
        await self.notify(
            NotifierActivities.page,
            PageRequest(incident_id=self.incident_id, audience=who, contact=self._contact(who, commander),
                        severity=severity, summary=f"{action}d", dedup_key=dedup, action=action,
                        service=self.service),
            f"{action.capitalize()} the {who.value.replace('_', ' ')} page",
            retry=PAGE_RETRY,
        )

    async def change_event(self, kind: str, summary: str, details: dict[str, str] | None = None) -> None:
        """A change CodeBlue made to production, on the service's PagerDuty timeline."""
        await self.notify(
            NotifierActivities.change_event,
            ChangeEventRequest(incident_id=self.incident_id, service=self.service, kind=kind, summary=summary[:1024],
                               timestamp=workflow.now().isoformat(), details=details or {}, links=self.links()),
            f"Change event: {kind}",
            retry=PAGE_RETRY,
        )

    async def resolve_pages(self, severity: str, commander: str | None) -> None:
        """The incident is over: every page it raised is resolved, so none keeps escalating."""
        for dedup, audience in list(self.paged.items()):
            await self._follow_up(dedup, Audience(audience), "resolve", severity, commander)
            del self.paged[dedup]
