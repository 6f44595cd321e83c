"""The `codeblue` CLI as an on-call engineer uses it: clear one-line errors, the IC's commands."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

from temporalio.worker import Worker

from domain import search_attributes as sa
from domain.incident import TimelineKind
from sandbox.memory_world import World, incident_worker
from tests.support.cli import cb, one_line_error
from tests.support.polling import until
from tests.support.workflows import proposed
from workflows.incident_response import IncidentResponseWorkflow


async def test_unreachable_server_is_one_line():
    code, _, err = await cb("incident", "status", "INC-1", env={"TEMPORAL_ADDRESS": "127.0.0.1:1"})
    assert code == 1
    assert "cannot reach Temporal at 127.0.0.1:1 (connection refused)" in one_line_error(err)


async def test_bad_config_names_file_and_field(tmp_path: Path):
    bad = tmp_path / "codeblue.yaml"
    bad.write_text("mitigation:\n  scale_replicas: -3\n")
    code, _, err = await cb("worker", "--config", str(bad))
    assert code == 1
    line = one_line_error(err)
    assert str(bad) in line and "mitigation.scale_replicas" in line
    bad.write_text("kubernetes:\n  namespce: prod\n")
    code, _, err = await cb("worker", "--config", str(bad))
    assert code == 1 and "kubernetes.namespce" in one_line_error(err)
    code, _, err = await cb("worker", "--config", str(tmp_path / "missing.yaml"))
    assert code == 1 and "file not found" in one_line_error(err)


async def test_bad_incident_id_is_refused_before_anything_starts():
    code, _, err = await cb("incident", "start", "--title", "x", "--severity", "P1", "--id", "bad id!")
    assert code == 1 and "incident ID must be" in one_line_error(err)


async def test_ic_drives_an_incident_from_the_cli(dev_env):
    world = World()
    tq = f"cli-{uuid.uuid4().hex[:6]}"
    env = {"TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host, "TEMPORAL_TASK_QUEUE": tq}
    iid = f"INC-CLI-{uuid.uuid4().hex[:6]}"
    async with Worker(dev_env.client, task_queue=tq, **incident_worker(world)):
        code, out, err = await cb(
            "incident", "start", "--title", "gateway down", "--outage", "--commander", "alice", "--id", iid, env=env
        )
        assert code == 0, err
        assert out.splitlines()[0] == iid
        assert f"/namespaces/default/workflows/{iid}" in out

        code, _, err = await cb("incident", "start", "--title", "again", "--severity", "P0", "--id", iid, env=env)
        assert code == 1 and f"incident {iid} already exists" in one_line_error(err)

        h = dev_env.client.get_workflow_handle_for(IncidentResponseWorkflow.run, iid)
        rep = await until(h, proposed, "proposals", timeout=30)
        assert rep.severity.value == "P0"  # classified from --outage

        code, _, err = await cb("incident", "approve", iid, "rollback", "--by", "mallory", env=env)
        assert code == 1
        assert "mallory (operator key) is not the incident commander (alice)" in one_line_error(err)

        code, _, err = await cb("incident", "approve", iid, "rollback", "--by", "alice", "--override", " ", env=env)
        assert code == 1 and "--override needs a reason" in one_line_error(err)
        # the operator key is an admin's: its override of the blast-radius policy is recorded
        code, out, err = await cb("incident", "approve", iid, "rollback", "--by", "alice", "--override", "game day", env=env)
        assert code == 0 and "rollback: approved" in out, err
        assert f"follow it: codeblue incident watch {iid}" in out, out  # what a new IC does next
        for a in rep.actions[1:]:
            code, out, err = await cb("incident", "reject", iid, a.id, "--by", "alice", "--reason", "not needed", env=env)
            assert code == 0, err

        await until(h, lambda r: r.actions[0].state.value == "executed", "rollback executed", timeout=30)
        # visibility is eventually consistent: wait through the SDK (a `codeblue` process per poll
        # costs most of a CPU-second), then list as the IC does
        async def listed() -> list:
            return [w async for w in dev_env.client.list_workflows(f"WorkflowId = '{iid}' AND {sa.PHASE.name} = 'mitigation'")]

        await until(listed, what="the incident listed in mitigation", timeout=10)
        code, out, _ = await cb("incident", "list", "--json", env=env)
        assert code == 0
        rows = {r["incident_id"]: r for r in json.loads(out)}
        assert rows[iid]["phase"] == "mitigation", rows
        assert rows[iid]["severity"] == "P0" and rows[iid]["commander"] == "alice", rows
        code, out, err = await cb("incident", "list", env={**env, "COLUMNS": "80"})
        assert code == 0 and iid in out, out  # the ID to copy is never cut short in 80 columns
        code, out, err = await cb("incident", "note", iid, "pods back at 10:07", "--by", "bob", env=env)
        assert code == 0 and "note added" in out, err
        code, _, err = await cb("incident", "note", iid, "", "--by", "bob", env=env)
        assert code == 1 and "text" in one_line_error(err)
        await until(h, lambda r: any(e.kind == TimelineKind.NOTE for e in r.timeline), "the note", timeout=30)
        code, out, err = await cb("incident", "status", iid, "--json", env=env)
        assert code == 0, err
        report = json.loads(out)
        assert report["incident_id"] == iid and report["status"] == "open"
        assert [(e["actor"], e["result"]) for e in report["timeline"] if e["kind"] == "note"] == [("bob (operator key)", "pods back at 10:07")]
        assert [a["state"] for a in report["actions"]][0] == "executed"
        assert (report["actions"][0]["override"], report["actions"][0]["override_by"]) == ("game day", "alice (operator key)")

        code, out, err = await cb("incident", "status", iid, env=env)
        assert code == 0 and "Timeline" in out
        code, out, err = await cb("incident", "watch", iid, "--once", env=env)
        assert code == 0 and "SLA clocks" in out and "Proposals" in out and "Timeline (latest)" in out, err
        assert "mitigation" in out and "Note" in out  # the phase, and the newest timeline line

        watching = asyncio.ensure_future(cb("incident", "watch", iid, "--every", "0.2", env=env))
        code, out, err = await cb("incident", "resolve", iid, "--by", "alice", "--summary", "rolled back", env=env)
        assert code == 0 and "resolved" in out, err
        assert (await h.result()).status == "resolved"
        code, out, err = await asyncio.wait_for(watching, 30)  # the live view ends with the incident
        assert code == 0 and f"{iid} closed: resolved" in out, err

        code, _, err = await cb("incident", "approve", iid, "scale", "--by", "alice", env=env)
        assert code == 1 and f"incident {iid} is closed" in one_line_error(err)
        code, _, err = await cb("incident", "note", iid, "too late", "--by", "bob", env=env)
        assert code == 1 and f"incident {iid} is closed" in one_line_error(err)
    assert world.effects == ["rollback 12->11"]


async def test_unknown_incident(dev_env):
    env = {"TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host}
    code, _, err = await cb("incident", "status", "INC-NOPE-404", env=env)
    assert code == 1 and "unknown incident INC-NOPE-404" in one_line_error(err)


def test_codeblue_finds_the_temporal_binary_of_its_own_environment(monkeypatch):
    """`.venv/bin/codeblue drill`, as the README writes it, without .venv/bin on PATH."""
    import sys
    from pathlib import Path

    from starters.devserver import temporal_binary

    monkeypatch.setenv("PATH", "/nonexistent")
    assert Path(temporal_binary()) == Path(sys.executable).parent / "temporal"
