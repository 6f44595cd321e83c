"""Alertmanager webhook (v4) -> incidents: rules give severity and service; a stable dedup key
gives ONE incident per key (workflow ID derived from the key, signal-with-start `add_alerts`)."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field, PrivateAttr
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.converter import DataConverter
from temporalio.service import RPCError, RPCStatusCode

from domain.alerts import ALERT_PREFIX, MAX_BATCH, AlertBatch, AlertNotice
from domain.config import ApiConfig
from domain.identity import ENV_KEY, IdentityKeyError, Principal, keyring_from_env
from domain.incident import IncidentInput
from domain.severity import Severity
from starters import service as svc
from starters.api.alert_spool import AlertSpool
from worker.identity import acting_as
from workflows.incident_response import IncidentResponseWorkflow

log = logging.getLogger(__name__)
ENV_ALERT_ID_KEY = "CODEBLUE_ALERT_ID_KEY"
INCIDENT_TYPE = "IncidentResponseWorkflow"

SIGNAL = "add_alert"
# A webhook's alerts of one key go as one signal (one workflow task), up to MAX_BATCH each.
BATCH_SIGNAL = "add_alerts"
# True once the workflow has the handler: alerts then land on the incident's timeline.
# Until then signal-with-start still dedups, and the signals wait in the history.
TIMELINE_RECORDS_ALERTS = hasattr(IncidentResponseWorkflow, SIGNAL)


class AmAlert(BaseModel):
    model_config = {"extra": "ignore"}  # Alertmanager adds fields over time
    status: str = Field(pattern=r"^(firing|resolved)$")
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    startsAt: str = ""
    endsAt: str = ""
    generatorURL: str = ""
    fingerprint: str = ""
    # A severity the sender stated (the generic webhook); None: the rules decide.
    _severity: Severity | None = PrivateAttr(default=None)


class AmWebhook(BaseModel):
    """https://prometheus.io/docs/alerting/latest/configuration/#webhook_config payload."""

    model_config = {"extra": "ignore"}
    version: str = Field(pattern=r"^4$")
    status: str = Field(pattern=r"^(firing|resolved)$")
    receiver: str = ""
    groupKey: str = ""
    # no count limit of its own: the route's body limit (api.max_alert_body_bytes) bounds it, and
    # Alertmanager sends a group whole (thousands of alerts with its default max_alerts 0)
    alerts: list[AmAlert] = Field(min_length=1)
    groupLabels: dict[str, str] = {}
    commonLabels: dict[str, str] = {}
    commonAnnotations: dict[str, str] = {}
    externalURL: str = ""
    # alerts of the group Alertmanager left out (its receiver's max_alerts): recorded on the incident
    truncatedAlerts: int = Field(default=0, ge=0)


class GenericAlert(BaseModel):
    """One alert from any monitoring tool that can POST JSON."""

    model_config = {"extra": "forbid"}
    name: str = Field(min_length=1, max_length=200, description="What fired (Alertmanager's alertname).")
    status: str = Field(default="firing", pattern=r"^(firing|resolved)$")
    severity: Severity | None = Field(default=None, description="Stated severity; omitted: the alert rules decide.")
    service: str | None = Field(default=None, max_length=100, description="Omitted: api.default_service.")
    summary: str = Field(default="", max_length=2000)
    fingerprint: str = Field(default="", max_length=200, description="Stable ID: a re-sent alert is recorded once.")
    labels: dict[str, str] = Field(default={}, description="More labels, for the alert rules and dedup_labels.")


class GenericWebhook(BaseModel):
    model_config = {"extra": "forbid"}
    alerts: list[GenericAlert] = Field(min_length=1)  # bounded by api.max_alert_body_bytes

    def as_alertmanager(self, cfg: ApiConfig) -> AmWebhook:
        """The same routing, dedup and delivery as Alertmanager's alerts."""
        out = []
        for g in self.alerts:
            labels = {**g.labels, "alertname": g.name}
            if g.service:
                labels[cfg.service_label] = g.service
            a = AmAlert(status=g.status, labels=labels, annotations={"summary": g.summary} if g.summary else {},
                        fingerprint=g.fingerprint)
            a._severity = g.severity
            out.append(a)
        return AmWebhook(version="4", status="firing", alerts=out)


