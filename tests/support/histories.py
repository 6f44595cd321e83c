"""The recorded histories (`tests/histories/<release>/`, written by `python -m
tests.support.record_histories`), the incident scenarios recorded on the time-skipping server,
and reading a history back: for the replay tests and whoever replays a committed run."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHistory

from domain.incident import Resolution
from sandbox.memory_world import World
from starters import service
from tests.support.workflows import decide_all, incident, skip, start, worker_for

RELEASE = "1.0"  # the folder this code's histories are recorded into
# name: World(**world), run_scenario(**run)
SCENARIOS: dict[str, dict[str, dict[str, Any]]] = {
    "rollback_resolved": {"world": {}, "run": {"approve": {"rollback"}}},
    "compensated": {"world": {"db_ok": False}, "run": {"approve": {"rollback", "scale", "db-check"}, "force": True}},
    "diagnostics_sla_missed": {"world": {"failing": {"pod_status"}}, "run": {"approve": set(), "sla_miss": True}},
}


async def run_scenario(env, world: World, approve: set[str], force: bool = False, sla_miss: bool = False) -> WorkflowHistory:
    async with worker_for(env, world) as tq:
        h = await start(env, world, incident(), tq)
        if sla_miss:
            await skip(env, 5.5)
            world.failing.clear()
        await decide_all(env, h, approve)
        world.healthy = True
        await service.resolve(env.client, h.id, Resolution(by="alice", summary="done", force=force))
        await h.result()
        return await h.fetch_history()


def committed_history(path: Path) -> WorkflowHistory:
    """A committed history under its real workflow ID (start proofs are bound to it, so a
    replay under another ID would refuse the start)."""
    raw = json.loads(path.read_text())
    return WorkflowHistory.from_json(raw.pop("workflowId"), raw)


def history_text(node) -> str:
    """The history JSON with every payload's base64 `data` decoded alongside it."""
    parts: list[str] = []

    def walk(x):
        if isinstance(x, dict):
            for k, v in x.items():
                if k == "data" and isinstance(v, str):
                    try:
                        parts.append(base64.b64decode(v).decode("utf-8", errors="replace"))
                    except ValueError:
                        pass
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(node)
    return json.dumps(node) + "\n".join(parts)
