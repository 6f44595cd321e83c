"""The runbook's first three steps for an incident: diagnostics and assessment raced against
their SLA clocks, communication, and the IC's proposals with their reminder clock."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

# Models and CodeBlue's workflow helpers hold no per-run state: imported once, shared by every run
with workflow.unsafe.imports_passed_through():
    from activities.health import HealthActivities
    from activities.helm import HelmActivities
    from activities.kubernetes import KubernetesActivities
    from activities.notify import NotifierActivities
    from activities.slack import SlackActivities
    from domain import catalog
    from domain.assessment import Assessment, Diagnostics, Evidence, assess, propose, rank
    from domain.cluster import (
        HealthProbeRequest,
        HealthProbeResult,
        HelmQuery,
        NamespaceQuery,
    )
    from domain.incident import (
        Phase,
        ProposalWatch,
        TimelineKind,
    )
    from domain.notify import Audience, MessageRequest, StatusPageRequest, public_text, public_title
    from domain.severity import Severity
    from domain.slack import SlackChannelRequest, SlackInvitee
    from workflows import metrics
    from workflows.analysis import read_slis
    from workflows.incident.state import IncidentState
    from workflows.runbook_steps import (
        gateway_logs,
        verify_health,
    )
    from workflows.steps import NOTIFY_RETRY
    from workflows.timeline import CODEBLUE, reason
    from workflows.timeline import mmss as _mmss

CHANNEL_STEP = "Create incident channel"
CHANNEL_TIMEOUT_SECONDS = 60  # create (or find), a few invites, the topic, the bookmark


async def _none() -> None:
    """A read with no target (a service outside the catalog), in a gather of reads."""
    return None


class Phases(IncidentState):
    async def _diagnostics(self) -> Diagnostics:
        k = self.cfg.kubernetes
        ns = NamespaceQuery(namespace=k.namespace)
        pods, services, logs = await asyncio.gather(
            self._read(KubernetesActivities.pod_status, ns, "kubectl get pods"),
            self._read(KubernetesActivities.service_status, ns, "kubectl get services"),
            gateway_logs(self.steps, k, f"kubectl logs deployment/{k.gateway_deployment}"),
        )
        d = Diagnostics(pods=pods, services=services, logs=logs)
        d.failures = [n for n, v in (("pods", pods), ("services", services), ("logs", logs)) if v is None]
        self.diagnostics = d
        not_ready = len(pods.not_ready) if pods else "?"
        total = len(pods.pods) if pods else "?"
        errs = logs.error_counts if logs else {}
        self._log(
            CODEBLUE,
            "Immediate actions complete",
            f"pods {total} ({not_ready} not ready), services {len(services.services) if services else '?'}, "
            f"log errors {errs}" + (f"; failed: {', '.join(d.failures)}" if d.failures else ""), kind=TimelineKind.STEP,
        )
        return d

    async def _assess_after(self, diag_task: asyncio.Future[Diagnostics]) -> Assessment:
        return await self._assess(await diag_task)

    async def _assess(self, diag: Diagnostics) -> Assessment:
        if self.phase == Phase.DIAGNOSTICS:
            self._set_phase(Phase.ASSESSMENT)
        k = self.cfg.kubernetes
        ns = NamespaceQuery(namespace=k.namespace)
        h = self.cfg.health
        deployments, metrics, helm, health, slis, services = await asyncio.gather(
            self._read(KubernetesActivities.deployment_status, ns, "deployments"),
            self._read(KubernetesActivities.pod_metrics, ns, "kubectl top pods"),
            self._read(
                HelmActivities.helm_history,
                HelmQuery(release=self.cfg.helm.release, namespace=k.namespace),
                "helm history",
            ) if self.cfg.helm.release else _none(),
            verify_health(self.steps, h, "health endpoint probe"),
            read_slis(self.steps, self.inp.incident_id, "SLIs from Prometheus", since=self.started.isoformat()),
            self._other_services(),
        )
        ev = Evidence(deployments=deployments, metrics=metrics, helm=helm, health=health, slis=slis, services=services)
        a = assess(diag, ev, self.cfg, self.started)
        self.assessment = a
        self._log(CODEBLUE, "Assessment complete", " | ".join(a.summary_lines()), kind=TimelineKind.STEP)
        return a

    async def _other_services(self) -> dict[str, HealthProbeResult | None]:
        """The catalog's other services, one probe each, at once: which are unhealthy too
        (nothing read with a one-service catalog)."""
        others = catalog.others_to_probe(self.cfg)
        if not others:
            return {}
        h = self.cfg.health
        reads = await asyncio.gather(*(self._read(
            HealthActivities.probe_health, HealthProbeRequest(url=url, attempts=1, timeout_seconds=h.timeout_seconds),
            f"health of {name}") for name, url in others))
        return {name: r for (name, _), r in zip(others, reads, strict=True)}

    def _propose(self) -> None:
        if self.actions or self.assessment is None:
            return
        acts = propose(self.assessment, self.cfg)
        rank(self.assessment, acts)  # sets rank/recommended; the proposal order stays
        for act in acts:
            self.book.propose(act)
        if not self.actions:
            why = (f"service {self.cfg.unknown_service} is not in the service catalog: CodeBlue knows none of its "
                   "targets and changes nothing" if self.cfg.unknown_service else "the evidence points at no runbook action")
            self._log(CODEBLUE, "No mitigation proposed", why, kind=TimelineKind.EVENT)
        else:
            best = next((a for a in acts if a.recommended), None)
            self._log(
                CODEBLUE,
                "Waiting for the IC's decisions",
                f"IC {self.commander or 'unassigned'}: approve or reject "
                + ", ".join(self.actions)
                + "; an approved action runs at once"
                + (f"; recommended: {best.id} ({best.recommendation})" if best else ""), kind=TimelineKind.EVENT,
            )
            self.watcher = asyncio.ensure_future(self._watch_proposals())
            self.slack.start()
        self._details()

    def _watching(self) -> bool:
        return self._undecided() and not self.handing_over

    def _undecided(self) -> bool:
        return self.final_status == "open" and self.resolution is None and not self.book.all_decided()

    async def _watch_proposals(self, round_key: str = "", resume: ProposalWatch | None = None) -> None:
        """Remind the IC, then page the engineering manager; never decide for them. A later
        round of proposals (`round_key`) pages under its own dedup keys; a continued run
        `resume`s the clock, so the deadlines stay where they were."""
        suffix = f"-{round_key}" if round_key else ""
        w = resume or ProposalWatch(round_key=round_key, since_seconds=self._t())
        self.watch = w

        async def remind(pending: list[str]) -> None:
            w.reminded = True
            self._log("sla", "Proposals waiting; reminding the IC", ", ".join(pending), kind=TimelineKind.EVENT)
            await self._page(Audience.COMMANDER, f"reminder{suffix}", f"Decision needed on {', '.join(pending)}: {self.inp.title}")

        async def escalate(pending: list[str]) -> None:
            self._log("sla", "Proposals still waiting; paging engineering manager", ", ".join(pending), kind=TimelineKind.EVENT)
            await self._page(
                Audience.ENGINEERING_MANAGER, f"decisions-waiting{suffix}",
                f"IC decision pending on {', '.join(pending)}: {self.inp.title}",
            )

        m = self.cfg.mitigation
        await self.book.wait_with_reminders(
            self._watching, m.remind_after_seconds, m.escalate_after_seconds, remind, escalate,
            elapsed=self._t() - w.since_seconds, reminded=w.reminded,
        )

    async def _race_sla(self, name: str, task: asyncio.Future[Any]) -> None:
        clock = self.sla.get(name)
        if clock is None:  # light path: no SLA, just the work
            await task
            return
        remaining = clock.due_seconds - self._t()
        try:
            if remaining <= 0:
                raise TimeoutError
            await workflow.wait_condition(
                lambda: task.done(),
                timeout=timedelta(seconds=remaining),
                timeout_summary=f"SLA {name} {_mmss(clock.due_seconds)}",
            )
            clock.met = True
            clock.done_seconds = self._t()
            metrics.sla_recorded(clock, self.severity)
            self._log("sla", f"SLA met: {name}", f"at {_mmss(clock.done_seconds)} (due {_mmss(clock.due_seconds)})", kind=TimelineKind.SLA)
        except TimeoutError:
            clock.met = False
            metrics.sla_recorded(clock, self.severity)  # counted at the due instant, not at close
            # the timer fired at the due instant; the task that saw it ran a few ms later
            self._log(
                "sla",
                f"SLA missed: {name}",
                f"not complete at {_mmss(clock.due_seconds)}; paging engineering manager",
                at=clock.due_seconds, kind=TimelineKind.SLA,
            )
            self._details()
            await self._page(
                Audience.ENGINEERING_MANAGER,
                f"sla-{name}",
                f"SLA missed ({name}, {_mmss(clock.due_seconds)}): {self.inp.title}",
            )

    async def _status_page(self, status: str, public: str | None = None) -> None:
        """The public incident and its service's component: investigating (opened), identified
        (a mitigation approved), monitoring (a mitigation verified), resolved."""
        service = self.inp.service
        sp = await self._notify(
            NotifierActivities.status_page,
            StatusPageRequest(
                incident_id=self.inp.incident_id,
                title=public_title(service),
                status=status,
                message=public_text(status, service, public),
                impact="critical" if self.severity == Severity.P0 else "major",
                services=[service],
                severity=self.severity.value,
            ),
            "Update status page" if status in ("investigating", "resolved") else f"Status page: {status}",
        )
        if sp and sp.delivered:
            self.status_page_opened = True
            self.status_page_status = status

    async def _communicate(self, final: bool) -> None:
        """Public text only: the title and the IC's internal summary may hold patient data."""
        service = self.inp.service
        a = self.assessment
        known = " | ".join(a.summary_lines()) if a else "assessment still running"
        public = self.public_summary if final else self.inp.public_summary
        if self.severity.is_major:
            await self._status_page("resolved" if final else "investigating", public)
        text = (
            f"[{self.severity.value}] {public_title(service)} resolved: {public_text('resolved', service, public)}"
            if final
            else f"[{self.severity.value}] {public_title(service)}. IC: {self.commander or 'unassigned'}. {known}"
            + (f" {public}" if public else "")
            + (" Dashboards: " + ", ".join(f"{k}: {v}" for k, v in a.dashboards.items()) if a and a.dashboards else "")
        )
        await self._notify(
            NotifierActivities.post_message,
            MessageRequest(
                incident_id=self.inp.incident_id,
                kind="stakeholders",
                text=text,
                idempotency_key=f"{self.inp.incident_id}:stakeholders:{'final' if final else 'initial'}",
            ),
            "Notify stakeholders",
        )
        if self.severity.is_major and (final or not await self._open_channel()):
            kind = "channel_close" if final else "channel_open"
            await self._notify(
                NotifierActivities.post_message,
                MessageRequest(
                    incident_id=self.inp.incident_id,
                    kind=kind,
                    text=f"incident-{self.inp.incident_id.lower()}",
                    idempotency_key=f"{self.inp.incident_id}:{kind}",
                ),
                "Close incident channel" if final else CHANNEL_STEP,
            )
        clock = self.sla.get("communication")
        if clock and not final and clock.met is None:
            # "By 15:00": what counts is that the message went out by then.
            clock.met = self._t() <= clock.due_seconds + 1
            clock.done_seconds = self._t()
            metrics.sla_recorded(clock, self.severity)
            self._log("sla", f"SLA {'met' if clock.met else 'missed'}: communication", f"at {_mmss(clock.done_seconds)}", kind=TimelineKind.SLA)

    def _channel_people(self) -> list[SlackInvitee]:
        """Who the channel invites, each once: the IC, the approvers, the on-call contact."""
        out: list[SlackInvitee] = []
        for name, role in ([(self.commander, "IC")] + [(a, "approver") for a in self.cfg.mitigation.approvers]
                           + [(self.cfg.contacts.on_call, "on-call")]):
            if name and all(p.name != name for p in out):
                out.append(SlackInvitee(name=name, role=role))
        return out

    async def _open_channel(self) -> bool:
        """The runbook's "Create incident channel" through Slack's Web API, when the worker has a
        bot token: True once the step is done that way (opened, or failed and on the timeline);
        False when the webhook message stands in for it (no bot token)."""
        if self.slack_channel is not None:
            return True  # opened already (an escalation communicates again)
        if not self.cfg.slack.bot_token_set:
            return False
        links = self.steps.links()
        req = SlackChannelRequest(
            incident_id=self.inp.incident_id, severity=self.severity.value, service=self.inp.service,
            owners_channel=self.cfg.service_slack_channel, people=self._channel_people(), link=links[0].href if links else None,
            link_title=f"{self.inp.incident_id} in the Temporal UI",
        )
        try:
            res = await workflow.execute_activity_method(
                SlackActivities.slack_open_channel, req,
                start_to_close_timeout=timedelta(seconds=CHANNEL_TIMEOUT_SECONDS),
                retry_policy=NOTIFY_RETRY, summary=CHANNEL_STEP,
            )
        except ActivityError as e:
            self._log(CODEBLUE, f"{CHANNEL_STEP} failed", reason(e), kind=TimelineKind.FAILED)
            return True
        if res.skipped:  # this worker has no token after all: the webhook message
            self._log(CODEBLUE, "Slack channel skipped", res.detail, kind=TimelineKind.NOTIFICATION)
            return False
        self.slack_channel = res.channel
        self._log(CODEBLUE, CHANNEL_STEP, res.detail, kind=TimelineKind.NOTIFICATION)
        return True
