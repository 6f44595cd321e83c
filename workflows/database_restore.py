"""Database recovery: restore an RDS snapshot, verify it, cut the gateway over, undo on failure.

One workflow per incident (ID `<incident>-db-restore`). Two IC gates (restore; cutover); the
restore wait is raced against a limit that pages the engineering manager and keeps waiting
until the IC cancels; the cutover is a saga whose compensation puts the old secret back
(from a backup in the cluster: the old URL never enters history), restarts, waits, verifies
and pages the engineering manager.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

# Models and CodeBlue's workflow helpers hold no per-run state: imported once, shared by every run
with workflow.unsafe.imports_passed_through():
    from activities.aws_rds import RdsActivities
    from activities.db_cutover import DbCutoverActivities
    from domain import search_attributes as sa
    from domain.blast_radius import MutationKind, database_target
    from domain.cluster import DbCheckResult, RolloutState
    from domain.database_restore import (
        LATEST,
        CancelRestore,
        DatabaseRestoreInput,
        RdsDeleteRequest,
        RdsInstanceInfo,
        RdsPreflightRequest,
        RdsPreflightResult,
        RdsRestoreRequest,
        RdsRestoreResult,
        RdsWaitRequest,
        RestoredDbVerifyRequest,
        RestoredDbVerifyResult,
        SecretBackupRef,
        SecretBackupRequest,
        SecretChange,
        SecretPointRequest,
        SecretRestoreRequest,
    )
    from domain.incident import (
        Action,
        ActionKind,
        ActionState,
        IncidentReport,
        Phase,
        TimelineKind,
    )
    from domain.notify import Audience
    from workflows.approvals import settle
    from workflows.blast_radius import ask_for, leased
    from workflows.playbook import Playbook
    from workflows.runbook_steps import StepFailed, db_check, restart_and_wait
    from workflows.saga import Saga
    from workflows.steps import NON_RETRYABLE, A, Activity, R
    from workflows.timeline import CODEBLUE, mmss, reason

DB_NON_RETRYABLE = NON_RETRYABLE + [
    "PreflightFailed", "TargetNotOurs", "RestoreFailed", "InvalidRequest", "Unauthorized", "AwsDenied",
    "RolloutTimeout",
]
DB_READ = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(seconds=30),
    maximum_attempts=5, non_retryable_error_types=DB_NON_RETRYABLE,
)
DB_WRITE = RetryPolicy(
    initial_interval=timedelta(seconds=2), backoff_coefficient=2.0, maximum_interval=timedelta(seconds=30),
    maximum_attempts=5, non_retryable_error_types=DB_NON_RETRYABLE,
)


@workflow.defn
class DatabaseRestoreWorkflow(Playbook):
    requester_is_ic = False

    @workflow.init
    def __init__(self, inp: DatabaseRestoreInput) -> None:
        self._begin(inp)
        self.book.commander = inp.commander  # no IC until one is assigned: never the requester
        self.cancel: CancelRestore | None = None
        self.timings: dict[str, float] = {}
        self.info: dict[str, Any] = {}
        self.rds_status: str | None = None

    # ---------------------------------------------------------------- run
    def _pinned(self) -> list[tuple[str, Any, Any]]:
        return [("source instance", self.inp.source, self.cfg.aws.rds_instance)]

    @workflow.run
    async def run(self, inp: DatabaseRestoreInput) -> IncidentReport:
        await self._configure()
        source = inp.source or self.cfg.aws.rds_instance
        snapshot = inp.snapshot or self.cfg.aws.rds_snapshot
        target = inp.target or f"{source}-restored"
        self.info.update(source=source, snapshot=snapshot, target=target)
        self.tl.log(inp.requested_by, "Database restore requested",
                    f"{source} from snapshot {snapshot} to {target}; IC {self.book.commander or 'unassigned'}", kind=TimelineKind.EVENT)
        self._set_phase(Phase.DIAGNOSTICS)
        try:
            await self._procedure(source, snapshot, target)
        except StepFailed as e:
            self.summary = str(e)
        self._set_phase(Phase.RESOLVED if self.status_text == "restored" else self.phase)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._report()

    async def _procedure(self, source: str, snapshot: str, target: str) -> None:
        inp, r = self.inp, self.cfg.restore
        # 1. preflight: read-only
        try:
            pre: RdsPreflightResult = await self._timed("preflight", self._call(
                RdsActivities.rds_preflight, RdsPreflightRequest(incident_id=inp.incident_id, source=source, snapshot=snapshot, target=target), "RDS preflight", DB_READ))
        except ActivityError as e:
            self.status_text = "preflight_failed"
            self.tl.log(CODEBLUE, "Preflight failed; nothing changed", reason(e), kind=TimelineKind.STEP)
            raise StepFailed(f"preflight failed: {reason(e)}") from None
        if pre.target_exists and pre.target_incident != inp.incident_id:
            self.status_text = "preflight_failed"
            msg = f"target {target} already exists and is not this incident's"
            self.tl.log(CODEBLUE, "Preflight failed; nothing changed", msg, kind=TimelineKind.STEP)
            raise StepFailed(f"preflight failed: {msg}")
        self.info.update(snapshot_id=pre.snapshot_id, engine=pre.source.engine, instance_class=pre.source.instance_class,
                         snapshot_created=pre.snapshot_created)
        self.tl.log(CODEBLUE, "Preflight passed",
                    f"source {source} ({pre.source.engine}, {pre.source.status}); snapshot {pre.snapshot_id} "
                    f"{pre.snapshot_status}" + (f" (resolved from '{LATEST}')" if snapshot == LATEST else "")
                    + (f"; {target} exists from an earlier attempt and will be adopted" if pre.target_exists else ""), kind=TimelineKind.STEP)

        # 2. gate 1
        restore = self.book.propose(Action(
            id="restore", kind=ActionKind.DB_RESTORE,
            reason=(f"restore snapshot {pre.snapshot_id} to new instance {target} ({pre.source.instance_class}, "
                    f"subnet group {pre.source.subnet_group}, parameter group {pre.source.parameter_group}, "
                    f"tags of {source} + codeblue:incident={inp.incident_id})"),
            params={"source": source, "snapshot": pre.snapshot_id, "target": target},
        ))
        self._set_phase(Phase.MITIGATION)
        if not await self._gate(restore):
            return

        # 3. restore (idempotent: adopts the target of an earlier attempt)
        ask = ask_for(restore, inp.incident_id, MutationKind.RESTORE, database_target(source))
        async with leased(self.tl, restore, ask, self.cfg.blast_radius.wait_seconds) as ok:
            if not ok:
                self.status_text = "withdrawn"
                raise StepFailed(f"restore not run: {restore.result}")
            try:
                res: RdsRestoreResult = await self._timed("restore", self._call(
                    RdsActivities.rds_restore, RdsRestoreRequest(incident_id=inp.incident_id, source=source, snapshot_id=pre.snapshot_id, target=target), f"restore {pre.snapshot_id} to {target}", DB_WRITE))
            except ActivityError as e:
                self._fail(restore, "restore_failed", reason(e))
        settle(restore, ActionState.EXECUTED,
               (f"{target} adopted from an earlier attempt" if res.adopted else f"{target} created") + f" ({res.instance.status})")
        restore.compensation = "none: the restored instance is kept, tagged, for forensics" if not r.delete_restored_after else None
        self.tl.log(CODEBLUE, "Executed restore", restore.result, kind=TimelineKind.EXECUTED)
        await self.steps.change_event("restore", f"CodeBlue restored {source} from {pre.snapshot_id} to {target} ({inp.incident_id})",
                                      {"source": source, "snapshot": pre.snapshot_id, "target": target})

        # 4. wait until available, past the limit page the EM and keep waiting until the IC cancels
        inst = await self._timed("wait", self._wait_available(target))
        if inst is None:
            return
        host, port = self._effective_endpoint(inst)
        self.info.update(endpoint=inst.endpoint, connect_to=f"{host}:{port}")
        self.tl.log(CODEBLUE, f"{target} available", f"endpoint {inst.endpoint}"
                    + (f" (reached as {host}:{port}: endpoint override)" if r.endpoint_override else ""), kind=TimelineKind.STEP)

        # 5. verify the restored database
        d, k = self.cfg.database, self.cfg.kubernetes
        ver: RestoredDbVerifyResult = await self._timed("verify", self._call(
            DbCutoverActivities.db_verify_restored,
            RestoredDbVerifyRequest(namespace=k.namespace, secret_name=d.secret_name, secret_key=d.secret_key,
                                    host=host, port=port, sanity_query=r.sanity_query,
                                    connect_timeout_seconds=d.connect_timeout_seconds), f"verify {target}", DB_READ))
        self.info["verification"] = ver.detail
        self.info["sanity"] = ver.sanity
        self.tl.log(CODEBLUE, "Restored database verified" if ver.ok else "Restored database verification failed", ver.detail,
                    kind=TimelineKind.VERIFICATION)
        if not ver.ok:
            self.status_text = "verification_failed"
            self.book.closed_reason = "the restored database failed verification; no cutover"
            await self.steps.page(Audience.ENGINEERING_MANAGER, "db-verify-failed",
                                  f"Restored database {target} failed verification: {ver.detail}", inp.severity.value, self.book.commander)
            raise StepFailed(f"verification failed: {ver.detail}")

        # 6. gate 2
        cut = self.book.propose(Action(
            id="cutover", kind=ActionKind.DB_CUTOVER,
            reason=(f"point {d.secret_name}/{d.secret_key} at {inst.endpoint}"
                    + (f" (as {host}:{port})" if r.endpoint_override else "")
                    + f" and restart {k.gateway_deployment}; verification: {ver.detail}"),
            params={"endpoint": inst.endpoint, "connect_to": f"{host}:{port}", "verification": ver.detail,
                    "sanity": ver.sanity},
        ))
        if not await self._gate(cut):
            return

        # 7/8. cutover as a saga
        await self._timed("cutover", self._cutover(cut, host, port, target))

    # ------------------------------------------------------------ steps
    async def _gate(self, act: Action) -> bool:
        self.tl.log(CODEBLUE, f"Waiting for the IC: {act.id}", f"IC {self.book.commander or 'unassigned'}: approve or reject {act.id}", kind=TimelineKind.EVENT)
        self._details()
        t0 = self.tl.t()
        m = self.cfg.mitigation

        async def remind(pending: list[str]) -> None:
            self.tl.log("sla", "Decision waiting; reminding the IC", ", ".join(pending), kind=TimelineKind.EVENT)
            await self.steps.page(Audience.COMMANDER, f"reminder-{act.id}", f"Decision needed on {act.id}",
                                  self.inp.severity.value, self.book.commander)

        async def escalate(pending: list[str]) -> None:
            self.tl.log("sla", "Decision still waiting; paging engineering manager", ", ".join(pending), kind=TimelineKind.EVENT)
            await self.steps.page(Audience.ENGINEERING_MANAGER, f"decision-{act.id}", f"IC decision pending on {act.id}",
                                  self.inp.severity.value, self.book.commander)

        def waiting() -> bool:
            return act.state == ActionState.PROPOSED and self.cancel is None

        await self.book.wait_with_reminders(waiting, m.remind_after_seconds, m.escalate_after_seconds, remind, escalate)
        await workflow.wait_condition(lambda: not waiting())
        self.timings[f"gate_{act.id}"] = round(self.tl.t() - t0, 3)
        if self.cancel is not None and act.state == ActionState.PROPOSED:
            act.state = ActionState.REJECTED
            act.rejection_reason = f"cancelled by {self.cancel.by}: {self.cancel.reason}"
            self.status_text = "cancelled"
            self.summary = act.rejection_reason
            return False
        if act.state == ActionState.REJECTED:
            self.status_text = "rejected"
            self.summary = f"{act.id} rejected by {act.decided_by}: {act.rejection_reason}"
            self.tl.log(CODEBLUE, "Stopped: the IC rejected " + act.id,
                        "nothing changed" if act.id == "restore" else "the restored instance is kept; the secret is unchanged",
                        kind=TimelineKind.DECISION)
            return False
        return True

    async def _wait_available(self, target: str) -> RdsInstanceInfo | None:
        r = self.cfg.restore
        poll = RetryPolicy(
            initial_interval=timedelta(seconds=r.poll_interval_seconds), backoff_coefficient=1.0,
            maximum_interval=timedelta(seconds=r.poll_interval_seconds), maximum_attempts=0,
            non_retryable_error_types=DB_NON_RETRYABLE,
        )
        req = RdsWaitRequest(target=target, poll_seconds=r.poll_interval_seconds, window_seconds=r.poll_window_seconds)
        wait = asyncio.ensure_future(workflow.execute_activity_method(
            RdsActivities.rds_wait_available,
            req,
            start_to_close_timeout=timedelta(seconds=req.budget_seconds()),
            # the activity heartbeats on a timer, not per poll: a dead worker shows within 15 s
            heartbeat_timeout=timedelta(seconds=15),
            retry_policy=poll,
            summary=f"wait for {target} available",
        ))
        limit = r.limit_minutes * 60
        try:
            await workflow.wait_condition(lambda: wait.done() or self.cancel is not None,
                                          timeout=timedelta(seconds=limit), timeout_summary=f"restore limit {mmss(limit)}")
        except TimeoutError:
            self.tl.log("sla", "Restore past its limit; paging engineering manager",
                        f"{target} not available after {mmss(limit)}; still waiting until the IC cancels", at=round(limit, 3), kind=TimelineKind.EVENT)
            self.info["limit_exceeded"] = True
            self._details()
            await self.steps.page(Audience.ENGINEERING_MANAGER, "db-restore-limit",
                                  f"Database restore of {target} past {mmss(limit)}", self.inp.severity.value, self.book.commander)
            await workflow.wait_condition(lambda: wait.done() or self.cancel is not None)
        if not wait.done():
            wait.cancel()
            try:
                await wait
            except (asyncio.CancelledError, ActivityError):
                pass
            assert self.cancel is not None
            self.status_text = "cancelled"
            self.summary = f"cancelled by {self.cancel.by} while waiting: {self.cancel.reason}"
            self.tl.log(self.cancel.by, "Restore wait cancelled", f"{self.cancel.reason}; {target} is kept, tagged, for forensics", kind=TimelineKind.EVENT)
            return None
        try:
            return wait.result()
        except ActivityError as e:
            self.status_text = "restore_failed"
            self.tl.log(CODEBLUE, "Restore failed", reason(e), kind=TimelineKind.FAILED)
            await self.steps.page(Audience.ENGINEERING_MANAGER, "db-restore-failed", f"Database restore failed: {reason(e)}",
                                  self.inp.severity.value, self.book.commander)
            raise StepFailed(f"restore failed: {reason(e)}") from None

    async def _cutover(self, act: Action, host: str, port: int, target: str) -> None:
        inp, d, k = self.inp, self.cfg.database, self.cfg.kubernetes
        saga = Saga(self.tl)
        self.tl.log(CODEBLUE, "Executing cutover", act.reason, kind=TimelineKind.EXECUTING)
        try:
            backup: SecretBackupRef = await self._call(
                DbCutoverActivities.db_secret_backup,
                SecretBackupRequest(incident_id=inp.incident_id, namespace=k.namespace, secret_name=d.secret_name, secret_key=d.secret_key), f"back up {d.secret_name}", DB_WRITE)
            self.tl.log(CODEBLUE, "Database secret backed up",
                        f"old value kept in secret {backup.backup_name} (from resourceVersion {backup.source_resource_version})", kind=TimelineKind.EVENT)

            ours: list[str | None] = []  # the version our patch left, once it is known

            async def undo() -> None:
                await self._undo_cutover(backup, target, ours[0] if ours else None)

            saga.register(act, undo, f"put the old {d.secret_key} back from {backup.backup_name}, restart, wait, verify")
            ch: SecretChange = await self._call(
                DbCutoverActivities.db_secret_point,
                SecretPointRequest(backup=backup, host=host, port=port,
                                   expected_resource_version=backup.source_resource_version), f"patch {d.secret_name}", DB_WRITE)
            ours.append(ch.resource_version)
            self.tl.log(CODEBLUE, "Database secret patched", f"{d.secret_key} now names {ch.where}" + ("" if ch.changed else " (already)"), kind=TimelineKind.EVENT)
            st = await self._restart("")
            chk = await self._db_check("post-cutover connection check")
            if not chk.ok:
                raise StepFailed(f"post-cutover connection check failed: {chk.detail}")
            settle(act, ActionState.EXECUTED, f"gateway on {ch.where}; {st.available}/{st.desired} available; {chk.detail}")
            self.tl.log(CODEBLUE, "Executed cutover", act.result, kind=TimelineKind.EXECUTED)
            await self.steps.change_event("cutover", f"CodeBlue pointed the gateway at the restored database {target} "
                                          f"({self.inp.incident_id})", {"target": target})
            self.status_text, self.verified = "restored", True
            self.summary = f"{self.info['source']} restored from {self.info.get('snapshot_id')} to {target}; gateway cut over and verified"
        except (StepFailed, ActivityError, asyncio.CancelledError) as e:
            why = str(e) if isinstance(e, StepFailed) else ("cancelled" if isinstance(e, asyncio.CancelledError) else reason(e))
            settle(act, ActionState.FAILED, why)
            self.tl.log(CODEBLUE, "Cutover failed; compensating", why, kind=TimelineKind.COMPENSATION)
            await saga.compensate()
            self.status_text, self.verified = "cutover_compensated", False
            await self.steps.page(Audience.ENGINEERING_MANAGER, "db-cutover-failed",
                                  f"Database cutover failed and was rolled back: {why}", inp.severity.value, self.book.commander)
            if isinstance(e, asyncio.CancelledError):
                raise
            raise StepFailed(f"cutover failed and was compensated: {why}") from None

    async def _undo_cutover(self, backup: SecretBackupRef, target: str, ours: str | None = None) -> None:
        ch: SecretChange = await self._call(DbCutoverActivities.db_secret_restore, SecretRestoreRequest(backup=backup, expected_resource_version=ours), f"compensate: restore {backup.secret_name}", DB_WRITE)
        self.tl.log(CODEBLUE, "Compensation: old database secret restored",
                    f"{backup.secret_key} names {ch.where} again" + ("" if ch.changed else " (was unchanged)"), kind=TimelineKind.COMPENSATION)
        await self._restart("compensate: ")
        chk = await self._db_check("compensate: connection check")
        self.tl.log(CODEBLUE, "Compensation: connection check " + ("passed" if chk.ok else "failed"), chk.detail,
                    kind=TimelineKind.COMPENSATION)
        if self.cfg.restore.delete_restored_after:
            gone = await self._call(RdsActivities.rds_delete_restored, RdsDeleteRequest(incident_id=self.inp.incident_id, target=target), f"compensate: delete {target}", DB_WRITE)
            self.tl.log(CODEBLUE, "Compensation: restored instance deleted" if gone else "Compensation: restored instance already gone", target,
                        kind=TimelineKind.COMPENSATION)
        else:
            self.tl.log(CODEBLUE, "Restored instance kept for forensics", f"{target} (tagged codeblue:incident={self.inp.incident_id})", kind=TimelineKind.EVENT)

    async def _restart(self, prefix: str) -> RolloutState:
        k, m = self.cfg.kubernetes, self.cfg.mitigation
        dep = k.gateway_deployment
        st = await restart_and_wait(self.steps, k.namespace, dep, m.rollout_timeout_seconds, prefix=prefix, retry=DB_WRITE)
        self.tl.log(CODEBLUE, f"Compensation: {dep} restarted" if prefix else f"{dep} restarted", f"{st.available}/{st.desired} available",
                    kind=TimelineKind.COMPENSATION if prefix else TimelineKind.STEP)
        return st

    async def _db_check(self, summary: str) -> DbCheckResult:
        k = self.cfg.kubernetes
        return await db_check(self.steps, self.cfg, k.namespace, k.gateway_deployment, summary, retry=DB_WRITE)

    # ------------------------------------------------------------ handlers
    @workflow.query
    def status(self) -> IncidentReport:
        return self._report()

    def _decided(self) -> None:
        self._details()

    @workflow.update
    def cancel_restore(self, c: CancelRestore) -> str:
        self.cancel = c
        self.tl.log(c.by, "Cancel requested", c.reason, kind=TimelineKind.EVENT)
        return "cancelling"

    @cancel_restore.validator
    def _validate_cancel(self, c: CancelRestore) -> None:
        problem = self.book.authority_problem(c.by)
        if problem:
            raise ApplicationError(problem, type="CancelRejected")
        if self.status_text != "open" or "cutover" in self.timings_started():
            raise ApplicationError("nothing to cancel: the restore is past the point of cancelling", type="CancelRejected")

    def timings_started(self) -> set[str]:
        return {k.removesuffix("_started") for k in self.timings if k.endswith("_started")}

    # ------------------------------------------------------------ helpers
    async def _call(self, activity: Activity[A, R], arg: A, summary: str, retry: RetryPolicy, timeout: int = 120) -> R:
        return await self.steps.write(activity, arg, summary, timeout, retry=retry)

    async def _timed(self, step: str, aw: Awaitable[Any]) -> Any:
        t0 = self.tl.t()
        self.timings[f"{step}_started"] = t0
        try:
            return await aw
        finally:
            took = round(self.tl.t() - t0, 3)
            self.timings[step] = took
            self.tl.log(CODEBLUE, f"Step {step} took {mmss(took)}", f"{took:g} s", kind=TimelineKind.STEP)

    def _fail(self, act: Action, status: str, why: str) -> None:
        settle(act, ActionState.FAILED, why)
        self.status_text = status
        self.tl.log(CODEBLUE, f"Failed {act.id}", why, kind=TimelineKind.FAILED)
        raise StepFailed(f"{act.id} failed: {why}")

    def _effective_endpoint(self, inst: RdsInstanceInfo) -> tuple[str, int]:
        o = self.cfg.restore.endpoint_override
        if o:
            host, _, port = o.rpartition(":")
            return (host or o), int(port or 5432) if port.isdigit() else 5432
        if not inst.endpoint_host:
            raise StepFailed(f"{inst.identifier} is available but has no endpoint")
        return inst.endpoint_host, int(inst.endpoint_port or 5432)

    def _set_phase(self, phase: Phase) -> None:
        self.phase = phase
        workflow.upsert_search_attributes([
            sa.SEVERITY.value_set(self.inp.severity.value),
            sa.PHASE.value_set(phase.value),
            sa.SERVICE.value_set("database"),
            sa.COMMANDER.value_set(self.book.commander or "unassigned"),
        ])
        self._details()

    def _details(self) -> None:
        lines = [f"**Database restore · {self.status_text}** — {self.info.get('source')} → {self.info.get('target')}",
                 f"IC: {self.book.commander or '_unassigned_'}"]
        lines += [f"- `{a.id}` {a.kind.value}: {a.state.value}" for a in self.book.actions.values()]
        workflow.set_current_details("\n".join(lines))

    def _subject(self) -> tuple[str, str]:
        snapshot = self.info.get("snapshot_id") or self.info.get("snapshot", "?")
        return f"Database restore of {self.info.get('source', '?')} from {snapshot}", "database"

    def _assessment(self) -> dict[str, Any]:
        steps = {k: v for k, v in self.timings.items() if not k.endswith("_started")}
        return {"database_restore": {**self.info, "step_seconds": steps}}
