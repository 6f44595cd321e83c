"""Metric analysis: the SLIs read a few times on durable timers, the way Argo Rollouts'
analysis decides a rollout (consecutive successes pass, `failure_limit` breaches fail)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow

from workflows.steps import Steps
from workflows.timeline import CODEBLUE, Timeline

with workflow.unsafe.imports_passed_through():
    from activities.prometheus import PrometheusActivities
    from domain.incident import TimelineKind
    from domain.prometheus import PrometheusConfig, SliQuery, SliReport, breaches, unknowns, verdict


@dataclass
class Analysis:
    ok: bool | None  # None: skipped or inconclusive (never a failure on its own)
    detail: str
    readings: list[SliReport] = field(default_factory=list)


async def read_slis(steps: Steps, incident_id: str, summary: str, at: str | None = None,
                    since: str | None = None) -> SliReport | None:
    """One reading; a failure is recorded by `steps.read`, never fatal."""
    rep: SliReport | None = await steps.read(PrometheusActivities.sli_values, SliQuery(incident_id=incident_id, at=at, since=since), summary)
    return rep


async def analyse(steps: Steps, tl: Timeline, incident_id: str, cfg: PrometheusConfig, what: str) -> Analysis:
    if not cfg.url:
        return Analysis(None, "SLIs skipped: prometheus.url is not set")
    a = cfg.analysis
    readings: list[SliReport] = []
    in_a_row = failed = 0
    last = ""
    for i in range(a.count):
        if i:
            await workflow.sleep(timedelta(seconds=a.interval_seconds), summary=f"{what}: SLI reading {i + 1}/{a.count}")
        rep = await read_slis(steps, incident_id, f"{what}: SLIs {i + 1}/{a.count}")
        if rep is None:
            in_a_row = 0
            continue
        readings.append(rep)
        v = verdict(rep)
        if v is True:
            in_a_row += 1
            last = "all SLIs within their limits"
        elif v is False:
            failed += 1
            in_a_row = 0
            last = "; ".join(breaches(rep))
        else:
            in_a_row = 0
            last = "; ".join(unknowns(rep)) or rep.detail
        tl.log(CODEBLUE, f"{what}: SLI reading {i + 1}/{a.count}", last, kind=TimelineKind.VERIFICATION)
        if in_a_row >= a.successes:
            return Analysis(True, f"{in_a_row} passing readings in a row", readings)
        if failed > a.failure_limit:
            return Analysis(False, f"{failed} readings breached (more than {a.failure_limit} allowed): {last}", readings)
    return Analysis(None, f"inconclusive after {a.count} readings: {last}", readings)
