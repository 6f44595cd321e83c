"""`codeblue drill memory-leak --json` and the playbook CLI's one-line errors."""

from __future__ import annotations

import json
import os

from tests.support.cli import codeblue


def test_memory_leak_drill_scales_and_scales_back():
    r = codeblue("drill", "memory-leak", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads(r.stdout)
    assert rep["status"] == "resolved" and rep["verified"] is True
    assert {a["id"]: a["state"] for a in rep["actions"]} == {"scale": "compensated", "restart": "executed"}
    assert len(rep["assessment"]["leak_suspects"]) == 3
    said = " ".join(r.stderr.split())
    assert "DRILL PASSED" in said and "replicas 3 -> 10 -> 3" in said


def test_playbook_and_redeploy_errors_are_one_line():
    env = {**os.environ, "TEMPORAL_ADDRESS": "127.0.0.1:1"}
    import shutil
    import subprocess

    exe = shutil.which("codeblue")
    assert exe
    for args, msg in (
        (["playbook", "cache", "--incident", "INC-1", "--pattern", "*"], "pattern must be a key glob"),
        (["redeploy", "--incident", "INC-1", "--tag", "v1,image.repository=evil"], "image tag must be"),
        (["playbook", "memory", "--incident", "INC-1"], "cannot reach Temporal at 127.0.0.1:1"),
        (["redeploy", "--incident", "INC-1"], "cannot reach Temporal at 127.0.0.1:1"),
    ):
        r = subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL)
        assert r.returncode == 1 and msg in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1
