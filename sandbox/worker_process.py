"""A CodeBlue worker in a process of its own, for crash tests and fault drills.

    proc = spawn_worker(address, sb.config_path, task_queue)   # `codeblue worker`
    kill9(proc)                                                # SIGKILL, then reap
    stop(proc)                                                 # SIGTERM, SIGKILL after a grace period
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterable


def worker_env(address: str, config_path: str, task_queue: str, **extra: str) -> dict[str, str]:
    """The environment `codeblue worker` reads: its config file, the server, the task queue."""
    return {**os.environ, "CODEBLUE_CONFIG": config_path, "TEMPORAL_ADDRESS": address,
            "TEMPORAL_TASK_QUEUE": task_queue, **extra}


def spawn_worker(address: str, config_path: str, task_queue: str) -> subprocess.Popen:
    codeblue = shutil.which("codeblue")
    if not codeblue:
        raise RuntimeError("codeblue console script not on PATH")
    return subprocess.Popen(
        [codeblue, "worker"], env=worker_env(address, config_path, task_queue),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def kill9(proc: subprocess.Popen, timeout: float = 10) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout)


def stop(*procs: subprocess.Popen | None, grace: float = 15) -> None:
    """SIGTERM (a worker's clean shutdown), SIGKILL after `grace` seconds."""
    live: Iterable[subprocess.Popen] = [p for p in procs if p is not None and p.poll() is None]
    for p in live:
        p.send_signal(signal.SIGTERM)
    for p in live:
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
