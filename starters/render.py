"""How a report looks in a terminal."""

from __future__ import annotations

from datetime import datetime

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

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
        best = next((a for a in rep.actions if a.recommended and a.state.value == "proposed"), None)
        if best is not None:
            console.print(f"[bold green]Recommended:[/] {best.id} — {best.recommendation} "
                          f"(codeblue incident approve {rep.incident_id} --recommended)", highlight=False, soft_wrap=True)
        t = Table("#", "action", "kind", "state", "by", "reason / result", title="Proposals")
        for a in ordered_actions(rep):
            mark = f"{a.rank}{' *' if a.recommended else ''}" if a.rank else ""
            t.add_row(mark, a.id, a.kind.value, a.state.value, a.decided_by or "", a.result or a.rejection_reason or a.reason)
        console.print(t)
    t = Table("t", "actor", "event", "result", title="Timeline")
    for e in rep.timeline:
        t.add_row(mmss(e.at_seconds), e.actor, e.event, e.result or "")
    console.print(t)


def ordered_actions(rep: IncidentReport) -> list:
    """The recommendation first, then by rank; unranked (older) proposals in proposal order."""
    return sorted(rep.actions, key=lambda a: (not a.recommended, a.rank or 10_000))


def mmss(s: float) -> str:
    return f"{int(s) // 60}:{int(s) % 60:02d}"




def timeline_line(e: TimelineEntry) -> str:
    tail = f" — {e.result}" if e.result else ""
    return f"[{mmss(e.at_seconds)}] {e.actor}: {e.event}{tail}"


def watch_view(rep: IncidentReport, now: datetime, lines: int = 8) -> Group:
    """`codeblue incident watch`: phase, SLA clocks counting down, the proposals with the
    recommendation first, and the last timeline lines."""
    started = datetime.fromisoformat(rep.started_at.replace("Z", "+00:00"))
    elapsed = max(0.0, (now - started).total_seconds())
    head = Text.from_markup(
        f"[bold]{rep.incident_id}[/] {rep.severity.value} [bold]{rep.status}[/] · {rep.phase.value} · "
        f"IC {rep.commander or 'unassigned'} · {mmss(elapsed)} since the start")
    sla = Table("SLA", "due", "state", title="SLA clocks", expand=False)
    for c in rep.sla:
        if c.met is None:
            left = c.due_seconds - elapsed
            state = f"{mmss(left)} left" if left > 0 else f"[red]overdue by {mmss(-left)}[/]"
        else:
            state = "met" if c.met else "[red]missed[/]"
        sla.add_row(c.name, mmss(c.due_seconds), state)
    props = Table("#", "action", "state", title="Proposals", expand=False)
    props.add_column("why", overflow="fold")
    for a in ordered_actions(rep):
        why = a.recommendation if a.recommended else (a.result or a.rejection_reason or a.reason)
        name = f"[bold green]{a.id} (recommended)[/]" if a.recommended and a.state.value == "proposed" else a.id
        props.add_row(str(a.rank or ""), name, a.state.value, why or "")
    tl = Table("t", "actor", "event", title="Timeline (latest)", expand=False)
    for e in rep.timeline[-lines:]:
        tl.add_row(mmss(e.at_seconds), e.actor, e.event)
    parts: list = [head]
    if rep.sla:
        parts.append(sla)
    if rep.actions:
        parts.append(props)
    parts.append(tl)
    return Group(*parts)