def route(a: AmAlert, cfg: ApiConfig) -> tuple[Severity, str]:
    """First rule whose `match` labels all equal the alert's wins; else the defaults. A
    severity the sender stated wins over both; a rule's service still applies."""
    service = a.labels.get(cfg.service_label) or cfg.default_service
    for rule in cfg.alert_rules:
        if all(a.labels.get(k) == v for k, v in rule.match.items()):
            return a._severity or Severity(rule.severity), rule.service or service
    return a._severity or Severity(cfg.alert_default_severity), service


def dedup_key(a: AmAlert, cfg: ApiConfig, service: str) -> str:
    parts = []
    for name in cfg.dedup_labels:
        value = service if name == cfg.service_label else a.labels.get(name, "")
        parts.append(f"{name}={value}")
    return ",".join(parts)


@functools.cache
def _alert_id_secret() -> bytes:
    """`CODEBLUE_ALERT_ID_KEY`, else derived from the operator key: without it nobody can tell
    which workflow ID a key's alerts will open, so nobody can park a workflow there first."""
    given = os.environ.get(ENV_ALERT_ID_KEY, "").strip()
    if given:
        return given.encode()
    ring = keyring_from_env()
    if not ring.can_sign:
        raise IdentityKeyError(f"no operator key ({ENV_KEY}) and no {ENV_ALERT_ID_KEY}: alert incident IDs need a secret")
    return hmac.new(ring.keys[0][1], b"codeblue alert incident IDs", hashlib.sha256).digest()


@functools.lru_cache(maxsize=16_384)  # a group's alerts share a key: one HMAC per key, not per alert
def incident_id_for(key: str, ordinal: int = 1) -> str:
    """Stable for a key and opaque: label values (which may be sensitive) stay out of the
    workflow ID, and without the server's secret the ID cannot be predicted. `ordinal` > 1:
    the alternates used when the ID is held by a workflow that is not a CodeBlue incident."""
    base = ALERT_PREFIX + hmac.new(_alert_id_secret(), key.encode(), hashlib.sha256).hexdigest()[:24]
    return base if ordinal == 1 else f"{base}-{ordinal}"


ALTERNATES = 5
# a key's checked incident ID is trusted this long (a storm costs one describe per key a minute)
JOINABLE_SECONDS = 60.0
_joinable: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()


async def joinable_id(client: Client, key: str, task_queue: str) -> str:
    """The key's incident ID that alerts may join: free, closed, or a CodeBlue incident on
    this task queue. One held by anything else (another type, another task queue, where no
    CodeBlue worker would ever run it) is passed over, so the alert still reaches an incident."""
    now = time.monotonic()
    known = _joinable.get((key, task_queue))
    if known is not None and now - known[1] < JOINABLE_SECONDS:
        return known[0]
    iid = await _check_joinable(client, key, task_queue)
    _joinable[(key, task_queue)] = (iid, now)
    _joinable.move_to_end((key, task_queue))
    while len(_joinable) > 10_000:
        _joinable.popitem(last=False)
    return iid


async def _check_joinable(client: Client, key: str, task_queue: str) -> str:
    for ordinal in range(1, ALTERNATES + 1):
        iid = incident_id_for(key, ordinal)
        try:
            desc = await client.get_workflow_handle(iid).describe()
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                return iid
            raise
        if desc.status != WorkflowExecutionStatus.RUNNING:
            return iid
        if (desc.workflow_type == INCIDENT_TYPE
                and desc.raw_description.execution_config.task_queue.name == task_queue):
            return iid
        log.warning("alert incident ID %s is held by a foreign workflow (%s on %s): using the next",
                    iid, desc.workflow_type, desc.raw_description.execution_config.task_queue.name)
    raise svc.CodeBlueError(f"{ALTERNATES} incident IDs for one alert key are held by foreign workflows")


def notice(a: AmAlert, key: str, sev: Severity, service: str, principal: str) -> AlertNotice:
    summary = a.annotations.get("summary") or a.annotations.get("description") or ""
    return AlertNotice(
        dedup_key=key,
        alertname=(a.labels.get("alertname") or "unnamed")[:200],
        status=a.status,
        severity=sev.value,
        service=service,
        summary=summary[:2000],
        fingerprint=a.fingerprint,
        starts_at=a.startsAt,
        received_by=principal,
    )


