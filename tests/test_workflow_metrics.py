"""CodeBlue's metrics interceptor changes nothing in a workflow's history: committed
histories replay with it installed; and it reads the report the way a dashboard needs."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from domain.incident import Action, ActionKind, ActionState, IncidentReport, Phase, TimelineEntry
from domain.severity import Severity
from worker.main import WORKFLOWS
from worker.temporal import data_converter
from workflows.metrics import MetricsInterceptor, proposal_times

HISTORIES = Path(__file__).parent / "histories"


@pytest.mark.parametrize("name", ["rollback_resolved", "compensated", "diagnostics_sla_missed"])
async def test_committed_histories_replay_with_the_metrics_interceptor(name):
    history = WorkflowHistory.from_json(f"wf-{name}", (HISTORIES / f"{name}.json").read_text())
    replayer = Replayer(workflows=WORKFLOWS, interceptors=[MetricsInterceptor()], data_converter=data_converter())
    await replayer.replay_workflow(history)


def test_approval_wait_is_measured_from_the_proposal():
    rep = IncidentReport(
        incident_id="INC-1", title="t", severity=Severity.P0, service="api-gateway", status="resolved",
        phase=Phase.OPEN, started_at="2026-01-01T00:00:00Z",
        actions=[Action(id="rollback", kind=ActionKind.HELM_ROLLBACK, reason="r", state=ActionState.EXECUTED,
                        decided_at_seconds=95.0)],
        timeline=[TimelineEntry(at_seconds=30.0, actor="codeblue", event="Proposed rollback (helm_rollback)"),
                  TimelineEntry(at_seconds=40.0, actor="codeblue", event="Proposed scale (scale_deployment)")],
    )
    times = proposal_times(rep)
    assert times == {"rollback": 30.0, "scale": 40.0}
    assert rep.actions[0].decided_at_seconds - times["rollback"] == 65.0
