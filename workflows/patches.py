"""Every `workflow.patched` / `workflow.deprecate_patch` ID in CodeBlue, with its lifecycle.

Only an AUTO_UPGRADE workflow (post-incident: it moves to each new build) may branch on a
patch; a PINNED one finishes on the build that started it and changes without one. A patch
goes through three releases, as Temporal's `patching/` sample does:

1. `patched(ID)`: the new code, the old kept for runs started before (`since` = the release);
2. `deprecate_patch(ID)` once `codeblue upgrade check` says no open run started before
   `since` (`deprecated` = that release);
3. the call removed, and its entry here, once no open run started before `deprecated`.

`tests/workflows/test_upgrade_policy.py` holds the code to this table. Release 1.0 is the baseline:
no patch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Patch:
    since: str  # the release whose code added the `patched` branch
    why: str
    deprecated: str | None = None  # the release that turned it into `deprecate_patch`


PATCHES: dict[str, Patch] = {}
