"""What every `codeblue` command shares: the consoles, the one-line failure, the Temporal and
API clients, and how a command acts (through the API when one is configured, else with the
operator key). The command modules (cli.py, cli_*.py) import it; it imports none of them."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NoReturn

import typer
from rich.console import Console

from domain.config import CodeBlueConfig, ConfigError, TemporalSettings, load_config
from domain.identity import OPERATOR_VIA
from starters.errors import CodeBlueError
from worker.heap import settle_heap

out = Console()
err = Console(stderr=True)

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config (default: $CODEBLUE_CONFIG, else runbook defaults).")


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    exit_now(code)


def exit_now(code: int) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.flush()
    # The SDK can abort at interpreter exit after a worker ran (sdk-python #300).
    os._exit(code)


def run(coro_fn: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run a command; any expected failure becomes one line on stderr and exit 1."""
    settle_heap(young_threshold=None)  # what the command imported lives as long as it runs
    try:
        return asyncio.run(coro_fn())
    except (CodeBlueError, ConfigError) as e:
        fail(str(e))
    except KeyboardInterrupt:
        exit_now(130)
    except RuntimeError as e:
        if "connect" in str(e).lower():
            s = TemporalSettings.from_env()
            fail(f"cannot reach Temporal at {s.address} (set TEMPORAL_ADDRESS, or run `codeblue dev`)")
        raise


async def temporal_client(via: str | None = OPERATOR_VIA):
    """A Temporal client that signs commands with the operator key (`via`; None: the API,
    which signs only for a token's principal)."""
    from worker.temporal import connect

    try:
        return await connect(via=via)
    except RuntimeError as e:
        s = TemporalSettings.from_env()
        text = str(e)
        why = "connection refused" if "refused" in text.lower() else text.splitlines()[0][:160]
        raise CodeBlueError(
            f"cannot reach Temporal at {s.address} ({why}); set TEMPORAL_ADDRESS or run `codeblue dev`"
        ) from None


def run_sync(fn: Callable[[], Any]) -> Any:
    """`run` for a command that only talks HTTP."""

    async def go() -> Any:
        return fn()

    return run(go)


def api_client():
    """The HTTP API client when one is configured (CODEBLUE_API_URL / `codeblue login`), else None."""
    from starters.api_client import ApiClient, ApiCredentials
    try:
        creds = ApiCredentials.find()
    except CodeBlueError as e:
        fail(str(e))
    return ApiClient(creds) if creds else None


def operator(by: str | None) -> str:
    """Without an API, a command that changes state needs the operator key; it is recorded
    as `<name> (operator key)`, the name from --by or $USER."""
    from domain.identity import ENV_KEY, ENV_KEY_FILE, IdentityKeyError, keyring_from_env

    try:
        can_sign = keyring_from_env().can_sign
    except IdentityKeyError as e:
        fail(str(e))
    if not can_sign:
        fail(f"not authenticated: set CODEBLUE_API_URL and CODEBLUE_TOKEN (or run `codeblue login --api URL`), "
             f"or hold the operator key (${ENV_KEY} / ${ENV_KEY_FILE})")
    return by or os.environ.get("USER") or "operator"


PublicOpt = typer.Option(None, "--public-summary", help="What the status page and stakeholders read (the title and summary stay internal).")
async def acting_client(command: str):
    """A Temporal client for a command that changes state: it needs the operator key, and is
    refused while an API is configured (that path must never be bypassed)."""
    from starters.api_client import ApiCredentials
    if ApiCredentials.find() is not None:
        raise CodeBlueError(f"`codeblue {command}` has no API endpoint; "
                            "run it where the operator key is set, without CODEBLUE_API_URL / `codeblue login`")
    operator(None)
    return await temporal_client()


# Input fields a procedure's API body carries (others are the worker's config there).
_API_FIELDS = {"incident_id": "incident_id", "commander": "commander", "pattern": "pattern",
               "max_connection_errors": "max_connection_errors", "target_tag": "tag",
               "snapshot": "snapshot", "target": "target"}
_PINNED = ("release", "namespace", "chart", "deployment", "source")


def start_procedure_cmd(kind: str, config: str | None, make_input: Callable[[str], Any],
                        start: Callable[[Any, Any, str], Awaitable[Any]], next_step: Callable[[str], str],
                        by: str | None) -> str | None:
    """Start a playbook, recovery or restore: through the API when one is configured (the
    token's principal), else with the operator key. Prints the ID and the UI link; returns the ID."""
    from starters.service import ui_link

    api = api_client()
    name = by or os.environ.get("USER") or "operator"
    try:
        inp = make_input(name)
    except ValueError as e:
        fail(first_error(e))
    if api is not None:
        pinned = [f for f in _PINNED if getattr(inp, f, None) is not None]
        if pinned:
            fail(f"--{pinned[0]} is the worker's config through the API; leave it out")

        def via_api() -> str:
            api.actor(by)
            body = {k: getattr(inp, f) for f, k in _API_FIELDS.items() if getattr(inp, f, None) is not None}
            started = api.start_procedure(kind, body)
            out.print(started["workflow_id"])
            out.print(started["ui_url"], highlight=False)
            err.print(next_step(started["workflow_id"]), highlight=False, soft_wrap=True)
            return started["workflow_id"]

        return run_sync(via_api)
    cfg = cli_config(config)

    async def go() -> str:
        operator(by)
        client = await temporal_client()
        s = TemporalSettings.from_env()
        h = await start(client, inp, s.task_queue)
        out.print(h.id)
        out.print(ui_link(cfg.ui.base_url, s.namespace, h.id), highlight=False)
        err.print(next_step(h.id), highlight=False, soft_wrap=True)
        return h.id

    return run(go)


def command_cmd(command: str, via_api: Callable[[Any, str], str], direct: Callable[[Any, str], Awaitable[str]],
                by: str | None) -> None:
    """A command on a running procedure (confirm a flush, end the memory playbook, ...): through
    the API when one is configured, else with the operator key. Prints the workflow's answer."""
    api = api_client()
    if api is not None:
        run_sync(lambda: out.print(via_api(api, api.actor(by))))
        return

    async def go() -> None:
        client = await acting_client(command)
        out.print(await direct(client, operator(by)))

    run(go)


ByOpt = typer.Option(None, "--by", help="Who you are: the API token's name (checked), or with the operator key your name (default $USER).")


def cli_config(path: str | None) -> CodeBlueConfig:
    try:
        return load_config(path)
    except ConfigError as e:
        fail(str(e))
        raise  # unreachable


def first_error(e: Exception) -> str:
    errors = getattr(e, "errors", None)
    if callable(errors):
        x = errors()[0]
        field = ".".join(str(p) for p in x["loc"])
        return f"{field}: {x['msg'].removeprefix('Value error, ')}"
    return str(e)
