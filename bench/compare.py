"""What `bench.run` decides and prints without measuring anything: which figures `--only`
names, in which order `--compare` runs the two commits, and the side-by-side table and ratios.
Pure functions over the dicts `bench.run --json` writes (a figure: `slug`, `name`, `value`,
`unit`, `goal`, `met`, `detail`), so the tests need no dev server.
"""

from __future__ import annotations

import math

from bench.figures import FIGURES

THIS = "this"  # a side of a comparison: this checkout ...
REV = "rev"  # ... or the other commit

# Figures written before they had a slug (older commits' JSON), by how their name starts.
NAME_PREFIXES: tuple[tuple[str, str], ...] = (
    ("time to diagnostics", "diagnostics"),
    ("orchestration overhead", "overhead"),
    ("approval latency", "approval"),
    ("capacity", "capacity"),
    ("converter", "converter"),
    ("alert storm", "storm"),
)


class UsageError(ValueError):
    """A command line `bench.run` cannot act on: one line, exit code 2."""


def parse_only(values: list[str] | None) -> list[str]:
    """`--only`'s names (repeated, or comma-separated) in run order; every figure when none."""
    if not values:
        return list(FIGURES)
    names = {n.strip() for v in values for n in v.split(",") if n.strip()}
    unknown = sorted(names - FIGURES.keys())
    if unknown or not names:
        bad = ", ".join(repr(n) for n in unknown) or "''"
        raise UsageError(f"unknown figure {bad} for --only; valid: {', '.join(FIGURES)}")
    return [s for s in FIGURES if s in names]


def slug_of(figure: dict) -> str | None:
    """The figure's slug; for a figure written before slugs, read off its name."""
    if figure.get("slug"):
        return figure["slug"]
    name = figure.get("name") or ""
    return next((slug for prefix, slug in NAME_PREFIXES if name.startswith(prefix)), None)


def by_slug(figures: list[dict]) -> dict[str, dict]:
    """Each figure under its slug (the first of a slug wins), with `slug` filled in."""
    out: dict[str, dict] = {}
    for f in figures:
        slug = slug_of(f)
        if slug and slug not in out:
            out[slug] = {**f, "slug": slug}
    return out


def ratio(this: dict | None, other: dict | None) -> float | None:
    """this / other, when both have a number (every figure is lower-is-better)."""
    a = this.get("value") if this else None
    b = other.get("value") if other else None
    if a is None or b is None or math.isnan(a) or math.isnan(b) or b == 0:
        return None
    return a / b


def figures_in_help(text: str) -> set[str] | None:
    """The figures a commit's `bench.run --help` lists for `--only`; None when it has no --only."""
    if "--only" not in text:
        return None
    _, _, listing = text.partition("figures (--only NAME):")
    return {line.split()[0] for line in listing.splitlines() if line.startswith("  ") and line.strip()}


def schedule(slugs: list[str], rev_figures: set[str] | None) -> list[tuple[str, list[str] | None]]:
    """Which side runs which figures, in order (`None`: every figure the other commit has).

    When the other commit's `bench.run` knows `--only` (`rev_figures`: the names it takes),
    figure by figure, each run on a dev server of its own: the other commit first for the 1st,
    3rd, ... figure, this checkout first for the 2nd, 4th, ..., so that neither side always runs
    first (a machine that warms up, or whose other load comes and goes, favours neither), and a
    figure's two runs are back to back; a figure it does not have runs here only. Otherwise its
    whole run (every figure, on one dev server), then this checkout's."""
    if rev_figures is None:
        return [(REV, None), (THIS, list(slugs))]
    plan: list[tuple[str, list[str] | None]] = []
    for i, slug in enumerate(slugs):
        pair = [(REV, [slug]), (THIS, [slug])] if slug in rev_figures else [(THIS, [slug])]
        plan += pair if i % 2 == 0 else pair[::-1]
    return plan


def order_note(plan: list[tuple[str, list[str] | None]], rev: str) -> str:
    """The run order, in words, for the table and the JSON."""
    if any(part is None for _, part in plan):
        return (f"{rev} first (its bench.run has no --only: it ran every figure, on one dev server), "
                "then this checkout's figures")
    notes: dict[str, str] = {}
    for side, part in plan:
        slug = (part or [""])[0]
        if slug in notes:  # the pair's second run
            notes[slug] = notes[slug].removesuffix(" only") + " first"
        else:
            notes[slug] = f"{rev if side == REV else 'this checkout'} only"
    return "; ".join(f"{slug}: {note}" for slug, note in notes.items())


def comparison(this_doc: dict, rev_doc: dict, slugs: list[str], rev: str, order: str) -> dict:
    """`results.json`'s `compare` section: the other commit's figures and this/other per slug."""
    mine, theirs = by_slug(this_doc["figures"]), by_slug(rev_doc["figures"])
    return {
        "rev": rev, "commit": rev_doc.get("commit"), "quick": rev_doc.get("quick"), "order": order,
        "figures": [theirs[s] for s in slugs if s in theirs],
        "ratios": {s: ratio(mine.get(s), theirs.get(s)) for s in slugs},
    }


def _value(f: dict | None) -> str:
    if not f:
        return "not measured"
    v = f.get("value")
    return "n/a" if v is None or math.isnan(v) else f"{v:.3f} {f.get('unit', '')}".rstrip()


def table(this_doc: dict, compare: dict, slugs: list[str]) -> list[str]:
    """The side-by-side table's lines: figure, this checkout, the other commit, ratio, goal, met."""
    mine, theirs = by_slug(this_doc["figures"]), by_slug(compare["figures"])
    this_head = f"this ({this_doc.get('commit') or '?'})"
    rev_head = f"{compare['rev']} ({compare.get('commit') or '?'})"
    width = max(len(rev_head), 14)
    lines = [f"{'figure':58} {this_head:>14} {rev_head:>{width}} {'ratio':>6}  {'goal':12} met"]
    for slug in slugs:
        a, b = mine.get(slug), theirs.get(slug)
        name = (a or b or {}).get("name") or slug
        r = compare["ratios"].get(slug)
        met = {True: "yes", False: "NO", None: "-"}[(a or {}).get("met")]
        goal = (a or b or {}).get("goal") or "-"
        lines.append(f"{name[:58]:58} {_value(a):>14} {_value(b):>{width}} "
                     f"{'-' if r is None else f'{r:.2f}':>6}  {goal:12} {met}")
    lines.append(f"ratio: this / {compare['rev']}; every figure is lower-is-better, so below 1 is this checkout "
                 "ahead; met: this checkout against the goal")
    lines.append(f"order: {compare['order']}")
    return lines
