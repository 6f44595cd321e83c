"""`bench.run`'s command line and its side-by-side table, without measuring anything: an
unknown figure name is one line and exit code 2, and the table and ratios match figures across
commits by slug (an older commit's JSON, which has none, by the start of each name)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.compare import (
    REV,
    THIS,
    UsageError,
    comparison,
    figures_in_help,
    order_note,
    parse_only,
    schedule,
    table,
)
from bench.figures import FIGURES
from tests.support.paths import ROOT

HELP = """usage: python -m bench.run [-h] [--quick] [--only NAME] [--compare REV] [--json PATH]

options:
  --only NAME    measure only this figure (repeat it, or comma-separate
                 names); default: all

figures (--only NAME):
  diagnostics  time to diagnostics: P0 start -> 'Immediate actions complete'
  converter    converter: a closed P0's report encoded and decoded
"""


def test_an_unknown_figure_is_one_error_line_and_exit_code_2():
    done = subprocess.run([sys.executable, "-m", "bench.run", "--only", "nope"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "'nope'" in lines[0] and all(slug in lines[0] for slug in FIGURES)
    assert done.stdout == ""


def test_help_lists_every_figure():
    done = subprocess.run([sys.executable, "-m", "bench.run", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert figures_in_help(done.stdout) == set(FIGURES)  # what --compare reads off another commit


def test_only_names_run_in_the_benchmarks_order():
    assert parse_only(None) == list(FIGURES)
    assert parse_only(["storm", "converter"]) == ["converter", "storm"]
    assert parse_only(["storm,diagnostics", "storm"]) == ["diagnostics", "storm"]
    with pytest.raises(UsageError, match="'nope'.*valid: diagnostics, overhead"):
        parse_only(["converter,nope"])


def test_help_names_the_figures_another_commit_has():
    assert figures_in_help(HELP) == {"diagnostics", "converter"}
    assert figures_in_help("usage: run.py [-h] [--quick] [--json JSON]") is None  # before --only


def test_neither_side_always_runs_first():
    every = set(FIGURES)
    assert schedule(["approval", "converter", "storm"], every) == [
        (REV, ["approval"]), (THIS, ["approval"]),
        (THIS, ["converter"]), (REV, ["converter"]),
        (REV, ["storm"]), (THIS, ["storm"]),
    ]
    plan = schedule(["approval", "converter", "storm"], every - {"storm"})  # no storm at that commit
    assert plan[-1] == (THIS, ["storm"])
    assert order_note(plan, "HEAD~1") == (
        "approval: HEAD~1 first; converter: this checkout first; storm: this checkout only")
    # an older bench.run runs every figure: all of it first, then this checkout's selection
    assert schedule(["converter"], None) == [(REV, None), (THIS, ["converter"])]


def _fig(name: str, value: float | None, unit: str, goal: str, met: bool | None, slug: str | None = None) -> dict:
    f: dict = {"name": name, "value": value, "unit": unit, "goal": goal, "met": met, "detail": {}}
    return f if slug is None else {"slug": slug, **f}


def test_ratios_and_table_match_an_older_json_by_name():
    this = {"commit": "bbbbbbb", "quick": True, "figures": [
        _fig("approval latency p99 (50 open)", 60.0, "ms", "<= 250 ms", True, "approval"),
        _fig("converter: report encode+decode (no goal)", 150.0, "us", "-", None, "converter"),
        _fig("alert storm ingest p99 (1000 alerts, 100 keys, 500/s)", 80.0, "ms", "<= 50 ms", False, "storm"),
    ]}
    older = {"commit": "aaaaaaa", "quick": True, "figures": [  # written before figures had slugs
        _fig("time to diagnostics (median)", 0.3, "s", "<= 1 s", True),
        _fig("approval latency p99 (50 open)", 40.0, "ms", "<= 250 ms", True),
        _fig("capacity: worker RSS with 100 open", 150.0, "MiB", "<= 400 MiB", True),
        _fig("converter: report encode+decode (no goal)", 100.0, "us", "-", None),
        # the storm is not in it: "not measured", no ratio
    ]}
    slugs = ["approval", "converter", "storm"]
    cmp = comparison(this, older, slugs, "v0.9", "v0.9 first")
    assert cmp["commit"] == "aaaaaaa" and cmp["rev"] == "v0.9"
    assert [f["slug"] for f in cmp["figures"]] == ["approval", "converter"]  # only the selected, slugged
    assert cmp["ratios"] == {"approval": 1.5, "converter": 1.5, "storm": None}

    lines = table(this, cmp, slugs)
    assert "this (bbbbbbb)" in lines[0] and "v0.9 (aaaaaaa)" in lines[0]
    approval, converter, storm = lines[1:4]
    assert approval.startswith("approval latency p99 (50 open)")
    assert "60.000 ms" in approval and "40.000 ms" in approval and " 1.50 " in approval
    assert approval.rstrip().endswith("yes")
    assert "150.000 us" in converter and "100.000 us" in converter and converter.rstrip().endswith("-")
    assert "not measured" in storm and storm.rstrip().endswith("NO")
    assert any(line.startswith("order: v0.9 first") for line in lines[4:])


def test_a_missing_or_zero_value_has_no_ratio():
    this = {"commit": "b", "figures": [_fig("capacity: x", None, "MiB", "", None, "capacity"),
                                       _fig("converter: x", 5.0, "us", "-", None, "converter")]}
    other = {"commit": "a", "figures": [_fig("capacity: x", 100.0, "MiB", "", True, "capacity"),
                                        _fig("converter: x", 0.0, "us", "-", None, "converter")]}
    assert comparison(this, other, ["capacity", "converter"], "r", "")["ratios"] == {"capacity": None, "converter": None}


def test_the_scale_curve_says_how_each_figure_grows_per_worker_count():
    from bench.scale import growth

    def row(workers: int, n: int, p99: float, rss: float) -> dict:
        return {"workers": workers, "open": n, "approval_p99_ms": p99, "rss_mib": rss}

    rows = [row(1, 500, 20, 100), row(1, 2000, 40, 250), row(1, 5000, 100, 250), row(2, 500, 10, 200), row(2, 2000, 10, 300)]
    assert growth(rows) == [
        {"workers": 1, "open": "500 -> 2000", "open_x": 4.0, "approval_p99_x": 2.0, "rss_x": 2.5},
        {"workers": 1, "open": "2000 -> 5000", "open_x": 2.5, "approval_p99_x": 2.5, "rss_x": 1.0},
        {"workers": 2, "open": "500 -> 2000", "open_x": 4.0, "approval_p99_x": 1.0, "rss_x": 1.5},
    ]  # never from one worker count's last size to the next count's first
