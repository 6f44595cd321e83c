"""The timeline every CodeBlue workflow keeps: seconds since start, actor, event, result."""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.identity import UNVERIFIED
    from domain.incident import TimelineEntry, TimelineKind

CODEBLUE = "codeblue"


# commands refused as unauthenticated that get an entry each; the rest are counted
UNVERIFIED_LISTED = 10


class Timeline:
    def __init__(self, started: datetime) -> None:
        self.started = started
        self.entries: list[TimelineEntry] = []
        self.unverified = 0  # commands refused for want of a valid proof (worker.identity)

    def t(self) -> float:
        return round((workflow.now() - self.started).total_seconds(), 3)

    def log(self, actor: str, event: str, result: str | None = None, at: float | None = None, *,
            kind: TimelineKind) -> None:
        """`kind`: what the entry records, named where it is written (readers never parse `event`)."""
        when = self.t() if at is None else at
        self.entries.append(TimelineEntry(at_seconds=when, actor=actor, event=event, result=result, kind=kind))
        # Events are CodeBlue's own words; results carry free text (titles, summaries, reasons)
        # that may hold patient data, so they stay in the (encryptable) history, not in logs.
        workflow.logger.info("%s (by %s)", event, actor)

    def refused(self, handler: str, typed_by: str | None, problem: str) -> None:
        """A command without a valid proof: listed up to UNVERIFIED_LISTED, then counted, so
        nobody without a credential can grow the timeline."""
        self.unverified += 1
        if self.unverified <= UNVERIFIED_LISTED:
            claimed = f"; it claimed to be from {typed_by[:200]!r}" if typed_by else ""
            self.log(UNVERIFIED, f"Ignored {handler}: unauthenticated", f"{problem}{claimed}", kind=TimelineKind.IGNORED)
        elif self.unverified == UNVERIFIED_LISTED + 1:
            self.log(UNVERIFIED, "Unauthenticated commands: further ones are counted, not listed",
                     f"{UNVERIFIED_LISTED} listed; see the report's unverified_commands", kind=TimelineKind.IGNORED)

    def has(self, event: str) -> bool:
        return any(e.event == event for e in self.entries)


def mmss(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60}:{s % 60:02d}"


def reason(e: BaseException) -> str:
    """The innermost readable message of an activity or child failure."""
    cur: BaseException | None = e
    msg = str(e)
    while cur is not None:
        if str(cur):
            msg = str(cur)
        cur = cur.__cause__
    return msg.splitlines()[0][:300] if msg else type(e).__name__
