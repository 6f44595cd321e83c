"""Where the repository is, for tests that read its files (README, deploy/, workflows/ ...):
one place, whatever folder a test sits in."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # tests/support/paths.py -> the repository root
HISTORIES = ROOT / "tests" / "histories"  # each release's recorded runs (tests.support.histories)
