"""A real Prometheus server for the sandbox, scraping the gateway's `/metrics` every second, so
the SLI activities read what a responder would read in production.

    async with prometheus_server(["127.0.0.1:8123"]) as prom:   # None without the binary
        prom.url                                                 # http://127.0.0.1:<port>

The binary is Debian's `prometheus` package (`apt-get install prometheus`; `/usr/bin/prometheus`),
or any `prometheus` on PATH. It runs as an argument list (never a shell), on loopback, with its
TSDB in a temporary directory removed at exit.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from activities.http_client import tls_context
from starters.ports import free_port

ENABLE_HINT = ("the sandbox runs without Prometheus (SLIs are recorded as skipped): install Debian's "
               "prometheus package (apt-get install prometheus) to have a real one scrape the gateway")
_hinted = False


def find_prometheus() -> str | None:
    """`prometheus` on PATH, else Debian's /usr/bin/prometheus; None when neither exists."""
    found = shutil.which("prometheus")
    if found:
        return found
    debian = "/usr/bin/prometheus"
    return debian if os.access(debian, os.X_OK) else None


def hint_once() -> None:
    """Say once per process how to get the sandbox's Prometheus (stderr: --json stays clean)."""
    global _hinted
    if not _hinted:
        _hinted = True
        print(f"note: {ENABLE_HINT}", file=sys.stderr)


def scrape_config(targets: list[str], *, interval: str = "1s", metrics_path: str = "/metrics") -> dict:
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [{
            "job_name": "api-gateway",
            "metrics_path": metrics_path,
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "static_configs": [{"targets": list(targets)}],
        }],
    }


@dataclass
class PrometheusServer:
    url: str
    config_file: Path
    log_file: Path
    proc: subprocess.Popen

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log_file.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return ""


class PrometheusStartError(RuntimeError):
    pass


async def _wait_ready(server: PrometheusServer, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    async with httpx.AsyncClient(timeout=1.0, verify=tls_context()) as http:
        while True:
            if server.proc.poll() is not None:
                raise PrometheusStartError(f"prometheus exited with {server.proc.returncode}: {server.log_tail()}")
            try:
                if (await http.get(f"{server.url}/-/ready")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if loop.time() > end:
                raise PrometheusStartError(f"prometheus was not ready within {timeout:g}s: {server.log_tail()}")
            await asyncio.sleep(0.05)


def _die_with_parent():
    """Linux: the server gets SIGTERM when the process that started it dies, even by SIGKILL
    (a killed drill or test leaves no scraper behind). libc is loaded here, in the parent: the
    child only makes the call between fork and exec."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    pr_set_pdeathsig = 1
    return lambda: libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@asynccontextmanager
async def prometheus_server(targets: list[str], *, interval: str = "1s", binary: str | None = None,
                            ready_timeout: float = 30.0) -> AsyncIterator[PrometheusServer | None]:
    """A started Prometheus scraping `targets` (host:port), or None when no binary exists."""
    path = binary or find_prometheus()
    if path is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="codeblue-prometheus-") as tmp:
        config_file = Path(tmp) / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(scrape_config(targets, interval=interval), sort_keys=False))
        log_file = Path(tmp) / "prometheus.log"
        port = free_port()
        args = [path, f"--config.file={config_file}", f"--storage.tsdb.path={Path(tmp) / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1d", "--log.level=warn"]
        with open(log_file, "ab") as log:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=tmp,
                                    preexec_fn=_die_with_parent())
        server = PrometheusServer(url=f"http://127.0.0.1:{port}", config_file=config_file, log_file=log_file, proc=proc)
        try:
            await _wait_ready(server, ready_timeout)
            yield server
        finally:
            await asyncio.to_thread(_stop, proc)


async def wait_for_data(url: str, query: str, timeout: float = 30.0) -> bool:
    """Until `query` returns a sample (a rate() needs two scrapes of the target): a drill's
    assessment then reads the gateway's real numbers instead of "no data". False on timeout."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    async with httpx.AsyncClient(timeout=2.0, verify=tls_context()) as http:
        while loop.time() < end:
            try:
                r = await http.get(f"{url}/api/v1/query", params={"query": query})
                if r.status_code == 200 and r.json().get("data", {}).get("result"):
                    return True
            except (httpx.HTTPError, ValueError):
                pass
            await asyncio.sleep(0.5)
    return False
