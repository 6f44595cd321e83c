"""The post-mortem draft as a pure function of the incident's report."""

from __future__ import annotations

from datetime import UTC, date

from domain.incident import ActionState
from domain.post_incident import ActionItem, ItemState, Verification
from domain.postmortem import PostmortemExtras, render_postmortem
from tests.support.post_incident import resolved_report


def test_draft_has_utc_timeline_decisions_slas_and_evidence():
    md = render_postmortem(resolved_report("INC-42"))
    assert md.startswith("# Post-mortem: INC-42 — api-gateway crash-looping after deploy")
    assert "| 2026-11-27 03:02:05 UTC | +2:05 | alice | Approved rollback (helm_rollback) |  |" in md
    assert "| 2026-11-27 03:20:00 UTC | +20:00 | alice | Incident resolved | rolled back to 11 |" in md
    assert "approved by **alice** at 2026-11-27 03:02:05 UTC" in md
    assert "rejected by **bob** at 2026-11-27 03:02:10 UTC — rollback is enough" in md
    assert "| diagnostics | 5:00 | met | 0:02 |" in md and "| assessment | 15:00 | **missed** | — |" in md
    assert "Severity reason: complete service outage" in md
    assert "**Recent deploy:** revision 12 (healthcare-platform-1.5.0) 12 min before the incident" in md
    assert "api-gateway-0 memory at 91% of limit" in md and "40 connection errors" in md
    assert "## Root cause" in md and "What changed shortly before the incident" in md
    assert "None: no executed step had to be undone." in md


def test_draft_lists_compensations_items_and_escapes_table_cells():
    rep = resolved_report("INC-43")
    rep.actions[0].state = ActionState.COMPENSATED
    rep.timeline[2].result = "a | b\nc"
    md = render_postmortem(
        rep,
        PostmortemExtras(
            verification=Verification(ok=True, checks=["all 3 pods ready"]),
            items=[
                ActionItem(id="AI-1", text="canary | stage", owner="carol", due=date(2026, 12, 1), added_by="alice", added_at="x"),
                ActionItem(
                    id="AI-2", text="alerting", owner="dave", due=date(2026, 12, 2), added_by="alice", added_at="x",
                    state=ItemState.DEFERRED, deferral_reason="next quarter",
                ),
            ],
        ),
    )
    assert "**rollback** undone: helm rollback healthcare-platform 12" in md
    assert "| a \\| b c |" in md
    assert "| AI-1 | canary \\| stage | carol | 2026-12-01 | open |" in md
    assert "| AI-2 | alerting | dave | 2026-12-02 | deferred (next quarter) |" in md
    assert "## Resolution verification" in md and "- all 3 pods ready" in md


def test_a_withdrawn_proposal_reads_as_codeblues_not_as_an_approval():
    from datetime import datetime

    from domain.incident import Action, ActionKind, ActionState
    from domain.postmortem import decision_line

    start = datetime(2026, 12, 1, tzinfo=UTC)
    moot = Action(id="scale", kind=ActionKind.SCALE_UP, reason="r", state=ActionState.SUPERSEDED,
                  result="superseded: after rollback: pods ready")
    assert decision_line(moot, start) == "withdrawn by CodeBlue (superseded) — superseded: after rollback: pods ready"
    moved = moot.model_copy(update={"decided_by": "alice", "approved_by": "alice", "decided_at_seconds": 60.0,
                                    "result": "release moved"})
    assert decision_line(moved, start).startswith("approved by **alice** at ") and "then withdrawn by CodeBlue" in decision_line(moved, start)


def test_timeline_entries_carry_a_kind_and_the_draft_reads_kinds_not_words():
    from domain.incident import IncidentReport, TimelineEntry, TimelineKind

    rep = resolved_report("INC-44")
    # the kind travels with the entry; nothing files an entry by its words
    again = IncidentReport.model_validate_json(rep.model_dump_json())
    assert [e.kind for e in again.timeline] == [e.kind for e in rep.timeline]
    unfiled = IncidentReport.model_validate_json(rep.model_dump_json(exclude={"timeline": {"__all__": {"kind"}}}))
    assert {e.kind for e in unfiled.timeline} == {TimelineKind.EVENT}
    # the draft's "why this severity" and "compensations" come from the kind, whatever the wording
    rep.timeline.append(TimelineEntry(at_seconds=30, actor="bob", event="Raised to P0", result="patients affected",
                                      kind=TimelineKind.ESCALATED))
    rep.timeline.append(TimelineEntry(at_seconds=40, actor="codeblue", event="Undid the rollback",
                                      kind=TimelineKind.COMPENSATION))
    md = render_postmortem(rep)
    def section(title: str) -> str:
        return md.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]

    assert "- Raised to P0: patients affected" in section("Severity and why")
    assert "Undid the rollback" in section("Compensations")
    assert "None: no executed step had to be undone." not in section("Compensations")
