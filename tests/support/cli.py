"""Running the `codeblue` console script as a user would: a subprocess, no stdin."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
from typing import cast


def codeblue(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    exe = shutil.which("codeblue")
    assert exe, "codeblue console script not on PATH"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


async def cb(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, str, str]:
    exe = shutil.which("codeblue")
    assert exe
    p = await asyncio.create_subprocess_exec(
        exe, *args,
        env={**os.environ, **(env or {})},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(p.communicate(), timeout)
    return cast(int, p.returncode), out.decode(), err.decode()  # communicate() returned: it exited


def one_line_error(err: str) -> str:
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


async def stop(proc: asyncio.subprocess.Process) -> None:
    """Ctrl-C to a `codeblue dev` (or any long-running command) as a person would, then wait;
    killed if it has not stopped within 30 s."""
    if proc.returncode is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(proc.wait(), 30)
    except TimeoutError:
        proc.kill()
        await proc.wait()
