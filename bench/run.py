"""CodeBlue benchmarks: `python -m bench.run [--quick] [--only NAME ...] [--compare REV] [--json PATH]`.

Starts the embedded dev server (and, for time to diagnostics, the drill sandbox) itself, only
when a selected figure needs it, prints a table against the goals and writes JSON. With
--compare REV, the same figures for another commit in the same run (its own bench.run, in a
temporary git worktree), side by side: this checkout, REV, and their ratio.
Numbers, not pass/fail: nothing here is a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sys
from pathlib import Path

from bench.compare import REV, UsageError, comparison, order_note, parse_only, schedule, table
from bench.figures import FIGURES, Figure

DEFAULT_JSON = Path("bench/results.json")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; a name or commit it cannot use is one line on stderr and exit code 2."""
    ap = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="figures (--only NAME):\n" + "\n".join(f"  {slug:12} {what}" for slug, what in FIGURES.items()))
    ap.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    ap.add_argument("--only", action="append", metavar="NAME",
                    help="measure only this figure (repeat it, or comma-separate names); default: all")
    ap.add_argument("--compare", metavar="REV",
                    help="also measure the same figures at commit REV (its own bench.run, in a temporary "
                         "git worktree), in this run, and print both side by side with their ratio")
    ap.add_argument("--json", type=Path, default=None, metavar="PATH",
                    help=f"write the results here (default: {DEFAULT_JSON}, but with --only no file "
                         "unless given one: a partial run never overwrites the full one)")
    a = ap.parse_args(argv)
    try:
        a.figures = parse_only(a.only)
        if a.compare:
            from bench.revision import resolve

            a.rev_commit, a.rev_short = resolve(a.compare)
    except UsageError as e:
        print(f"bench.run: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    if a.json is None and not a.only:
        a.json = DEFAULT_JSON
    return a


def results(figures: list[Figure], quick: bool, commit: str) -> dict:
    return {
        "commit": commit, "quick": quick, "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "figures": [f.__dict__ for f in figures],
    }


def print_table(figures: list[dict]) -> None:
    print(f"\n{'figure':58} {'value':>10} {'unit':5} {'goal':>12}  met   detail")
    for f in figures:
        v = "n/a" if f["value"] is None else f"{f['value']:10.3f}"
        met = {True: "yes", False: "NO", None: "-"}[f["met"]]
        print(f"{f['name']:58} {v:>10} {f['unit']:5} {f['goal']:>12}  {met:4}  {json.dumps(f['detail'])}")


async def measure(a: argparse.Namespace) -> dict:
    """This checkout's figures (and with --compare, REV's beside them): results.json's dict."""
    from bench.measure import run_figures  # the heavy imports, only once there is work
    from bench.revision import figures, run_bench, short_head, worktree

    if not a.compare:
        return results(await run_figures(a.figures, a.quick), a.quick, short_head())

    mine: list[Figure] = []
    theirs: list[dict] = []
    rev_doc: dict = {}
    print(f"comparing with {a.compare} ({a.rev_short}): its bench.run in a temporary worktree", flush=True)
    with worktree(a.rev_commit) as tree:
        plan = schedule(a.figures, await figures(tree))
        order = order_note(plan, a.compare)
        print(f"order: {order}", flush=True)
        for i, (side, slugs) in enumerate(plan):
            if side == REV:
                rev_doc = await run_bench(tree, a.compare, a.quick, slugs, tree.parent / f"results-{i}.json")
                theirs += rev_doc["figures"]
            else:
                mine += await run_figures(slugs or [], a.quick)
    doc = results(mine, a.quick, short_head())
    doc["compare"] = comparison(doc, {"commit": a.rev_short, **rev_doc, "figures": theirs}, a.figures, a.compare, order)
    return doc


async def main(a: argparse.Namespace) -> int:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)  # cleans up as Ctrl-C does
    doc = await measure(a)
    if a.compare:
        print("\n" + "\n".join(table(doc, doc["compare"], a.figures)))
    else:
        print_table(doc["figures"])
    if a.json:
        a.json.write_text(json.dumps(doc, indent=2))
        print(f"\nwrote {a.json}")
    return 0


if __name__ == "__main__":
    args = parse_args()
    from worker.temporal import quiet_core_logs

    quiet_core_logs()
    try:
        code = asyncio.run(main(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("bench.run: interrupted", file=sys.stderr, flush=True)
        code = 130
    os._exit(code)  # the SDK can abort at interpreter exit after a worker ran
