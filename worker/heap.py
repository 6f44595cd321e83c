"""A CodeBlue process's garbage collector, set once it has started.

What a process imports before it works (the Temporal SDK, pydantic, the Kubernetes and AWS
clients, FastAPI) lives as long as it does: a few hundred thousand objects that every full
collection walked again, about 70 ms each time. Frozen, a collection walks only what the work
allocates, and a forked child never copies the inherited heap page by page to walk it.

The API and the drills also collect the young generation every 20,000 allocations instead of
700 (measured on the alert storm: README, "Performance"). The worker keeps the default: there
the larger young generation cost 2 % more memory for 1,000 open incidents (`--only capacity
--compare`), and its memory is the tighter goal.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000


def settle_heap(young_threshold: int | None = YOUNG_THRESHOLD) -> None:
    """Call when the process has imported what it needs and is about to serve; again after a
    later start-up step only freezes what that step added. None keeps the default thresholds."""
    # no collection first: it would walk every object once more to find a thousand or so of
    # start-up garbage (measured on a drill), which then stays, as the rest of what is frozen
    gc.freeze()
    gc.enable()  # a CLI turns it off while it imports (starters.cli.main)
    if young_threshold is not None:
        gc.set_threshold(young_threshold, 20, 20)
