"""What every benchmark reports: a `Figure` (a number against its goal), percentiles, and the
RSS of this process or of the dev server it started."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass
class Figure:
    name: str
    value: float | None
    unit: str
    goal: str
    met: bool | None
    detail: dict = field(default_factory=dict)


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def dev_server_pid() -> int | None:
    me = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = open(f"/proc/{d}/stat").read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            cmd = open(f"/proc/{d}/cmdline", "rb").read().replace(b"\0", b" ")
        except OSError:
            continue
        if ppid == me and b"start-dev" in cmd:
            return int(d)
    return None
