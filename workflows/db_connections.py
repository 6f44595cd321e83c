"""The runbook's "Database Connection Issues": look at the instance, the pool and the path to
the database before restarting anything.

Diagnostics (read-only): RDS instance status and pending modifications, connection-pool
evidence counted in the gateway's logs (raw lines never leave the worker: patient data), and a
reachability check of the database from CodeBlue. Then one proposal for the IC:
* the instance serves: `restart` (rollout restart of the gateway) -> wait -> verify (database
  check, connection errors in the new pods' logs at most the threshold, /health);
* the instance is down (or gone): `restore`, which starts `DatabaseRestoreWorkflow` as a child
  with its own two IC gates; this playbook reports the child's outcome.
A restart replaces pods and has nothing to undo, so no saga; a failed verification pages the
engineering manager. Workflow ID: `<incident>-db-connections`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ChildWorkflowError, WorkflowAlreadyStartedError

# Models and CodeBlue's workflow helpers hold no per-run state: imported once, shared by every run
with workflow.unsafe.imports_passed_through():
    from activities.aws_rds import RdsActivities
    from activities.kubernetes import KubernetesActivities
    from domain.blast_radius import MutationKind, deployment_target
    from domain.cluster import (
        DbCheckResult,
        LogsQuery,
        LogsReport,
    )
    from domain.database_restore import DatabaseRestoreInput, RdsInstanceInfo, RdsWaitRequest, restore_workflow_id
    from domain.db_connections import INSTANCE_DOWN_STATES, POOL_EXHAUSTED_PATTERN, DbConnectionsInput
    from domain.incident import Action, ActionKind, ActionState, IncidentReport, Phase, TimelineKind
    from domain.notify import Audience
    from workflows.approvals import settle
    from workflows.blast_radius import ask_for, leased
    from workflows.playbook import Playbook
    from workflows.runbook_steps import db_check_request, restart_and_wait, verify_health
    from workflows.timeline import CODEBLUE, reason

RESTORE_WORKFLOW = "DatabaseRestoreWorkflow"
NO_UNDO = "none needed: a restart only replaces pods"
VERIFY_ATTEMPTS = 3
VERIFY_PAUSE = timedelta(seconds=15)


@workflow.defn
class DatabaseConnectionPlaybook(Playbook):
    @workflow.init
    def __init__(self, inp: DbConnectionsInput) -> None:
        self._begin(inp)

    @workflow.query
    def status(self) -> IncidentReport:
        return self._report()

    # ---------------------------------------------------------------- run
    @workflow.run
    async def run(self, inp: DbConnectionsInput) -> IncidentReport:
        await self._configure()
        self.tl.log(inp.requested_by, "Database connection playbook",
                    f"instance {self.cfg.aws.rds_instance}, gateway {self.cfg.kubernetes.gateway_deployment}; IC {self.book.commander}", kind=TimelineKind.EVENT)
        self.phase = Phase.DIAGNOSTICS
        inst = await self._instance()
        before = await self._pool_evidence("")
        reach = await self._reachability("")
        self.phase = Phase.MITIGATION
        if inst is None or inst.status in INSTANCE_DOWN_STATES:
            await self._restore(inst)
        else:
            await self._restart(before, reach)
        self.book.closed_reason = "the playbook has ended"
        self.phase = Phase.RESOLVED
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._report()

    # ---------------------------------------------------------------- diagnostics
    async def _instance(self) -> RdsInstanceInfo | None:
        name = self.cfg.aws.rds_instance
        inst: RdsInstanceInfo | None = await self.steps.read(
            RdsActivities.rds_instance_status, RdsWaitRequest(target=name), f"aws rds describe-db-instances {name}")
        if inst is None:
            self.facts["instance"] = {"identifier": name, "status": "unknown"}
            return None
        pending = ", ".join(f"{k}={v}" for k, v in inst.pending_modifications.items()) or "none"
        self.facts["instance"] = {"identifier": name, "status": inst.status, "pending_modifications": inst.pending_modifications,
                                  "endpoint": inst.endpoint}
        self.tl.log(CODEBLUE, "RDS instance", f"{name}: {inst.status}; pending modifications: {pending}; endpoint {inst.endpoint}", kind=TimelineKind.STEP)
        return inst

    async def _pool_evidence(self, when: str) -> LogsReport | None:
        k = self.cfg.kubernetes
        q = LogsQuery(namespace=k.namespace, deployment=k.gateway_deployment, tail_lines=k.log_tail_lines,
                      patterns={"connection": k.error_patterns.get("connection", "connection"),
                                "pool_exhausted": POOL_EXHAUSTED_PATTERN})
        logs: LogsReport | None = await self.steps.read(KubernetesActivities.gateway_logs, q,
                                                        f'kubectl logs {k.gateway_deployment} | grep "connection"{when}')
        if logs is not None:
            self.facts["logs_after" if when else "logs"] = logs.model_dump()
            self.tl.log(CODEBLUE, f"Connection errors in gateway logs{when}",
                        f"{logs.error_counts.get('connection', 0)} lines mention connections, "
                        f"{logs.error_counts.get('pool_exhausted', 0)} pool exhausted "
                        f"({logs.lines_scanned} lines of {logs.pods_read} pods)", kind=TimelineKind.STEP)
        return logs

    async def _reachability(self, when: str) -> DbCheckResult | None:
        k = self.cfg.kubernetes
        chk = await self.steps.read(
            KubernetesActivities.db_check, db_check_request(self.cfg, k.namespace, k.gateway_deployment, run_command=False),
            f"database reachability from CodeBlue{when}")
        if chk is not None:
            self.facts["reachability_after" if when else "reachability"] = chk.model_dump()
            self.tl.log(CODEBLUE, f"Database {'reachable' if chk.ok else 'NOT reachable'} from CodeBlue{when}", chk.detail, kind=TimelineKind.STEP)
        return chk

    # ---------------------------------------------------------------- the instance serves: restart
    async def _restart(self, logs: LogsReport | None, reach: DbCheckResult | None) -> None:
        k, m = self.cfg.kubernetes, self.cfg.mitigation
        conn = logs.error_counts.get("connection", 0) if logs else None
        pool = logs.error_counts.get("pool_exhausted", 0) if logs else None
        evidence = (f"{conn} connection lines ({pool} pool exhausted) in the gateway's logs" if logs else "gateway logs unreadable")
        evidence += "; database reachable from CodeBlue" if reach and reach.ok else "; database NOT reachable from CodeBlue"
        act = self.book.propose(Action(
            id="restart", kind=ActionKind.ROLLOUT_RESTART,
            reason=f"kubectl rollout restart deployment/{k.gateway_deployment}: fresh pods, fresh connection pools; {evidence}",
            params={"deployment": k.gateway_deployment, "connection_errors": conn, "pool_exhausted": pool},
            compensation=NO_UNDO,
        ))
        if not await self._await_decision(act):
            return
        self.tl.log(CODEBLUE, "Executing restart", act.reason, kind=TimelineKind.EXECUTING)
        ask = ask_for(act, self.inp.incident_id, MutationKind.RESTART, deployment_target(k.namespace, k.gateway_deployment))
        async with leased(self.tl, act, ask, self.cfg.blast_radius.wait_seconds) as ok:
            if not ok:
                await self._not_fixed(f"restart not run: {act.result}")
                return
            try:
                st = await restart_and_wait(self.steps, k.namespace, k.gateway_deployment, m.rollout_timeout_seconds)
            except ActivityError as e:
                settle(act, ActionState.FAILED, reason(e))
                self.tl.log(CODEBLUE, "Failed restart", act.result, kind=TimelineKind.FAILED)
                failed = True
            else:
                failed = False
                settle(act, ActionState.EXECUTED, f"{st.available}/{st.desired} available")
                self.tl.log(CODEBLUE, "Executed restart", act.result, kind=TimelineKind.EXECUTED)
        if failed:
            await self._not_fixed(f"restart failed: {act.result}")
            return
        self.phase = Phase.RESOLVING
        for attempt in range(1, VERIFY_ATTEMPTS + 1):
            problems = await self._verify()
            if not problems:
                break
            if attempt < VERIFY_ATTEMPTS:
                self.tl.log(CODEBLUE, "Not verified yet; checking again", "; ".join(problems), kind=TimelineKind.VERIFICATION)
                await workflow.sleep(VERIFY_PAUSE, summary="settle before verifying again")
        if problems:
            await self._not_fixed("not verified after the restart: " + "; ".join(problems))
            return
        self.status_text, self.verified = "resolved", True
        self.summary = f"{k.gateway_deployment} restarted; database reachable, connection errors gone, /health ok"
        self.tl.log(CODEBLUE, "Verified", self.summary, kind=TimelineKind.VERIFICATION)

    async def _verify(self) -> list[str]:
        """What is still wrong after the restart; empty when verified."""
        problems = []
        chk = await self._reachability(" (after)")
        if not (chk and chk.ok):
            problems.append(f"database check: {chk.detail if chk else 'could not run'}")
        logs = await self._pool_evidence(" (after)")
        limit = self.inp.max_connection_errors
        if logs is None:
            problems.append("gateway logs unreadable")
        elif logs.error_counts.get("connection", 0) > limit:
            problems.append(f"{logs.error_counts['connection']} connection lines in the new pods' logs (at most {limit})")
        h = self.cfg.health
        health = await verify_health(self.steps, h, f"GET {h.url}")
        if health is not None:
            self.facts["health_after"] = health.model_dump()
            self.tl.log(CODEBLUE, "Health check " + ("passed" if health.ok else "failed"),
                        f"{health.successes}/{health.attempts} ok, last status {health.last_status}", kind=TimelineKind.VERIFICATION)
        if not (health and health.ok):
            problems.append("/health not ok")
        return problems

    async def _not_fixed(self, why: str) -> None:
        self.status_text, self.verified, self.summary = "not_verified", False, why
        await self.steps.page(Audience.ENGINEERING_MANAGER, "db-connections-unresolved",
                              f"Database connection playbook: {why}", self.inp.severity.value, self.book.commander)

    # ---------------------------------------------------------------- the instance is down: restore
    async def _restore(self, inst: RdsInstanceInfo | None) -> None:
        name = self.cfg.aws.rds_instance
        wid = restore_workflow_id(self.inp.incident_id)
        state = f"is {inst.status}" if inst else "could not be described (missing or unreadable)"
        act = self.book.propose(Action(
            id="restore", kind=ActionKind.PLAYBOOK,
            reason=(f"the instance {name} {state}: a gateway restart cannot help; start {RESTORE_WORKFLOW} ({wid}) "
                    f"to restore it from snapshot {self.cfg.aws.rds_snapshot}; it asks the IC again before "
                    "restoring and before cutting over"),
            params={"workflow": RESTORE_WORKFLOW, "workflow_id": wid, "source": name, "snapshot": self.cfg.aws.rds_snapshot},
            compensation="inside the restore workflow (its cutover saga)",
        ))
        if not await self._await_decision(act):
            return
        child_input = DatabaseRestoreInput(incident_id=self.inp.incident_id, requested_by=f"{self.book.commander} (db-connections)",
                                           commander=self.book.commander, severity=self.inp.severity)
        try:
            child = await workflow.start_child_workflow(
                RESTORE_WORKFLOW, child_input, id=wid, result_type=IncidentReport,
                parent_close_policy=workflow.ParentClosePolicy.ABANDON,  # a restore is never cut off half-done
                static_summary=f"Database restore for {self.inp.incident_id} (from the connection playbook)",
            )
        except WorkflowAlreadyStartedError:
            settle(act, ActionState.EXECUTED, f"{wid} was already running; follow it there")
            self.status_text, self.summary = "restore_running", act.result
            self.tl.log(CODEBLUE, "Restore already running", act.result, kind=TimelineKind.EVENT)
            return
        self.tl.log(CODEBLUE, f"Started {RESTORE_WORKFLOW}", f"{wid}: decide its gates there (restore, cutover)", kind=TimelineKind.EVENT)
        act.result = f"started {wid}"
        try:
            rep: IncidentReport = await child
        except ChildWorkflowError as e:
            settle(act, ActionState.FAILED, f"{wid} failed: {reason(e)}")
            self.tl.log(CODEBLUE, "Restore workflow failed", act.result, kind=TimelineKind.FAILED)
            await self._not_fixed(act.result)
            return
        settle(act, ActionState.EXECUTED, f"{wid} ended {rep.status}, verified={rep.verified}")
        self.facts["restore"] = {"workflow_id": wid, "status": rep.status, "verified": rep.verified, "summary": rep.summary}
        self.tl.log(CODEBLUE, "Restore workflow ended", act.result, kind=TimelineKind.EVENT)
        self.status_text, self.verified, self.summary = rep.status, rep.verified, rep.summary

    # ---------------------------------------------------------------- the IC's decision
    async def _await_decision(self, act: Action) -> bool:
        """Wait for the IC (reminders, then the EM); True when approved."""
        self.tl.log(CODEBLUE, f"Waiting for the IC: {act.id}", f"IC {self.book.commander}: approve or reject {act.id}", kind=TimelineKind.EVENT)

        async def remind(pending: list[str]) -> None:
            self.tl.log("sla", "Decision waiting; reminding the IC", ", ".join(pending), kind=TimelineKind.EVENT)
            await self.steps.page(Audience.COMMANDER, f"db-connections-{act.id}", f"Decision needed on {act.id}",
                                  self.inp.severity.value, self.book.commander)

        async def escalate(pending: list[str]) -> None:
            self.tl.log("sla", "Decision still waiting; paging engineering manager", ", ".join(pending), kind=TimelineKind.EVENT)
            await self.steps.page(Audience.ENGINEERING_MANAGER, f"db-connections-{act.id}-waiting",
                                  f"IC decision pending on {act.id}", self.inp.severity.value, self.book.commander)

        m = self.cfg.mitigation
        await self.book.wait_with_reminders(lambda: not self.book.all_decided(), m.remind_after_seconds,
                                            m.escalate_after_seconds, remind, escalate)
        await workflow.wait_condition(self.book.all_decided)
        if act.state == ActionState.REJECTED:
            self.status_text = "rejected"
            self.summary = f"{act.id} rejected by {act.decided_by}: {act.rejection_reason}"
            self.tl.log(CODEBLUE, f"Stopped: the IC rejected {act.id}", "nothing changed", kind=TimelineKind.EVENT)
            return False
        return True

    def _subject(self) -> tuple[str, str]:
        return f"Database connection issues: {self.cfg.aws.rds_instance} / {self.cfg.kubernetes.gateway_deployment}", "database"

    def _assessment(self) -> dict[str, Any]:
        return {"db_connections": dict(self.facts)}
