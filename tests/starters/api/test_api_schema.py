"""Schemathesis against the served OpenAPI schema: whatever it sends, never a 500."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from contextlib import AsyncExitStack

import httpx
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from activities.http_client import tls_context
from sandbox.memory_world import World, incident_worker
from starters.ports import free_port
from tests.support.polling import until
from worker.temporal import workflow_runner
from workflows.registry import WORKFLOWS


async def test_schemathesis_finds_no_server_errors(dev_env, tmp_path):
    st = shutil.which("schemathesis")
    assert st, "schemathesis not installed (pip install -e '.[test]')"
    port, token, tq = free_port(), "tok-" + uuid.uuid4().hex, f"schema-{uuid.uuid4().hex[:6]}"
    cfg = tmp_path / "codeblue.yaml"
    # generous: a 504 counts as a server error, and on a busy machine (the suite runs on every
    # core) a thousand-alert webhook takes its time
    cfg.write_text("api:\n  request_timeout_seconds: 60\n")
    env = {**os.environ, "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
           "TEMPORAL_TASK_QUEUE": tq,
           "CODEBLUE_API_TOKENS": json.dumps([{"name": "root", "token": token, "roles": ["admin"]}]),
           "CODEBLUE_CONFIG": str(cfg)}
    stack = AsyncExitStack()
    exe = shutil.which("codeblue")
    assert exe
    api = await asyncio.create_subprocess_exec(exe, "api", "--port", str(port), env=env,
                                               stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                                               stderr=asyncio.subprocess.PIPE)
    # every workflow type: the fuzzer starts playbooks and restores too (their activities are
    # mostly absent here, so they wait; their handlers still answer). The deployed worker's
    # sandbox (workflow modules shared between runs): this test is about the API, and the
    # strict per-run re-import cost a CPU-second for every few of the fuzzer's incidents.
    worker = Worker(dev_env.client, task_queue=tq, workflows=WORKFLOWS, activities=incident_worker(World())["activities"],
                    workflow_runner=workflow_runner())
    try:
        await stack.enter_async_context(worker)
        async with httpx.AsyncClient(verify=tls_context()) as http:
            await until(lambda: http.get(f"http://127.0.0.1:{port}/healthz"), lambda r: r.status_code == 200,
                        "the API's /healthz", timeout=10, retry=(httpx.TransportError,))
        p = await asyncio.create_subprocess_exec(
            st, "run", f"http://127.0.0.1:{port}/openapi.json", "--checks", "not_a_server_error",
            "-H", f"Authorization: Bearer {token}", "--max-examples", "20", "--seed", "7", "--phases", "examples,coverage,fuzzing",
            "--generation-database", "none", "--request-timeout", "90",
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(p.communicate(), 300)
        assert p.returncode == 0, out.decode()[-12000:]
    finally:
        api.terminate()
        async for w in dev_env.client.list_workflows(f"TaskQueue = '{tq}' AND ExecutionStatus = 'Running'"):
            try:
                await dev_env.client.get_workflow_handle(w.id).terminate("schema test done")
            except RPCError as e:  # it ended between the listing and now (its worker still runs)
                if e.status != RPCStatusCode.NOT_FOUND:
                    raise
        await stack.aclose()
        _, err = await asyncio.wait_for(api.communicate(), 20)
    assert "Traceback" not in err.decode(), err.decode()[-3000:]
