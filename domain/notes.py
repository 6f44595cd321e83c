"""Responders' notes as they reach an incident: listed up to a cap, rate-limited per actor,
and counted beyond, so a chatty incident cannot grow its report without bound. Deterministic
(workflow state; times are the timeline's seconds)."""

from __future__ import annotations

from typing import Any

WINDOW_SECONDS = 60.0


class NoteLedger:
    def __init__(self, listed_max: int = 60, per_actor_per_minute: int = 10) -> None:
        self.listed_max, self.per_minute = listed_max, per_actor_per_minute
        self.received = self.listed = self.unlisted = self.rate_limited = 0
        self.recent: dict[str, list[float]] = {}  # actor -> times of their notes in the window
        self.warned: list[str] = []  # actors already told (once) on the timeline

    def admit(self, actor: str, t: float) -> str:
        """"list", "unlisted" (past the cap: counted) or "rate_limited" (dropped: counted)."""
        self.received += 1
        times = [x for x in self.recent.get(actor, []) if t - x < WINDOW_SECONDS]
        if len(times) >= self.per_minute:
            self.recent[actor] = times
            self.rate_limited += 1
            return "rate_limited"
        times.append(t)
        self.recent[actor] = times
        if self.listed < self.listed_max:
            self.listed += 1
            return "list"
        self.unlisted += 1
        return "unlisted"

    def first_warning(self, actor: str) -> bool:
        if actor in self.warned:
            return False
        self.warned.append(actor)
        return True

    def counts(self) -> dict[str, int]:
        return {"received": self.received, "listed": self.listed, "unlisted": self.unlisted,
                "rate_limited": self.rate_limited}

    def to_state(self) -> dict[str, Any]:
        return {**self.counts(), "recent": self.recent, "warned": self.warned[-200:]}

    def restore(self, st: dict[str, Any]) -> None:
        for k in ("received", "listed", "unlisted", "rate_limited"):
            setattr(self, k, int(st.get(k, 0)))
        self.recent = {a: list(v) for a, v in (st.get("recent") or {}).items()}
        self.warned = list(st.get("warned") or [])
