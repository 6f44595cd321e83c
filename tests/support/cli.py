"""Running the `codeblue` console script as a user would: a subprocess, no stdin."""

from __future__ import annotations

import shutil
import subprocess


def codeblue(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    exe = shutil.which("codeblue")
    assert exe, "codeblue console script not on PATH"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
