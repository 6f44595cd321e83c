"""The fault drill's worker processes: each one the supervisor started, its activity attempts, and a fault (sandbox.drills.chaos_workers)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starters.service import CodeBlueError

BOUNDARIES = ("scheduled", "started", "completed")


@dataclass
class WorkerProc:
    pid: int
    writer: asyncio.StreamWriter
    identity: str | None = None
    ready: bool = False
    state: str = "starting"  # starting | standby | active | dead
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    since: float = field(default_factory=time.monotonic)

    def send(self, msg: dict[str, Any]) -> None:
        if not self.writer.is_closing():
            self.writer.write((json.dumps(msg) + "\n").encode())


@dataclass
class ActivityRun:
    """One activity of one workflow (all its attempts), and the faults at its boundaries."""

    wf: str
    act: str
    type: str
    faults: dict[str, int | None] = field(default_factory=lambda: dict.fromkeys(BOUNDARIES))
    parked: tuple[WorkerProc, str, int] | None = None  # (worker, boundary, message id): waiting for us
    running: WorkerProc | None = None  # its code is running there
    reporting: tuple[WorkerProc, int] | None = None  # (worker, attempt): result on its way to the server
    attempts: int = 0
    closed: bool = False
    completed: bool = False

    @property
    def label(self) -> str:
        return f"{self.type}#{self.act}@{self.wf}"


@dataclass
class Fault:
    n: int
    kind: str  # worker-sigkill | server-restart
    at: list[str]  # "boundary activity" entries, or the moment for a server restart
    pid: int | None = None
    seconds: float = 0.0


class WorkerPool:
    """`python -m sandbox.chaos_worker`: imports CodeBlue once, forks a worker process per order."""

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir
        self.proc: subprocess.Popen | None = None

    def start(self) -> WorkerPool:
        with open(Path(self.log_dir) / "chaos-workers.log", "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "sandbox.chaos_worker"], stdin=subprocess.PIPE,
                                         stdout=log, stderr=log)
        return self

    def fork(self, hook: str, env: dict[str, str]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        if self.proc.poll() is not None:
            raise CodeBlueError(f"the worker pool process exited with {self.proc.returncode}: {self.log_tail()}")
        self.proc.stdin.write((json.dumps({"hook": hook, "env": env}) + "\n").encode())
        self.proc.stdin.flush()

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = (Path(self.log_dir) / "chaos-workers.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:])

    def close(self) -> None:
        """Its children die with it (PR_SET_PDEATHSIG)."""
        if self.proc is None:
            return
        try:
            assert self.proc.stdin is not None  # spawned with stdin=PIPE
            self.proc.stdin.close()
            self.proc.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


