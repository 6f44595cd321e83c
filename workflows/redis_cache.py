"""The runbook's "Redis Cache Issues": look before flushing, and flush only what the IC chose.

ElastiCache describe, Redis PING/INFO (memory, evictions, clients, hit ratio, keyspace); then
proposals: a pattern-scoped flush (SCAN + UNLINK) when a pattern is given, and FLUSHALL ASYNC,
which runs only after the IC approves it AND confirms the cluster's name (update
`confirm_flush`). Nothing talks to a Redis at any address but the cluster's. A flush cannot be
undone (the cache refills from the source of truth), so there is no compensation.
Workflow ID: `<incident>-cache`.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

# Models and CodeBlue's workflow helpers hold no per-run state: imported once, shared by every run
with workflow.unsafe.imports_passed_through():
    from activities.redis_cache import CacheActivities
    from domain.action_params import CacheFlushParams
    from domain.blast_radius import MutationKind, cache_target
    from domain.incident import Action, ActionKind, ActionState, IncidentReport, Phase, TimelineKind
    from domain.notify import Audience
    from domain.redis_cache import (
        CacheCluster,
        CacheClusterQuery,
        CacheInput,
        FlushConfirmation,
        FlushRequest,
        FlushResult,
        RedisStats,
        RedisTarget,
    )
    from workflows.approvals import settle
    from workflows.blast_radius import ask_for, leased
    from workflows.playbook import Playbook
    from workflows.steps import READ_RETRY, A, Activity, R
    from workflows.timeline import CODEBLUE, reason

NO_UNDO = "none possible: a flush cannot be undone (the cache refills from the source of truth)"


@workflow.defn
class RedisCachePlaybook(Playbook):
    @workflow.init
    def __init__(self, inp: CacheInput) -> None:
        self._begin(inp)
        self.cluster_id = ""
        self.confirmed_by: str | None = None
        self.confirmation: str | None = None

    # ---------------------------------------------------------------- handlers
    @workflow.query
    def status(self) -> IncidentReport:
        return self._report()

    @workflow.update
    def confirm_flush(self, c: FlushConfirmation) -> str:
        self.confirmed_by, self.confirmation = c.by, c.cluster_name
        self.tl.log(c.by, "Confirmed FLUSHALL", f"cluster name {c.cluster_name}", kind=TimelineKind.DECISION)
        return f"FLUSHALL of {c.cluster_name} confirmed"

    @confirm_flush.validator
    def _validate_confirm(self, c: FlushConfirmation) -> None:
        problem = self.book.authority_problem(c.by)
        if problem is None and "flushall" not in self.book.actions:
            problem = "no FLUSHALL has been proposed"
        if problem is None and c.cluster_name != self.cluster_id:
            problem = f"the cluster name does not match: type {self.cluster_id!r} exactly"
        if problem is None and self.confirmation is not None:
            problem = "FLUSHALL was already confirmed"
        if problem:
            raise ApplicationError(problem, type="ConfirmationRejected")

    # ---------------------------------------------------------------- run
    @workflow.run
    async def run(self, inp: CacheInput) -> IncidentReport:
        await self._configure()
        self.cluster_id = self.cfg.aws.elasticache_cluster
        self.tl.log(inp.requested_by, f"Redis cache playbook: {self.cluster_id}", inp.pattern and f"pattern {inp.pattern}", kind=TimelineKind.EVENT)
        try:
            await self._play()
        except ApplicationError as e:
            self.status_text = "failed"
            self.summary = e.message
            self.tl.log(CODEBLUE, "Cache playbook stopped", e.message, kind=TimelineKind.EVENT)
            self.book.closed_reason = "the playbook has ended"
            raise
        self.book.closed_reason = "the playbook has ended"
        self.phase = Phase.RESOLVED
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._report()

    async def _play(self) -> None:
        self.phase = Phase.DIAGNOSTICS
        cluster: CacheCluster = await self._fatal(
            CacheActivities.describe_cache_cluster, CacheClusterQuery(cluster_id=self.cluster_id),
            "aws elasticache describe-cache-clusters",
        )
        nodes = ", ".join(f"{n.node_id} {n.status}" for n in cluster.nodes) or "no node details"
        self.tl.log(CODEBLUE, "ElastiCache cluster", f"{cluster.status}, {cluster.engine} {cluster.engine_version or ''}, "
                    f"nodes: {nodes}, endpoint {cluster.endpoint or 'not reported'}", kind=TimelineKind.STEP)
        address = self.inp.redis_address or self.cfg.cache.endpoint_override or cluster.endpoint
        if not address:
            raise ApplicationError(f"no Redis address for {self.cluster_id}: the cluster reports no endpoint",
                                   type="EndpointMismatch", non_retryable=True)
        target = RedisTarget(cluster_id=self.cluster_id, cluster_endpoint=cluster.endpoint, address=address)
        if self.cfg.cache.endpoint_override:
            self.tl.log(CODEBLUE, "Redis address", f"{address} (cache.endpoint_override of the worker's config)", kind=TimelineKind.STEP)
        before: RedisStats = await self._fatal(CacheActivities.redis_stats, target, "redis-cli PING + INFO")
        self.facts["before"] = before.model_dump() | {"hit_ratio": before.hit_ratio}
        self.tl.log(CODEBLUE, "Redis stats", before.summary(), kind=TimelineKind.STEP)

        self.phase = Phase.MITIGATION
        if self.inp.pattern:
            self.book.propose(Action(
                id="flush-pattern", kind=ActionKind.CACHE_FLUSH,
                reason=f"remove keys matching {self.inp.pattern} (SCAN + UNLINK), other keys stay; {before.keys} keys now",
                params={"cluster": self.cluster_id, "pattern": self.inp.pattern},
            ))
        self.book.propose(Action(
            id="flushall", kind=ActionKind.CACHE_FLUSH,
            reason=(f"FLUSHALL ASYNC on {self.cluster_id} ({sum(before.keyspace.values())} keys, evictions "
                    f"{before.evicted_keys}); also needs `confirm_flush` with the cluster name"),
            params={"cluster": self.cluster_id, "async": True},
        ))
        self.tl.log(CODEBLUE, "Waiting for the IC's decisions", f"IC {self.book.commander}: " + ", ".join(self.book.actions), kind=TimelineKind.EVENT)
        await self._await_decisions()

        executed = False
        for act in self.book.approved():
            act.compensation = NO_UNDO
            if act.id == "flushall" and not await self._await_confirmation():
                settle(act, ActionState.FAILED, "not run: the cluster name was never confirmed")
                self.tl.log(CODEBLUE, "FLUSHALL not run", act.result, kind=TimelineKind.FAILED)
                continue
            req = FlushRequest(
                target=target,
                pattern=act.params_as(CacheFlushParams).pattern,
                confirmation=self.confirmation if act.id == "flushall" else None,
                use_async=True,
            )
            self.tl.log(CODEBLUE, f"Executing {act.id} ({act.kind.value})", act.reason, kind=TimelineKind.EXECUTING)
            kind = MutationKind.FLUSHALL if req.pattern is None else MutationKind.DELETE_KEYS
            ask = ask_for(act, self.inp.incident_id, kind, cache_target(target.cluster_id))
            async with leased(self.tl, act, ask, self.cfg.blast_radius.wait_seconds) as ok:
                if ok:
                    executed = await self._flush(act, req) or executed

        self.phase = Phase.RESOLVING
        await self._after(target, executed)

    async def _flush(self, act: Action, req: FlushRequest) -> bool:
        try:
            res: FlushResult = await self.steps.write(CacheActivities.redis_flush, req, f"redis {act.id}", 600, heartbeat=True)
        except ActivityError as e:
            settle(act, ActionState.FAILED, reason(e))
            self.tl.log(CODEBLUE, f"Failed {act.id}", act.result, kind=TimelineKind.FAILED)
            return False
        settle(act, ActionState.EXECUTED, f"{res.detail} (keys before {res.keys_before}, after {res.keys_after})")
        self.facts[act.id] = res.model_dump()
        self.tl.log(CODEBLUE, f"Executed {act.id}", act.result, kind=TimelineKind.EXECUTED)
        return True

    async def _after(self, target: RedisTarget, executed: bool) -> None:
        after = await self.steps.read(CacheActivities.redis_stats, target, "redis-cli PING + INFO (after)")
        if after is not None:
            self.facts["after"] = after.model_dump() | {"hit_ratio": after.hit_ratio}
            self.tl.log(CODEBLUE, "Redis stats after", after.summary(), kind=TimelineKind.STEP)
        self.verified = bool(after and after.ping)
        failed = [a.id for a in self.book.actions.values() if a.state == ActionState.FAILED]
        self.status_text = "failed" if failed else ("resolved" if executed else "no_action")
        self.summary = (f"executed: {', '.join(a.id for a in self.book.actions.values() if a.state == ActionState.EXECUTED) or 'nothing'}"
                        + (f"; failed: {', '.join(failed)}" if failed else ""))

    async def _await_decisions(self) -> None:
        async def remind(pending: list[str]) -> None:
            self.tl.log("sla", "Decision waiting; reminding the IC", ", ".join(pending), kind=TimelineKind.EVENT)
            await self.steps.page(Audience.COMMANDER, "cache-reminder", f"Decision needed on {', '.join(pending)}",
                                  self.inp.severity.value, self.book.commander)

        async def escalate(pending: list[str]) -> None:
            self.tl.log("sla", "Decision still waiting; paging engineering manager", ", ".join(pending), kind=TimelineKind.EVENT)
            await self.steps.page(Audience.ENGINEERING_MANAGER, "cache-waiting", f"IC decision pending on {', '.join(pending)}",
                                  self.inp.severity.value, self.book.commander)

        m = self.cfg.mitigation
        await self.book.wait_with_reminders(lambda: not self.book.all_decided(), m.remind_after_seconds,
                                            m.escalate_after_seconds, remind, escalate)
        await workflow.wait_condition(self.book.all_decided)

    async def _await_confirmation(self) -> bool:
        if self.confirmation is None:
            self.tl.log(CODEBLUE, "Waiting for FLUSHALL confirmation",
                        f"IC: confirm_flush with the cluster name {self.cluster_id!r}", kind=TimelineKind.EVENT)
        try:
            await workflow.wait_condition(
                lambda: self.confirmation is not None,
                timeout=timedelta(seconds=self.cfg.mitigation.escalate_after_seconds),
                timeout_summary="FLUSHALL confirmation",
            )
        except TimeoutError:
            return False
        return self.confirmation == self.cluster_id

    async def _fatal(self, activity: Activity[A, R], arg: A, summary: str) -> R:
        try:
            return await workflow.execute_activity_method(
                activity, arg, start_to_close_timeout=timedelta(seconds=60),
                schedule_to_close_timeout=timedelta(minutes=5), retry_policy=READ_RETRY, summary=summary,
            )
        except ActivityError as e:
            cause = e.cause
            kind = cause.type if isinstance(cause, ApplicationError) else None
            raise ApplicationError(f"{summary}: {reason(e)}", type=kind or "ActivityFailed", non_retryable=True) from None

    def _subject(self) -> tuple[str, str]:
        cluster = self.cluster_id or self.cfg.aws.elasticache_cluster
        return f"Redis cache: {cluster}", cluster
