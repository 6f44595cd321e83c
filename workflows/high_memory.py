"""The runbook's "High Memory Usage": measure over minutes, then act with the IC.

Samples pod memory (metrics.k8s.io, the runbook's `kubectl top pods`) against limits several
times, minutes apart, on durable timers; reads OOMKilled restarts; names leak suspects (steady
growth). Proposes scaling to `memory.scale_replicas` (bounded by `memory.max_replicas`) and a
rollout restart when pods leak. The scale-up is undone (previous replica count) when the IC
resolves the playbook, unless they keep it. Workflow ID: `<incident>-memory`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

# Models and CodeBlue's workflow helpers hold no per-run state: imported once, shared by every run
with workflow.unsafe.imports_passed_through():
    from activities.kubernetes import KubernetesActivities
    from domain.action_params import RolloutRestartParams, ScaleUpParams
    from domain.blast_radius import MutationKind, deployment_target
    from domain.cluster import (
        MetricsReport,
        NamespaceQuery,
        ScaleRequest,
    )
    from domain.high_memory import MemoryInput, MemoryResolution, leak_suspects
    from domain.incident import Action, ActionKind, ActionState, IncidentReport, Phase, TimelineKind
    from workflows.approvals import settle
    from workflows.blast_radius import ask_for, leased
    from workflows.playbook import Playbook
    from workflows.runbook_steps import restart_and_wait
    from workflows.saga import Saga
    from workflows.timeline import CODEBLUE, reason


@workflow.defn
class HighMemoryPlaybook(Playbook):
    @workflow.init
    def __init__(self, inp: MemoryInput) -> None:
        self._begin(inp)
        self.saga = Saga(self.tl)
        self.resolution: MemoryResolution | None = None

    # ---------------------------------------------------------------- handlers
    @workflow.query
    def status(self) -> IncidentReport:
        return self._report()

    @workflow.update
    def resolve_memory(self, r: MemoryResolution) -> str:
        self.resolution = r
        self.tl.log(r.by, "Resolve requested", "keep the scale-up" if r.keep_scale else "scale back", kind=TimelineKind.EVENT)
        return "resolving"

    @resolve_memory.validator
    def _validate_resolve(self, r: MemoryResolution) -> None:
        problem = self.book.authority_problem(r.by)
        if problem is None and self.resolution is not None:
            problem = "already resolving"
        if problem:
            raise ApplicationError(problem, type="ResolutionRejected")

    # ---------------------------------------------------------------- run
    def _pinned(self) -> list[tuple[str, Any, Any]]:
        return [("deployment", self.inp.deployment, self.cfg.kubernetes.gateway_deployment)]

    @workflow.run
    async def run(self, inp: MemoryInput) -> IncidentReport:
        await self._configure()
        k, m = self.cfg.kubernetes, self.cfg.memory
        ns, dep = k.namespace, inp.deployment or k.gateway_deployment
        self.tl.log(inp.requested_by, f"High memory playbook: {dep} in {ns}",
                    f"{m.samples} samples {m.sample_interval_seconds}s apart", kind=TimelineKind.EVENT)
        self.phase = Phase.DIAGNOSTICS
        samples = await self._sample(ns, dep)
        pods = await self.steps.read(KubernetesActivities.pod_status, NamespaceQuery(namespace=ns), "kubectl get pods")
        oom = [p.name for p in (pods.pods if pods else []) if p.name.startswith(f"{dep}-")
               and p.last_termination_reason == "OOMKilled"]
        suspects = leak_suspects(samples, m.leak_growth_ratio)
        high = sorted({pod for pod, ratio in self.facts.get("last_ratios", {}).items() if ratio >= m.high_ratio})
        self.facts.update(oom_killed=oom, leak_suspects=suspects, high=high)
        self.tl.log(CODEBLUE, "Memory assessment",
                    f"above {m.high_ratio:.0%} of limit: {high or 'none'}; OOMKilled: {oom or 'none'}; "
                    f"leak suspects: {', '.join(f'{p} +{g:.0%}' for p, g in suspects.items()) or 'none'}", kind=TimelineKind.STEP)

        self.phase = Phase.MITIGATION
        target = min(m.scale_replicas, m.max_replicas)
        if high or oom or suspects:
            self.book.propose(Action(
                id="scale", kind=ActionKind.SCALE_UP,
                reason=f"spread the load: {dep} to {target} replicas (max {m.max_replicas}); scaled back on resolution",
                params={"namespace": ns, "deployment": dep, "replicas": target},
            ))
        if suspects:
            self.book.propose(Action(
                id="restart", kind=ActionKind.ROLLOUT_RESTART,
                reason=f"restart leaking pods of {dep}: {', '.join(suspects)}",
                params={"namespace": ns, "deployment": dep},
            ))
        if not self.book.actions:
            self.tl.log(CODEBLUE, "No action proposed", "memory is within limits and steady", kind=TimelineKind.EVENT)
        else:
            await workflow.wait_condition(lambda: self.book.all_decided() or self.resolution is not None)
            for act in self.book.approved():
                await self._execute(act)
        self.tl.log(CODEBLUE, "Waiting for the IC to resolve", "update resolve_memory (keep_scale to keep the replicas)", kind=TimelineKind.EVENT)
        await workflow.wait_condition(lambda: self.resolution is not None)
        assert self.resolution is not None
        self.phase = Phase.RESOLVING
        if self.resolution.keep_scale:
            self.tl.log(self.resolution.by, "Scale-up kept", "no scale back", kind=TimelineKind.DECISION)
        else:
            await self.saga.compensate()
        self.book.closed_reason = "the playbook has ended"
        self.status_text = "resolved"
        self.phase = Phase.RESOLVED
        self.summary = f"resolved by {self.resolution.by}" + (" (scale kept)" if self.resolution.keep_scale else "")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._report()

    async def _sample(self, ns: str, dep: str) -> list[dict[str, int]]:
        m = self.cfg.memory
        samples: list[dict[str, int]] = []
        for i in range(m.samples):
            if i:
                await workflow.sleep(timedelta(seconds=m.sample_interval_seconds), summary=f"memory sample {i + 1}")
            rep: MetricsReport | None = await self.steps.read(
                KubernetesActivities.pod_metrics, NamespaceQuery(namespace=ns), f"kubectl top pods ({i + 1}/{m.samples})")
            mine = [p for p in (rep.pods if rep else []) if p.pod.startswith(f"{dep}-")]
            samples.append({p.pod: p.memory_bytes for p in mine})
            ratios = {p.pod: round(p.memory_ratio, 3) for p in mine if p.memory_ratio is not None}
            self.facts["last_ratios"] = ratios
            self.tl.log(CODEBLUE, f"Memory sample {i + 1}",
                        ", ".join(f"{p.pod} {p.memory_bytes // 2**20}Mi"
                                  + (f" ({ratios[p.pod]:.0%})" if p.pod in ratios else "") for p in mine)
                        or ("metrics unavailable" if rep is None or not rep.served else "no pods"), kind=TimelineKind.STEP)
        self.facts["samples"] = samples
        return samples

    async def _execute(self, act: Action) -> None:
        self.tl.log(CODEBLUE, f"Executing {act.id} ({act.kind.value})", act.reason, kind=TimelineKind.EXECUTING)
        if act.kind == ActionKind.SCALE_UP:
            p = act.params_as(ScaleUpParams)
            ask = ask_for(act, self.inp.incident_id, MutationKind.SCALE, deployment_target(p.namespace, p.deployment), p.replicas)
        else:
            r = act.params_as(RolloutRestartParams)
            ask = ask_for(act, self.inp.incident_id, MutationKind.RESTART,
                          deployment_target(r.namespace or self.cfg.kubernetes.namespace, r.deployment))
        async with leased(self.tl, act, ask, self.cfg.blast_radius.wait_seconds) as ok:
            if ok:
                await self._run_step(act)

    async def _run_step(self, act: Action) -> None:
        try:
            if act.kind == ActionKind.SCALE_UP:
                p = act.params_as(ScaleUpParams)
                cur = await self.steps.read(KubernetesActivities.deployment_status, NamespaceQuery(namespace=p.namespace), "read replicas")
                prev = next((d.desired for d in (cur.deployments if cur else []) if d.name == p.deployment), None)
                if prev is None:
                    raise ApplicationError(f"cannot read the replica count of {p.deployment}")

                async def undo() -> None:
                    await self.steps.write(KubernetesActivities.scale_deployment,
                                           ScaleRequest(namespace=p.namespace, deployment=p.deployment, replicas=prev), f"compensate: scale {p.deployment} to {prev}")

                self.saga.register(act, undo, f"scale {p.deployment} back to {prev} replicas when resolved")
                res = await self.steps.write(KubernetesActivities.scale_deployment,
                                             ScaleRequest(namespace=p.namespace, deployment=p.deployment,
                                                          replicas=p.replicas), f"scale {p.deployment} to {p.replicas}")
                act.result = f"{res.deployment} scaled {res.previous_replicas} -> {res.replicas}"
            else:
                r = act.params_as(RolloutRestartParams)
                ns = r.namespace or self.cfg.kubernetes.namespace
                act.compensation = "none needed (a restart changes no configuration)"
                st = await restart_and_wait(self.steps, ns, r.deployment, self.cfg.mitigation.rollout_timeout_seconds)
                act.result = f"restarted; {st.available}/{st.desired} available"
        except (ActivityError, ApplicationError) as e:
            settle(act, ActionState.FAILED, reason(e))
            self.tl.log(CODEBLUE, f"Failed {act.id}", act.result, kind=TimelineKind.FAILED)
            return
        settle(act, ActionState.EXECUTED)
        self.tl.log(CODEBLUE, f"Executed {act.id}", act.result, kind=TimelineKind.EXECUTED)

    def _subject(self) -> tuple[str, str]:
        dep = self.inp.deployment or self.cfg.kubernetes.gateway_deployment
        return f"High memory: {dep}", dep

    def _assessment(self) -> dict[str, Any]:
        return {k: v for k, v in self.facts.items() if k != "last_ratios"}  # working state, not a finding
