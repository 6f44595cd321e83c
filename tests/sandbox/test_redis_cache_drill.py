"""`codeblue drill cache-poisoned --json`: only the poisoned keys go."""

from __future__ import annotations

import json

from tests.support.cli import codeblue


def test_cache_poisoned_drill_flushes_only_the_pattern():
    r = codeblue("drill", "cache-poisoned", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads(r.stdout)
    assert rep["status"] == "resolved" and rep["verified"] is True
    states = {a["id"]: a["state"] for a in rep["actions"]}
    assert states == {"flush-pattern": "executed", "flushall": "rejected"}
    res = rep["assessment"]["flush-pattern"]
    assert (res["deleted"], res["keys_before"], res["keys_after"]) == (40, 65, 25)
    said = " ".join(r.stderr.split())
    assert "DRILL PASSED" in said and "provider:* keys left 0, sessions kept 25/25" in said
