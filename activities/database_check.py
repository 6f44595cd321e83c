"""Is the database reachable with this URL? CodeBlue's own check (connect and `SELECT 1`), shared
by the gateway's database check and the cutover's check of a restored database.

The result says host:port/db and why a connect failed; never the URL, the user or the password.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from typing import TYPE_CHECKING

from activities.deferred import deferred
from activities.kubernetes_calls import one_line
from domain.cluster import DbCheckResult

# Deferred (activities.deferred): workflows import the activity modules for their typed
# activity references; psycopg loads only where a check runs.
if TYPE_CHECKING:
    import psycopg
    import psycopg.conninfo
else:
    psycopg = deferred("psycopg")  # binds psycopg.conninfo when it loads


async def check_database(url: str, connect_timeout_seconds: float, *, source: str = "the database URL") -> DbCheckResult:
    """Connect with `url`, run `SELECT 1`; the result names host:port/db, never credentials."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return DbCheckResult(ok=False, detail=f"{source} is not a valid PostgreSQL connection string")
    password = str(params.get("password") or "")
    user = str(params.get("user") or "")
    where = f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}/{params.get('dbname') or user or 'postgres'}"
    # libpq counts connect_timeout in whole seconds and treats anything below 2 as 2.
    timeout = max(2, math.ceil(connect_timeout_seconds))
    t0 = time.perf_counter()
    try:
        async with asyncio.timeout(timeout + 2.0):
            conn = await psycopg.AsyncConnection.connect(url, connect_timeout=timeout, autocommit=True)
            async with conn:
                cur = await conn.execute("SELECT 1")
                row = await cur.fetchone()
        if not row or row[0] != 1:
            return DbCheckResult(ok=False, detail=f"connected to {where} but SELECT 1 returned {row!r}")
    except TimeoutError:
        return DbCheckResult(ok=False, detail=f"cannot connect to {where}: timed out after {timeout}s")
    except (psycopg.Error, OSError) as e:
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        reason = one_line(_redact(first, [url, password, f"{user}:{password}" if password else ""]))
        return DbCheckResult(ok=False, detail=f"cannot connect to {where}: {reason}")
    latency = round((time.perf_counter() - t0) * 1000.0, 2)
    return DbCheckResult(ok=True, latency_ms=latency, detail=f"connected to {where}; SELECT 1 ok")


def _redact(text: str, secrets: list[str]) -> str:
    for s in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(s, "***")
    text = re.sub(r"(\w+://)[^/@\s]*@", r"\1***@", text)  # user:password@ in any URL
    return re.sub(r"(?i)(password\s*=\s*)\S+", r"\1***", text)
