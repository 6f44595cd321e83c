"""THREAT-MODEL.md stays true: every test it names exists, and every signal and update a
CodeBlue workflow has is in one of its rows (and is one the worker checks a proof for)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.support.paths import ROOT
from worker.identity import SIGNED_HANDLERS
from workflows.registry import WORKFLOWS

DOC = (ROOT / "THREAT-MODEL.md").read_text()


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name.startswith("test_")}


def test_every_test_the_table_names_exists():
    named = re.findall(r"`(tests/[\w/]+\.py)::(test_\w+)`", DOC)
    assert len(named) >= 30, named  # the table was read
    missing = [f"{f}::{t}" for f, t in named if t not in _tests_in(ROOT / f)]
    assert missing == []


def test_every_handler_is_in_a_row_and_checked():
    rows = [line for line in DOC.splitlines() if line.startswith("| ")]
    handlers = set()
    for w in WORKFLOWS:
        defn = getattr(w, "__temporal_workflow_definition")
        handlers |= {n for n in (*defn.signals, *defn.updates) if n}
    assert handlers <= SIGNED_HANDLERS, handlers - SIGNED_HANDLERS
    unlisted = [h for h in sorted(handlers) if not any(f"`{h}`" in r for r in rows)]
    assert unlisted == []
