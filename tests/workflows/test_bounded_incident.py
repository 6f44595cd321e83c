"""A long, noisy incident stays inside Temporal's limits: 20,000 alerts and 1,000 notes, and it
still answers `status`, keeps its report under REPORT_MAX_BYTES, continues as new with its
clocks, proposals and saga, and resolves. Time-skipping server, no wall-clock waiting."""

from __future__ import annotations

import asyncio

import pytest

from domain.alerts import MAX_BATCH, AlertBatch, AlertNotice
from domain.config import CodeBlueConfig, LimitsConfig
from domain.incident import REPORT_MAX_BYTES, ActionState, Decision, IncidentReport, Note, Resolution
from sandbox.memory_world import World, configure_worker
from starters import service
from starters.api.alerts import alert_sender
from tests.support.polling import until
from tests.support.workflows import decide_all, entry, events, incident, proposed, skip, start, worker_for
from worker.identity import acting_as
from workflows.incident_response import IncidentResponseWorkflow

ALERTS, NOTES, ACTORS = 20_000, 1_000, 100


# 20,000 alerts keep the time-skipping server busy for seconds per RPC: beside the drills on
# the other core its RPCs time out, so it runs after the parallel part, alone.
@pytest.mark.alone
async def test_twenty_thousand_alerts_and_a_thousand_notes_stay_bounded(skipping_env):
    env, world = skipping_env, World()
    inp = incident()
    configure_worker(inp.incident_id, CodeBlueConfig(limits=LimitsConfig(continue_as_new_after_events=150)))
    async with worker_for(env, world) as tq:
        h = await start(env, world, inp, tq)
        rep = await until(h, proposed, "proposals")
        # the IC is still deciding while the flood comes: the reminder clock runs
        proposed_at = next(e.at_seconds for e in rep.timeline if e.event == "Proposed scale (scale_up)")

        summary = "x" * 2000  # the longest summary an alert may carry
        text = "n" * 4000  # the longest note
        # the flood comes in waves (as the API's spool delivers it): between waves the
        # incident gets the quiet moment it needs to continue as new
        for wave in range(5):
            for first in range(wave * ALERTS // 5, (wave + 1) * ALERTS // 5, MAX_BATCH):
                batch = [AlertNotice(dedup_key=h.id, alertname="GatewayErrors", status="firing", severity="P0",
                                     service="api-gateway", fingerprint=f"fp-{n}", summary=summary)
                         for n in range(first, first + MAX_BATCH)]
                with acting_as(alert_sender("alertmanager")):  # as the API delivers them
                    await h.signal(IncidentResponseWorkflow.add_alerts, AlertBatch(notices=batch))
            for chunk in range(wave * NOTES // 5, (wave + 1) * NOTES // 5, 20):  # 20 responders typing at once
                await asyncio.gather(*(
                    h.signal(IncidentResponseWorkflow.add_note, Note(by=f"resp-{i % ACTORS}", text=text))
                    for i in range(chunk, chunk + 20)
                ))
            expected = (wave + 1) * NOTES // 5

            def received(r: IncidentReport, expected: int = expected) -> bool:
                return r.notes.get("received") == expected

            # a query replays the run on a busy worker: ask seldom, wait long (no wall-clock timers here)
            await until(h, received, f"wave {wave}", timeout=240, poll=0.5)
        # 11 more from one responder inside a minute: the eleventh is dropped
        for _ in range(11):
            await h.signal(IncidentResponseWorkflow.add_note, Note(by="chatty", text="again"))

        rep = await until(h, lambda r: r.notes.get("received") == NOTES + 11 and r.alerts.get("received") == ALERTS,
                          "every alert and note counted", timeout=240, poll=0.5)
        assert rep.status == "open"
        # each "Continued as new" entry is a run that ended ContinuedAsNew (a refused attempt leaves none)
        assert events(rep).count("Continued as new") >= 3, [e.result for e in rep.timeline if e.event == "Continued as new"]
        assert (await h.describe()).raw_description.workflow_execution_info.history_length < 300
        size = len(rep.model_dump_json().encode())
        assert size < REPORT_MAX_BYTES, size
        assert rep.alerts == {"received": ALERTS, "listed": 500, "unlisted": ALERTS - 500, "repeats": 0}
        assert rep.notes["listed"] == 60 and rep.notes["rate_limited"] == 1
        assert rep.notes["unlisted"] == NOTES + 10 - 60
        ev = events(rep)
        # what came before the continues is still there, in order, with its original offsets
        assert ev[0] == "Incident opened" and ev.index("Assessment complete") < ev.index("Continued as new")
        assert {c.name: c.met for c in rep.sla} == {"diagnostics": True, "assessment": True, "communication": True}
        assert all(a.state == ActionState.PROPOSED for a in rep.actions)

        # the proposals' reminder keeps its original deadline across the continues
        await skip(env, 6)
        rep = await until(h, lambda r: "Proposals waiting; reminding the IC" in events(r), "reminder")
        reminded = entry(rep, "Proposals waiting; reminding the IC").at_seconds
        assert abs(reminded - (proposed_at + 300)) < 2, (reminded, proposed_at)
        assert len(world.pages_to("commander")) == 1

        # the rollback runs; the scale meets a moved world and is proposed again
        world.moved["scale_deployment"] = ("ReplicasMoved", {"current_replicas": 4, "approved_replicas": 3})
        await decide_all(env, h, {"rollback", "scale"})
        rep = await until(h, lambda r: any(a.id == "scale-2" for a in r.actions), "scale-2", timeout=120, poll=0.5)
        runs = events(rep).count("Continued as new")
        for chunk in range(0, 200, 20):  # more notes: one more continue, with the rollback in the saga
            await asyncio.gather(*(h.signal(IncidentResponseWorkflow.add_note, Note(by=f"late-{i}", text="later"))
                                   for i in range(chunk, chunk + 20)))
        await until(h, lambda r: events(r).count("Continued as new") > runs, "a continue after the rollback",
                    timeout=120, poll=0.5)

        # a saga carried across the continue still undoes the rollback when a later step fails
        world.moved.clear()
        world.broken.add("scale_deployment")
        await service.decide(env.client, h.id, Decision(action_id="scale-2", approve=True, by="alice"))
        rep = await until(h, lambda r: "Compensated rollback" in events(r), "compensation after continue-as-new")
        assert world.effects == ["rollback 12->11", "rollback 13->12"]

        res = await service.resolve(env.client, h.id, Resolution(by="alice", summary="noisy, but over", force=True))
        assert res.resolved
        final = await h.result()
        assert final.status == "resolved_unverified" and len(final.model_dump_json().encode()) < REPORT_MAX_BYTES
