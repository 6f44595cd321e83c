"""What every benchmark reports: a `Figure` (a number against its goal), the figures by name
(`FIGURES`), percentiles, and the RSS of this process or of the dev server it started."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

# Every figure `bench.run` measures, by its slug, in the order a run measures them: the name
# `--only` takes and `--compare` matches figures across commits by (written into the JSON as
# each figure's `slug`; never renamed, whatever the figure's `name` says).
FIGURES: dict[str, str] = {
    "diagnostics": "time to diagnostics: P0 start -> 'Immediate actions complete' on the drill sandbox",
    "overhead": "orchestration overhead: an auto-approved P0 / the same shape with no CodeBlue logic",
    "approval": "approval latency: last decision -> helm_rollback started, with incidents open",
    "capacity": "capacity: one worker's RSS with incidents open at once",
    "converter": "converter: a closed P0's report encoded and decoded (no goal; no dev server)",
    "storm": "alert storm: Alertmanager alerts through the API at 500/s",
    "scale": "scale curve: approval latency and worker RSS at 500, 2,000, 5,000 open (1 worker, then 2)",
}


@dataclass
class Figure:
    slug: str  # a key of FIGURES
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


def without_hourly_limits(world: Any) -> Any:
    """A benchmark rolls one release back again and again: the blast-radius policy's hourly rate
    (3 rollbacks per target) would withdraw most of them. Leases still apply."""
    from domain.blast_radius import BlastRadiusConfig

    world.config = world.config.model_copy(update={"blast_radius": BlastRadiusConfig(per_hour={}, max_concurrent=100)})
    return world
