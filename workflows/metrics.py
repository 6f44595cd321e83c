"""CodeBlue's own metrics, through the SDK's replay-safe workflow metric meter, so they are
served by the same Prometheus endpoint as the SDK's (CODEBLUE_METRICS_BIND) and are never
counted twice when a worker replays a history.

Counted the moment they happen, so a dashboard or an alert sees an SLA miss at 5:00, not when
the incident closes: workflows call `sla_recorded`, and `ApprovalBook` / `settle` call
`approval_decided` and `mitigation_finished`. `MetricsInterceptor` (installed on the client
by `worker.connection` when metrics are on) counts each incident as its workflow starts.

Metric names (Prometheus adds no suffix; `counters_total_suffix` is off):
  codeblue_incidents_opened{severity}
  codeblue_sla{clock, severity, outcome=met|missed}
  codeblue_approval_wait_seconds{kind, decision=approved|rejected}   (histogram)
  codeblue_mitigations{kind, outcome=executed|failed|compensated}    (a compensated step
      was counted as executed first: these are events, not final states)
"""

from __future__ import annotations

from typing import Any

import temporalio.client
from temporalio import workflow
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

with workflow.unsafe.imports_passed_through():
    from domain.incident import Action, ActionState, SlaClock

INCIDENTS_OPENED = "codeblue_incidents_opened"
SLA = "codeblue_sla"
APPROVAL_WAIT = "codeblue_approval_wait_seconds"
MITIGATIONS = "codeblue_mitigations"

_DONE = {ActionState.EXECUTED: "executed", ActionState.FAILED: "failed", ActionState.COMPENSATED: "compensated"}


def _value(x: Any) -> str:
    return str(getattr(x, "value", x))


def incident_opened(severity: Any) -> None:
    workflow.metric_meter().create_counter(INCIDENTS_OPENED, "Incidents opened, by severity").add(
        1, {"severity": _value(severity)}
    )


def sla_recorded(clock: SlaClock, severity: Any) -> None:
    """Count a finished SLA clock (a clock still running, `met` None, is not counted)."""
    if clock.met is None:
        return
    workflow.metric_meter().create_counter(SLA, "SLA clocks met or missed").add(
        1, {"clock": clock.name, "severity": _value(severity), "outcome": "met" if clock.met else "missed"}
    )


def approval_decided(action: Action, waited_seconds: float) -> None:
    """Time from proposal to the IC's decision."""
    if action.state == ActionState.PROPOSED:
        return
    decision = "rejected" if action.state == ActionState.REJECTED else "approved"
    workflow.metric_meter().create_histogram_float(
        APPROVAL_WAIT, "Seconds from proposal to decision", "s"
    ).record(max(0.0, float(waited_seconds)), {"kind": _value(action.kind), "decision": decision})


def mitigation_finished(action: Action) -> None:
    """Count an approved action that ran: executed, failed, or undone by the saga."""
    outcome = _DONE.get(action.state)
    if outcome is None:
        return
    workflow.metric_meter().create_counter(MITIGATIONS, "Mitigation outcomes").add(
        1, {"kind": _value(action.kind), "outcome": outcome}
    )


class _Inbound(WorkflowInboundInterceptor):
    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        severity = next((getattr(a, "severity", None) for a in input.args if hasattr(a, "severity")), None)
        if severity is not None and workflow.info().continued_run_id is None:
            incident_opened(severity)
        return await self.next.execute_workflow(input)


class MetricsInterceptor(temporalio.client.Interceptor, Interceptor):
    """On a client, it applies to every worker built from that client."""

    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
        return _Inbound