class RecentAlerts:
    """What this API process delivered lately, per incident and alert fingerprint: Alertmanager
    re-sends a firing alert every group/repeat interval, and a re-send with an unchanged status
    is dropped here instead of becoming one more signal in the incident's history. Only a
    delivered alert is remembered (a failed delivery is retried in full), entries expire after
    `window_seconds` and the table is bounded; the workflow's own ledger stays the authority
    (a restart of the API forgets, and the workflow still records each alert once)."""

    def __init__(self, window_seconds: float = 600.0, max_entries: int = 50_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window, self.max_entries, self.clock = window_seconds, max_entries, clock
        self._seen: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()

    def repeat(self, iid: str, n: AlertNotice) -> bool:
        if self.window <= 0 or not n.fingerprint:
            return False
        hit = self._seen.get((iid, n.fingerprint))
        return hit is not None and hit[0] == n.status and self.clock() - hit[1] < self.window

    def remember(self, by_incident: dict[str, list[AlertNotice]]) -> None:
        if self.window <= 0:
            return
        now = self.clock()
        for iid, notices in by_incident.items():
            for n in notices:
                if n.fingerprint:
                    self._seen[(iid, n.fingerprint)] = (n.status, now)
                    self._seen.move_to_end((iid, n.fingerprint))
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)


def _sort(hook: AmWebhook, cfg: ApiConfig, principal: str, recent: RecentAlerts | None = None,
          ) -> tuple[dict[str, dict[str, Any]], dict[str, list[AlertNotice]]]:
    """Each alert to its key's incident, in the order Alertmanager sent them; a re-send that
    `recent` already delivered is counted as `repeats` and goes no further."""
    results: dict[str, dict[str, Any]] = {}
    by_incident: dict[str, list[AlertNotice]] = {}
    for a in hook.alerts:
        sev, service = route(a, cfg)
        key = dedup_key(a, cfg, service)
        iid = incident_id_for(key)
        r = results.setdefault(iid, {"incident_id": iid, "dedup_key": key, "firing": 0, "resolved": 0,
                                     "recorded": 0, "queued": 0, "repeats": 0})
        r[a.status] += 1
        n = notice(a, key, sev, service, principal)
        if recent is not None and recent.repeat(iid, n):
            r["repeats"] += 1
            continue
        by_incident.setdefault(iid, []).append(n)
    if hook.truncatedAlerts:  # each incident the group reaches hears what Alertmanager left out
        group = hashlib.sha256(hook.groupKey.encode()).hexdigest()[:16]  # label values stay out of history
        for notices in by_incident.values():
            notices[0] = notices[0].model_copy(update={"group": group, "group_truncated": hook.truncatedAlerts})
    return results, by_incident


def _answer(hook: AmWebhook, results: dict[str, dict[str, Any]], delivery: str) -> dict[str, Any]:
    return {"incidents": list(results.values()), "alerts": len(hook.alerts), "timeline": TIMELINE_RECORDS_ALERTS,
            "delivery": delivery, **({"truncated_alerts": hook.truncatedAlerts} if hook.truncatedAlerts else {})}


async def ingest(client: Client, hook: AmWebhook, cfg: ApiConfig, task_queue: str, principal: str,
                 recent: RecentAlerts | None = None) -> dict[str, Any]:
    """Direct delivery: firing alerts open (or join) their key's incident before the answer;
    resolved ones are only recorded on a running incident."""
    results, by_incident = _sort(hook, cfg, principal, recent)

    async def one_key(iid: str, notices: list[AlertNotice]) -> None:
        # In order within a key (firing before resolved on the timeline); keys in parallel.
        try:
            target = await joinable_id(client, notices[0].dedup_key, task_queue)
        except RPCError as e:
            raise svc.rpc_error(e, iid) from None
        results[iid]["incident_id"] = target
        for batch in delivery_batches(notices):
            opener = next((n for n in batch if n.status == "firing"), None)
            if opener is not None:
                await _signal_with_start(client, target, opener, task_queue, AlertBatch(notices=batch))
            elif not await _signal_if_open(client, target, AlertBatch(notices=batch)):
                continue
            results[iid]["recorded"] += len(batch)

    await asyncio.gather(*(one_key(iid, ns) for iid, ns in by_incident.items()))
    if recent is not None:
        recent.remember(by_incident)
    return _answer(hook, results, "direct")


