"""Mitigation: approved actions run in the IC's order in the incident's one saga, each only
while the world is what the IC approved acting on; a failure undoes them newest first."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError, WorkflowAlreadyStartedError

# Models and CodeBlue's workflow helpers hold no per-run state: imported once, shared by every run
with workflow.unsafe.imports_passed_through():
    from activities.kubernetes import KubernetesActivities
    from domain.action_params import (
        DbCheckParams,
        HelmRollbackParams,
        PlaybookParams,
        RolloutRestartParams,
        ScaleUpParams,
    )
    from domain.blast_radius import Mutation, MutationKind, deployment_target, release_target
    from domain.cluster import (
        HelmRollbackRequest,
        NamespaceQuery,
        ScaleRequest,
        ScaleResult,
    )
    from domain.incident import (
        MOVED_TYPES,
        Action,
        ActionKind,
        ActionState,
        TimelineKind,
        Undo,
    )
    from domain.notify import Audience
    from domain.procedures import BY_WORKFLOW
    from workflows.approvals import settle
    from workflows.blast_radius import ask_for, leased
    from workflows.incident.phases import Phases
    from workflows.recheck import recheck_health, recheck_slis
    from workflows.runbook_steps import (
        StepFailed,
        db_check,
        helm_rollback,
        helm_rollback_undo,
        restart_and_wait,
    )
    from workflows.saga import Saga
    from workflows.steps import activity_name
    from workflows.timeline import CODEBLUE
    from workflows.timeline import reason as _reason

MAX_PLAYBOOK_RUNS = 50
# the steps after which the evidence is read again (a check or a playbook start changes nothing)
CHANGES_PRODUCTION = frozenset({ActionKind.HELM_ROLLBACK, ActionKind.SCALE_UP, ActionKind.ROLLOUT_RESTART})

# a mutating step refused because production is no longer what the IC approved acting on
MOVED = MOVED_TYPES




def _moved(e: ActivityError) -> dict[str, Any] | None:
    """The facts a "moved" refusal carries (its first detail), or None for any other failure."""
    cause = e.cause
    if isinstance(cause, ApplicationError) and cause.type in MOVED:
        d = cause.details[0] if cause.details else {}
        return d if isinstance(d, dict) else {}
    return None



class Mitigation(Phases):
    def _wants_mitigation(self) -> bool:
        if self.escalations:
            return True
        return bool(self.book.approved())

    async def _mitigate(self) -> None:
        """Run approved actions in the order the IC approved them, in the incident's one saga:
        a failure undoes every executed mitigation, newest first."""
        while self.escalations:
            e = self.escalations.pop(0)
            await self._page(Audience.ON_CALL, f"escalate-{e.severity.value}", f"Escalated to {e.severity.value}: {self.inp.title}")
            if self.severity.is_major and not self.status_page_opened:
                await self._communicate(final=False)
            if self.severity.is_major:
                self._propose()
        approved = self.book.approved()
        if not approved:
            return
        approved.sort(key=lambda a: a.decided_at_seconds or 0.0)
        saga = self.saga
        try:
            for act in approved:
                await self._execute(act, saga)  # at once: the status page waits for the fix, not the other way
                if act.state == ActionState.EXECUTED and self.severity.is_major and self.status_page_status == "investigating":
                    await self._status_page("identified", self.inp.public_summary)
                if act.state == ActionState.EXECUTED and act.kind in CHANGES_PRODUCTION:
                    await self._recheck(act)
        except StepFailed as e:
            self._log(CODEBLUE, "Mitigation failed; compensating in reverse", str(e), kind=TimelineKind.COMPENSATION)
            await saga.compensate()
            for act in approved:
                if act.state == ActionState.APPROVED:
                    settle(act, ActionState.FAILED, "not run: an earlier step failed")
            await self._page(
                Audience.ENGINEERING_MANAGER, "mitigation-failed", f"Mitigation failed and was rolled back: {self.inp.title}"
            )
        self._details()

    async def _recheck(self, after: Action) -> None:
        """After a mitigation: pods, health and logs again. Healthy: the proposals still
        waiting are moot and withdrawn (no reminder, no page for them); else they stay."""
        problems, logs = await recheck_health(self.steps, self.cfg)
        await recheck_slis(self.steps, self.tl, self.cfg, self.inp.incident_id, self.assessment, after.id)
        errors = logs.error_counts if logs else {}
        pending = self.book.pending()
        if problems:
            self._log(CODEBLUE, f"Re-checked after {after.id}: still unhealthy",
                      "; ".join(problems) + (f"; still waiting: {', '.join(pending)}" if pending else ""), kind=TimelineKind.VERIFICATION)
            return
        why = f"after {after.id}: pods ready, health endpoint OK, log errors {errors}"
        self._log(CODEBLUE, f"Re-checked after {after.id}: healthy", why, kind=TimelineKind.VERIFICATION)
        if self.severity.is_major and self.status_page_status in ("investigating", "identified"):
            await self._status_page("monitoring", self.inp.public_summary)
        for aid in pending:
            act = self.actions[aid]
            act.state = ActionState.SUPERSEDED
            act.result = f"superseded: {why}"
        if pending:
            self._log(CODEBLUE, "Withdrawn as superseded", f"{', '.join(pending)}: the evidence no longer calls for them", kind=TimelineKind.SUPERSEDED)

    def _mutation(self, act: Action) -> Mutation | None:
        """The blast-radius ask of a step that changes production (None: a check or a playbook
        start, which change nothing here)."""
        iid = self.inp.incident_id
        if act.kind == ActionKind.HELM_ROLLBACK:
            rb = act.params_as(HelmRollbackParams)
            return ask_for(act, iid, MutationKind.ROLLBACK, release_target(rb.namespace, rb.release))
        if act.kind == ActionKind.SCALE_UP:
            sc = act.params_as(ScaleUpParams)
            return ask_for(act, iid, MutationKind.SCALE, deployment_target(sc.namespace, sc.deployment), sc.replicas)
        if act.kind == ActionKind.ROLLOUT_RESTART:
            r = act.params_as(RolloutRestartParams)
            return ask_for(act, iid, MutationKind.RESTART, deployment_target(r.namespace or self.cfg.kubernetes.namespace,
                                                                             r.deployment))
        return None

    async def _execute(self, act: Action, saga: Saga) -> None:
        self._log(CODEBLUE, f"Executing {act.id} ({act.kind.value})", act.reason, kind=TimelineKind.EXECUTING)
        ask = self._mutation(act)
        if ask is None:
            await self._run_step(act, saga)
            return
        async with leased(self.tl, act, ask, self.cfg.blast_radius.wait_seconds) as ok:
            if ok:
                await self._run_step(act, saga)

    async def _run_step(self, act: Action, saga: Saga) -> None:
        try:
            if act.kind == ActionKind.HELM_ROLLBACK:
                await self._rollback(act, saga)
            elif act.kind == ActionKind.SCALE_UP:
                await self._scale(act, saga)
            elif act.kind == ActionKind.ROLLOUT_RESTART:
                r = act.params_as(RolloutRestartParams)
                ns, dep = r.namespace or self.cfg.kubernetes.namespace, r.deployment
                act.compensation = "none needed (a restart changes no configuration)"
                st = await restart_and_wait(self.steps, ns, dep, self.cfg.mitigation.rollout_timeout_seconds,
                                            expected_revision=r.revision)
                act.result = f"restarted; {st.available}/{st.desired} available"
            elif act.kind == ActionKind.PLAYBOOK:
                playbook = act.params_as(PlaybookParams).workflow
                try:
                    cid = await self._start_playbook(playbook)
                except FailureError as e:  # the start itself was refused: this step failed, the incident goes on
                    raise StepFailed(f"could not start {playbook}: {_reason(e)}") from None
                act.compensation = "none here: the playbook keeps its own compensations"
                act.result = f"started {cid}; the IC decides its steps there"
            elif act.kind == ActionKind.DB_CHECK:
                target = act.params_as(DbCheckParams)
                res = await db_check(self.steps, self.cfg, target.namespace, target.deployment, "database connection check")
                act.result = res.detail
                if not res.ok:
                    raise StepFailed(f"database connection check failed: {res.detail}")
        except StepFailed as e:
            settle(act, ActionState.FAILED, act.result or str(e))
            self._log(CODEBLUE, f"Failed {act.id}", str(e), kind=TimelineKind.FAILED)
            raise
        except ActivityError as e:
            moved = _moved(e)
            if moved is not None:
                saga.forget(act)  # refused before it changed anything
                settle(act, ActionState.SUPERSEDED, _reason(e))
                self._log(CODEBLUE, f"Not run {act.id}: the world moved since the decision", _reason(e), kind=TimelineKind.SUPERSEDED)
                self._repropose(act, moved)
                return
            settle(act, ActionState.FAILED, _reason(e))
            self._log(CODEBLUE, f"Failed {act.id}", act.result, kind=TimelineKind.FAILED)
            raise StepFailed(f"{act.id}: {act.result}") from None
        settle(act, ActionState.EXECUTED)
        self._log(CODEBLUE, f"Executed {act.id}", act.result, kind=TimelineKind.EXECUTED)

    async def _rollback(self, act: Action, saga: Saga) -> None:
        p = act.params_as(HelmRollbackParams)
        req = HelmRollbackRequest(
            release=p.release,
            namespace=p.namespace,
            from_revision=p.from_revision,
            to_revision=p.to_revision,
            timeout_seconds=self.cfg.helm.timeout_seconds,
        )
        # registered before it runs: the rollback may fail mid-way
        undo = helm_rollback_undo(act.id, req)
        saga.register(act, undo, f"helm rollback {req.release} {req.from_revision} (back to where it was)")
        res = await helm_rollback(self.steps, req, f"helm rollback to {req.to_revision}")
        # the undo only acts while the release is still at the revision this rollback made
        undo.arg["from_revision"] = res.new_revision
        act.result = f"revision {res.from_revision} -> {res.to_revision} (new revision {res.new_revision})"
        if res.already_done:
            act.result += "; found done by an earlier attempt, not repeated"
        await self.steps.change_event(
            "rollback", f"CodeBlue rolled back {req.release} to revision {res.to_revision} ({self.inp.incident_id})",
            {"release": req.release, "namespace": req.namespace, "from_revision": str(res.from_revision),
             "to_revision": str(res.to_revision), "approved_by": act.decided_by or ""})

    async def _scale(self, act: Action, saga: Saga) -> None:
        p = act.params_as(ScaleUpParams)
        ns, dep, n = p.namespace, p.deployment, p.replicas
        seen = p.from_replicas
        if seen is None:
            current = await self._read(KubernetesActivities.deployment_status, NamespaceQuery(namespace=ns), "read replicas")
            seen = next((d.desired for d in (current.deployments if current else []) if d.name == dep), None)
            if seen is None:
                raise StepFailed(f"cannot read the current replica count of {dep}")
        undo = Undo(
            action_id=act.id,
            activity=activity_name(KubernetesActivities.scale_deployment),
            # back to the count the step found, only while the deployment is still at ours
            arg=ScaleRequest(namespace=ns, deployment=dep, replicas=seen,
                             expected_replicas=n).model_dump(mode="json", exclude_none=True),
            summary=f"compensate: scale {dep} to {seen}",
        )
        saga.register(act, undo, f"scale {dep} back to {seen} replicas")
        res: ScaleResult = await self._write(
            KubernetesActivities.scale_deployment,
            ScaleRequest(namespace=ns, deployment=dep, replicas=n, expected_replicas=seen),
            f"scale {dep} to {n}",
        )
        act.result = f"{dep} scaled {res.previous_replicas} -> {res.replicas}"

    def _repropose(self, act: Action, facts: dict[str, Any]) -> None:
        """The world moved between the IC's decision and the step: propose it again with
        the facts as they are now; the IC decides again."""
        p = dict(act.params)
        base = re.sub(r"-\d+$", "", act.id)
        n = 2
        while f"{base}-{n}" in self.actions:
            n += 1
        new_id = f"{base}-{n}"
        # read through the kind's model; the new proposal's params stay a dict with one fact updated
        if act.kind == ActionKind.HELM_ROLLBACK:
            rb = act.params_as(HelmRollbackParams)
            cur = facts.get("current_revision")
            if cur == rb.to_revision:
                self._log(CODEBLUE, f"Withdrawn {act.id}", f"the release is already at revision {cur}", kind=TimelineKind.SUPERSEDED)
                return
            p["from_revision"] = cur
            why = (f"release {rb.release} moved to revision {cur} after the decision on {act.id}; "
                   f"roll it back to revision {rb.to_revision} only if revision {cur} did not fix it")
        elif act.kind == ActionKind.SCALE_UP:
            sc = act.params_as(ScaleUpParams)
            cur = facts.get("current_replicas")
            if cur is not None and cur >= sc.replicas:
                self._log(CODEBLUE, f"Withdrawn {act.id}", f"{sc.deployment} already runs {cur} replicas", kind=TimelineKind.SUPERSEDED)
                return
            p["from_replicas"] = cur
            why = f"{sc.deployment} was scaled to {cur} replicas after the decision on {act.id}; scale to {sc.replicas}"
        else:  # a rollout restart: the only other step with a precondition
            dep = act.params_as(RolloutRestartParams).deployment
            cur = facts.get("current_revision")
            p["revision"] = cur
            why = f"{dep} rolled out revision {cur} after the decision on {act.id}; restart its pods again?"
        self.book.propose(Action(id=new_id, kind=act.kind, reason=why, params=p))
        if self.watcher is None or self.watcher.done():
            self.watcher = asyncio.ensure_future(self._watch_proposals(round_key=new_id))

    async def _start_playbook(self, name: str) -> str:
        """A runbook playbook as a child that outlives this incident (it has its own IC gates)."""
        common = {
            "incident_id": self.inp.incident_id,
            "requested_by": CODEBLUE,
            "commander": self.commander,
            "severity": self.severity,
        }
        procedure = BY_WORKFLOW.get(name)
        if procedure is None or procedure.proposal is None:  # only what an incident proposes
            raise StepFailed(f"unknown playbook {name}")
        model = procedure.input
        base = procedure.workflow_id(self.inp.incident_id)
        # A recurring alert key runs the same incident ID again while an earlier run's playbook
        # may still be open: each run's playbook gets the next free `<base>[-N]`, never reused.
        for ordinal in range(1, MAX_PLAYBOOK_RUNS + 1):
            cid = base if ordinal == 1 else f"{base}-{ordinal}"
            try:
                await workflow.start_child_workflow(
                    name, model(**common), id=cid, parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    static_summary=f"{name} for {self.inp.incident_id}",
                )
            except WorkflowAlreadyStartedError:
                continue  # an earlier run's (or one started by hand): take the next
            if ordinal > 1:
                self._log(CODEBLUE, f"{base} is taken", f"by an earlier run of {self.inp.incident_id} or by hand; started {cid}",
                          kind=TimelineKind.STEP)
            return cid
        raise StepFailed(f"{base} .. {base}-{MAX_PLAYBOOK_RUNS} all exist; start one by hand")
