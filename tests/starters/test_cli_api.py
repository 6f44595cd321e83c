"""The game day as the README tells it: `codeblue dev --sandbox bad-deploy` in one terminal,
`source .codeblue/dev.env` in another, the IC on the CLI through the API (no operator key)."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import stat
from pathlib import Path
from typing import Any

import httpx

from activities.http_client import tls_context
from starters.ports import free_port
from tests.support.cli import cb, one_line_error, stop
from tests.support.polling import until

TOKENS: list[dict[str, Any]] = [{"name": "you", "token": "tok-you-" + "y" * 24, "roles": ["commander"]},
          {"name": "bob", "token": "tok-bob-" + "b" * 24, "roles": ["responder"]},
          {"name": "carol", "token": "tok-carol-" + "c" * 24, "roles": ["commander"]}]


def _dev_env(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        k, _, v = line.removeprefix("export ").partition("=")
        out[k] = shlex.split(v)[0]
    return out


async def _report(env: dict[str, str], iid: str, pred, what: str, timeout: float = 60) -> dict:
    """Wait over HTTP (a `codeblue` process per poll costs most of a CPU-second), then read the
    report the IC reads, with `codeblue incident status --json`, and check it too."""
    async with httpx.AsyncClient(verify=tls_context(), base_url=env["CODEBLUE_API_URL"], timeout=10,
                                 headers={"Authorization": f"Bearer {env['CODEBLUE_TOKEN']}"}) as http:
        async def report() -> dict | str:  # the report, or what the API said instead
            r = await http.get(f"/incidents/{iid}")
            return r.json() if r.status_code == 200 else r.text[-500:]

        await until(report, lambda rep: isinstance(rep, dict) and pred(rep), what, timeout=timeout, poll=0.1,
                    max_poll=0.5, retry=(httpx.TransportError,))
    code, out, err = await cb("incident", "status", iid, "--json", env=env)
    assert code == 0, err
    rep = json.loads(out)
    assert pred(rep), f"{what}: the API said so, the CLI's report does not: {out[-500:]}"
    return rep


async def test_game_day_ic_approves_with_the_cli_through_the_api(tmp_path: Path):
    base = {k: v for k, v in os.environ.items() if not k.startswith("CODEBLUE_")}  # no operator key anywhere
    ports = {"--port": free_port(), "--ui-port": free_port(), "--api-port": free_port()}
    exe = shutil.which("codeblue")
    assert exe
    dev = await asyncio.create_subprocess_exec(
        exe, "dev", "--sandbox", "bad-deploy", *[str(x) for kv in ports.items() for x in kv],
        cwd=tmp_path, env={**base, "CODEBLUE_API_TOKENS": json.dumps(TOKENS)},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert dev.stderr is not None  # a pipe
    dev_env = tmp_path / ".codeblue" / "dev.env"
    try:
        await until(lambda: dev_env.exists() or dev.returncode is not None, what="dev.env written (or `codeblue dev` gone)",
                    timeout=60, poll=0.25)
        assert dev_env.exists(), (await dev.stderr.read()).decode()[-2000:]
        assert stat.S_IMODE(dev_env.stat().st_mode) == 0o600
        values = _dev_env(dev_env)
        assert values["CODEBLUE_TOKEN"] == TOKENS[0]["token"] and values["KUBECONFIG"]
        you = {**base, **values, "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
        bob = {**you, "CODEBLUE_TOKEN": TOKENS[1]["token"]}
        carol = {**you, "CODEBLUE_TOKEN": TOKENS[2]["token"]}

        code, out, err = await cb("incident", "start", "--severity", "P0", "--title", "api-gateway down",
                                  "--commander", "you", env=you)
        assert code == 0, err
        iid = out.splitlines()[0].strip()
        rep = await _report(you, iid, lambda r: len(r["actions"]) >= 2, "proposals")
        assert rep["timeline"][0]["actor"] == "you"  # requested_by is the token's principal

        code, _, err = await cb("incident", "approve", iid, "rollback", "--by", "carol", env=you)
        assert code == 1 and "--by carol is not you: the token authenticates you" in one_line_error(err)
        code, _, err = await cb("incident", "approve", iid, "rollback", env=bob)
        assert code == 1 and "bob lacks the commander role" in one_line_error(err)
        code, _, err = await cb("incident", "approve", iid, "rollback", env=carol)
        assert code == 1 and "carol is not the incident commander (you)" in one_line_error(err)

        # the IC's one move: approve what CodeBlue recommends; it runs at once, nothing else decided
        code, out, err = await cb("incident", "approve", iid, "--recommended", env=you)
        assert code == 0 and "rollback: approved" in out, err
        rep = await _report(you, iid, lambda r: r["actions"][0]["state"] == "executed", "rollback executed")
        assert all(a["state"] in ("proposed", "superseded") for a in rep["actions"][1:]), rep["actions"]
        assert all(a["decided_by"] is None for a in rep["actions"][1:])
        # the sandbox recovers once the good revision's pods are ready, about when CodeBlue's own
        # re-check after the rollback is in: the IC resolves from then on (retried, as an IC would)
        await _report(you, iid, lambda r: any(e["kind"] == "verification" and e["event"].startswith("Re-checked after")
                                              for e in r["timeline"]), "the re-check after the rollback")
        code, out, err = await until(lambda: cb("incident", "resolve", iid, "--summary", "rolled back to 11", env=you),
                                     lambda res: res[0] == 0, "the resolve accepted", timeout=60, poll=0.5)
        assert code == 0 and "resolved" in out, err
        rep = await _report(you, iid, lambda r: r["status"] != "open", "resolved")
        assert rep["status"] == "resolved" and rep["actions"][0]["approved_by"] == "you"

        # procedures go through the API too: the incident's IC decides who may start one
        code, _, err = await cb("redeploy", "--incident", iid, env=carol)
        assert code == 1 and f"carol is not the IC (you) of {iid}" in one_line_error(err)
        code, _, err = await cb("redeploy", "--incident", iid, "--chart", "/tmp/evil", env=you)
        assert code == 1 and "--chart is the worker's config" in one_line_error(err)
        code, out, err = await cb("action-item", "add", iid, "--owner", "carol", "--due", "2026-12-15", "add", "a", "canary",
                                  env=bob)
        assert code == 0 and out.startswith("AI-1: carol"), err
        code, out, err = await cb("postmortem", "held", iid, "--notes", "went well", env=you)
        assert code == 0 and "held by you" in out, err
    finally:
        await stop(dev)
