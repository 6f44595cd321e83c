"""How a report looks in a terminal."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from domain.incident import IncidentReport, TimelineEntry


def print_report(rep: IncidentReport, console: Console) -> None:
    console.print(
        f"[bold]{rep.incident_id}[/] {rep.severity.value} [bold]{rep.status}[/] phase={rep.phase.value} "
        f"IC={rep.commander or 'unassigned'} — {rep.title}",
        highlight=False,
    )
    if rep.sla:
        t = Table("SLA", "due", "met", "done at", title="SLA clocks")
        for c in rep.sla:
            met = "running" if c.met is None else ("yes" if c.met else "[red]MISSED[/]")
            t.add_row(c.name, mmss(c.due_seconds), met, mmss(c.done_seconds) if c.done_seconds is not None else "")
        console.print(t)
    if rep.actions:
        t = Table("action", "kind", "state", "by", "reason / result", title="Proposals")
        for a in rep.actions:
            t.add_row(a.id, a.kind.value, a.state.value, a.decided_by or "", a.result or a.rejection_reason or a.reason)
        console.print(t)
    t = Table("t", "actor", "event", "result", title="Timeline")
    for e in rep.timeline:
        t.add_row(mmss(e.at_seconds), e.actor, e.event, e.result or "")
    console.print(t)


def mmss(s: float) -> str:
    return f"{int(s) // 60}:{int(s) % 60:02d}"




def timeline_line(e: TimelineEntry) -> str:
    tail = f" — {e.result}" if e.result else ""
    return f"[{mmss(e.at_seconds)}] {e.actor}: {e.event}{tail}"