def delivery_batches(notices: list[AlertNotice]) -> list[list[AlertNotice]]:
    """A key's alerts as signals, in order: the resolved ones ahead of its first firing alert
    on their own (recorded only if an incident is open: they never open one), then the rest in
    batches of at most MAX_BATCH, each opening the incident if none is running."""
    first = next((i for i, n in enumerate(notices) if n.status == "firing"), len(notices))
    ahead, rest = notices[:first], notices[first:]
    out = [ahead[i:i + MAX_BATCH] for i in range(0, len(ahead), MAX_BATCH)]
    out += [rest[i:i + MAX_BATCH] for i in range(0, len(rest), MAX_BATCH)]
    return out


async def enqueue(spool: AlertSpool, converter: DataConverter, hook: AmWebhook, cfg: ApiConfig,
                  principal: str, recent: RecentAlerts | None = None) -> dict[str, Any]:
    """Spooled delivery: answered once the alerts are on the API's disk; the forwarder
    delivers them to their incidents, in order per key."""
    results, by_incident = _sort(hook, cfg, principal, recent)
    items: list[tuple[str, bytes]] = []
    for iid, notices in by_incident.items():
        for n in notices:
            n.ingest_id = uuid.uuid4().hex
        payloads = await converter.encode(notices)  # encrypted at rest when a codec key is set
        items.extend((iid, p.SerializeToString()) for p in payloads)
        results[iid]["queued"] = len(notices)
    await spool.append(items)
    if recent is not None:
        recent.remember(by_incident)
    return _answer(hook, results, "queued")


def incident_input(iid: str, n: AlertNotice) -> IncidentInput:
    """The incident a firing alert opens when its key has none running."""
    return IncidentInput(
        incident_id=iid,
        title=f"[alert] {n.alertname} on {n.service}"[:200],
        severity=Severity(n.severity),
        service=n.service,
        commander=None,
        requested_by=n.received_by,
        severity_reasons=[f"alert rule: {n.alertname} -> {n.severity}"],
    )


async def signal_with_start(client: Client, iid: str, opener: AlertNotice, task_queue: str,
                            signal: str, arg: Any) -> None:
    """Joins the key's running incident, or opens it with `opener`; raises RPCError as is."""
    inp = incident_input(iid, opener)
    # the alert's token (received_by) opened it: the start's proof says so (worker.identity)
    with acting_as(alert_sender(inp.requested_by)):
        await _start(client, inp, iid, task_queue, signal, arg)


def alert_sender(received_by: str) -> Principal:
    """Who signs alert deliveries: the token the alerts came in with, in the alerts role."""
    return Principal(name=received_by or "alerts", roles=["alerts"])


def sender_of(arg: Any) -> Principal:
    notices = arg.notices if isinstance(arg, AlertBatch) else [arg]
    return alert_sender(getattr(notices[0], "received_by", "") if notices else "")


async def _start(client: Client, inp: IncidentInput, iid: str, task_queue: str, signal: str, arg: Any) -> None:
    await client.start_workflow(
        IncidentResponseWorkflow.run,
        inp,
        id=iid,
        task_queue=task_queue,
        start_signal=signal,
        start_signal_args=[arg],
        static_summary=f"{inp.severity.value}: {inp.title}",
        search_attributes=svc.initial_search_attributes(inp),
    )


async def signal_if_open(client: Client, iid: str, signal: str, arg: Any) -> bool:
    """Resolved alerts never open an incident: recorded only while one runs."""
    h = client.get_workflow_handle(iid)
    try:
        if (await h.describe()).status != WorkflowExecutionStatus.RUNNING:
            return False
        with acting_as(sender_of(arg)):
            await h.signal(signal, arg)
        return True
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            return False
        raise


async def _signal_with_start(client: Client, iid: str, opener: AlertNotice, task_queue: str, batch: AlertBatch) -> None:
    try:
        await signal_with_start(client, iid, opener, task_queue, BATCH_SIGNAL, batch)
    except RPCError as e:
        raise svc.rpc_error(e, iid) from None


async def _signal_if_open(client: Client, iid: str, batch: AlertBatch) -> bool:
    try:
        return await signal_if_open(client, iid, BATCH_SIGNAL, batch)
    except RPCError as e:
        raise svc.rpc_error(e, iid) from None
