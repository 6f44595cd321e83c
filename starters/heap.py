"""The API's garbage collector, set for its steady state.

What `codeblue api` imports before it serves (FastAPI, pydantic, the Temporal SDK) lives as long
as it does: a few hundred thousand objects that every full collection walked again while
requests waited. Frozen, a collection walks only what requests allocate; and the young
generation is collected every 20,000 allocations, not 700. Measured on the alert storm (README,
"Performance"). Not on the worker: there it cost 2 % more memory for 1,000 open incidents
(`--only capacity --compare`), and its memory is the tighter goal.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000


def settle_heap() -> None:
    """Call once, when the process has imported what it needs and is about to serve."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 20, 20)
