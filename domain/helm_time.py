"""Helm's timestamps, parsed without I/O so workflows can compare them."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_FRACTION = re.compile(r"(\.\d{1,6})\d*")


def parse_helm_time(text: str) -> datetime | None:
    """RFC 3339 (with nanoseconds) or helm's `2006-01-02 15:04:05.999 -0700 MST`; None if neither."""
    s = text.strip()
    if not s:
        return None
    s = _FRACTION.sub(r"\1", s, count=1)
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        parts = s.split()
        if len(parts) < 3:
            return None
        try:
            dt = datetime.strptime(" ".join(parts[:3]), "%Y-%m-%d %H:%M:%S%z")
        except ValueError:
            try:
                dt = datetime.strptime(" ".join(parts[:3]), "%Y-%m-%d %H:%M:%S.%f %z")
            except ValueError:
                return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt
