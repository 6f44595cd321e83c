"""Client libraries imported on first use, so that importing an activity module costs little.

Workflows import the activity classes for typed references (`KubernetesActivities.pod_status`),
so every process that imports workflows imports these modules too: the CLI, a replayer, the
bench worker that holds 1,000 open incidents. Their clients (kubernetes, psycopg, boto3,
redis, slack_sdk, aiohttp, httpx: about 90 MiB) load only where an activity uses them.

Not `lazy_loader.load` (nor `importlib.util.LazyLoader` under it): those put a placeholder
module in `sys.modules`, and a Temporal Worker or Replayer reads every module's `__loader__`
to compute its default build ID, which loads every placeholder as soon as it starts. A
`Deferred` stays out of `sys.modules` until its first attribute read, then imports as usual.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class Deferred:
    """Stands for the module `name`; the first attribute read imports it (a plain import)."""

    __slots__ = ("_module", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<deferred module {self._name!r}{' (imported)' if self._module is not None else ''}>"


# every module some activity defers, in the order first asked for
DEFERRED: list[str] = []


def deferred(name: str) -> Any:
    """The module `name`, imported on first use. Typed `Any`: modules keep their real import
    under `if TYPE_CHECKING:` for mypy."""
    if name not in DEFERRED:
        DEFERRED.append(name)
    return Deferred(name)


def import_deferred() -> None:
    """Import now every module the imported activity modules defer: for a process that forks
    workers (sandbox.chaos_worker), so each child does not import them again."""
    for name in DEFERRED:
        importlib.import_module(name)
