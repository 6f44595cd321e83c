"""Where the test suite's CPU goes: `python -m bench.suite_cpu [pytest args...]`.

The suite is CPU-bound on two cores, so its wall time is about its CPU time over the cores: a
file's CPU, not its wall time, says what a change would save. This runs pytest (the args as
given, default the whole `not alone` part) with a plugin that records, for every test, its
process's CPU and that of the child processes it reaped (servers it started, CLI runs,
drills); prints the files by CPU and writes `bench/suite_cpu.json`.

Caveats, so the numbers are read right: a session fixture's server is reaped when the session
ends, so its CPU lands on the last test of that worker; a process that ends with `os._exit`
(the `codeblue` CLI) still counts, as its parent reaps it.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

_OUT = "CODEBLUE_SUITE_CPU_DIR"


def _cpu() -> tuple[float, float]:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """The plugin half (`-p bench.suite_cpu`): one line per test into the run's directory."""
    out = os.environ.get(_OUT)
    own, kids, start = *_cpu(), time.monotonic()
    yield
    if out:
        own2, kids2 = _cpu()
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        with open(os.path.join(out, f"{worker}.jsonl"), "a") as f:
            f.write(json.dumps({"test": item.nodeid, "own": own2 - own, "children": kids2 - kids,
                                "wall": time.monotonic() - start}) + "\n")


def main(argv: list[str]) -> int:
    args = argv or ["-m", "not alone"]
    with tempfile.TemporaryDirectory() as d:
        start = time.monotonic()
        before = _cpu()[1]
        rc = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "bench.suite_cpu", *args], env={**os.environ, _OUT: d})
        wall, total = time.monotonic() - start, _cpu()[1] - before
        files: dict[str, dict[str, float]] = defaultdict(lambda: {"own": 0.0, "children": 0.0, "wall": 0.0, "tests": 0})
        busy: dict[str, float] = {}  # each xdist worker's time in tests: an uneven split is a long tail
        for log in Path(d).glob("*.jsonl"):
            for line in log.read_text().splitlines():
                t = json.loads(line)
                busy[log.stem] = busy.get(log.stem, 0.0) + t["wall"]
                f = files[t["test"].split("::")[0]]
                for k in ("own", "children", "wall"):
                    f[k] += t[k]
                f["tests"] += 1
    ranked = sorted(files.items(), key=lambda kv: -(kv[1]["own"] + kv[1]["children"]))
    print(f"\nsuite: {wall:.0f} s wall, {total:.0f} CPU-s in all ({os.cpu_count()} cores); per file, by CPU:")
    print(f"{'cpu s':>7} {'own':>6} {'kids':>6} {'wall s':>7} {'tests':>5}  file")
    for name, f in ranked[:25]:
        print(f"{f['own'] + f['children']:7.1f} {f['own']:6.1f} {f['children']:6.1f} {f['wall']:7.1f} {f['tests']:5d}  {name}")
    print("seconds in tests per worker: " + ", ".join(f"{w} {s:.0f}" for w, s in sorted(busy.items())))
    Path("bench/suite_cpu.json").write_text(json.dumps(
        {"wall_seconds": round(wall, 1), "cpu_seconds": round(total, 1), "cores": os.cpu_count(),
         "worker_seconds": {w: round(s, 1) for w, s in sorted(busy.items())},
         "files": {n: {k: round(v, 2) for k, v in f.items()} for n, f in ranked}}, indent=1) + "\n")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
