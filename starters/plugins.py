"""Parts of `codeblue` that live outside the product: the drill world (`sandbox/`, installed
with the `[drill]` extra) adds `codeblue drill` and the worlds of `codeblue dev --sandbox`
through entry points. No product module imports it, and the production image, which holds
none of it, still starts: a missing part is one line saying how to get it."""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

from starters.errors import CodeBlueError

COMMANDS = "codeblue.commands"  # name: the command; value: a register(app) that adds it
SANDBOXES = "codeblue.sandboxes"  # "environment": an async context manager, scenario name -> world
DRILL_WORLD = ("the drill world (sandbox/ and the [drill] extra), which this installation does not have: "
               "run it from a CodeBlue checkout (`make drill`, or `pip install -e '.[drill]'`)")


def _entry(group: str, name: str) -> EntryPoint | None:
    found = [ep for ep in entry_points(group=group) if ep.name == name]
    return found[0] if found else None


def register_commands(app: Any) -> dict[str, str]:
    """Adds every installed plugin command to `app`; returns the ones that could not load
    (their name and why), so `codeblue NAME` can say so instead of "No such command"."""
    missing: dict[str, str] = {}
    for ep in entry_points(group=COMMANDS):
        try:
            register = ep.load()
        except ImportError:  # its metadata is here, its code is not (the production image)
            missing[ep.name] = f"`codeblue {ep.name}` needs {DRILL_WORLD}"
            continue
        register(app)
    return missing


def sandbox_environment(scenario: str) -> Any:
    """The drill world's sandbox for `scenario`, to enter with `async with`."""
    ep = _entry(SANDBOXES, "environment")
    if ep is None:
        raise CodeBlueError(f"--sandbox needs {DRILL_WORLD}")
    try:
        factory = ep.load()
    except ImportError:
        raise CodeBlueError(f"--sandbox needs {DRILL_WORLD}") from None
    return factory(scenario)
