"""Token-bucket rate limiting per principal, in bounded memory."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class RateLimiter:
    """`allow(key)` spends one token from key's bucket; at most `max_keys` buckets are kept
    (least recently used are dropped, which only ever forgives a sender)."""

    def __init__(self, per_second: float, burst: int, max_keys: int = 1024, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.max_keys, self.clock = per_second, float(burst), max_keys, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, key: str, cost: float = 1.0) -> bool:
        now = self.clock()
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        ok = tokens >= cost
        if ok:
            tokens -= cost
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return ok

    def reserve(self, key: str, max_wait: float, cost: float = 1.0) -> float | None:
        """Spends one token now, borrowing against the bucket's refill: the seconds to wait
        before acting (0 with tokens in hand), or None when that wait would pass `max_wait`
        (nothing is spent then). Paces a burst instead of refusing it."""
        now = self.clock()
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        wait = max(0.0, (cost - tokens) / self.rate)
        if wait <= max_wait:
            tokens -= cost
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait if wait <= max_wait else None

    def retry_after(self) -> int:
        return max(1, int(1 / self.rate + 0.999))

    def __len__(self) -> int:
        return len(self._buckets)
