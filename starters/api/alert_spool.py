"""A durable queue of accepted alerts on the API's own disk (SQLite, WAL, fsync per commit).

Requests that arrive together share one commit (group commit), so a storm costs one fsync per
few milliseconds instead of one Temporal round trip per alert. One process owns a spool file
at a time (an exclusive lock), so two forwarders never deliver the same rows.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starters.api.metrics import SpoolMetrics


class SpoolError(Exception):
    """The spool cannot be opened (path, permissions, another owner)."""


class SpoolFull(Exception):
    """More alerts wait than the configured maximum: the caller answers 503, the sender retries."""


@dataclass(frozen=True)
class SpooledAlert:
    row: int
    incident_id: str
    payload: bytes  # one Temporal payload (encrypted when a codec key is set), serialized


_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (row INTEGER PRIMARY KEY AUTOINCREMENT, incident_id TEXT NOT NULL,
                                   payload BLOB NOT NULL, accepted_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letters (row INTEGER PRIMARY KEY, incident_id TEXT NOT NULL, payload BLOB NOT NULL,
                                         error TEXT NOT NULL, at REAL NOT NULL);
"""


class AlertSpool:
    def __init__(self, path: str | Path, max_alerts: int = 100_000, metrics: SpoolMetrics | None = None) -> None:
        self.path = Path(path).expanduser().absolute()
        self.max_alerts = max_alerts
        self._metrics = metrics
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = open(os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600), "w")
        except OSError as e:
            raise SpoolError(f"alert spool {self.path}: {e.strerror or e}") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            raise SpoolError(f"alert spool {self.path} is in use by another process; "
                             "give each API process its own api.alert_spool") from None
        try:
            # Owner-only: SQLite gives its -wal and -shm files the database file's mode.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # acknowledged means on disk
            self._db.executescript(_SCHEMA)
            self._backlog = self._db.execute("SELECT count(*) FROM alerts").fetchone()[0]
            self._dead = self._db.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        except (sqlite3.Error, OSError) as e:
            self._release()
            raise SpoolError(f"alert spool {self.path}: {e}") from None
        # One thread owns the connection: every statement runs there, in order.
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alert-spool")
        self._pending: list[tuple[list[tuple[str, bytes]], asyncio.Future[None]]] = []
        self._kick: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._arrived: asyncio.Event | None = None
        self.closed = False
        if metrics is not None:
            metrics.capacity(max_alerts)
        self._report()

    def _report(self) -> None:
        """The gauges follow every change of the counts."""
        if self._metrics is not None:
            self._metrics.waiting(self._backlog)
            self._metrics.dead_letters(self._dead)

    @property
    def backlog(self) -> int:
        """Alerts accepted and not yet delivered (nor dead-lettered)."""
        return self._backlog

    async def append(self, items: list[tuple[str, bytes]]) -> None:
        """Returns once `items` (incident ID, payload) are committed to disk."""
        if self.closed:
            raise SpoolError("alert spool is closed")
        waiting = sum(len(rows) for rows, _ in self._pending)
        if self._backlog + waiting + len(items) > self.max_alerts:
            raise SpoolFull(f"{self._backlog + waiting} alerts wait for delivery (max {self.max_alerts})")
        self._start()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((items, done))
        assert self._kick is not None
        self._kick.set()
        await done

    async def peek(self, limit: int) -> list[SpooledAlert]:
        """The oldest undelivered alerts, in acceptance order."""
        rows = await self._run(lambda: self._db.execute(
            "SELECT row, incident_id, payload FROM alerts ORDER BY row LIMIT ?", (limit,)).fetchall())
        return [SpooledAlert(r, i, p) for r, i, p in rows]

    async def delivered(self, rows: list[int]) -> None:
        if rows:
            n = await self._run(lambda: self._delete(rows))
            self._backlog -= n
            self._report()

    async def dead_letter(self, alerts: list[SpooledAlert], error: str) -> None:
        """Keeps alerts Temporal refused for good out of the queue, and on disk for a person."""
        def move() -> tuple[int, int]:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR REPLACE INTO dead_letters (row, incident_id, payload, error, at) "
                                     "VALUES (?, ?, ?, ?, ?)", [(a.row, a.incident_id, a.payload, error, time.time()) for a in alerts])
                moved = self._delete_in_tx([a.row for a in alerts])
                return moved, self._db.execute("SELECT count(*) FROM dead_letters").fetchone()[0]

        if alerts:
            moved, self._dead = await self._run(move)  # not `-= await`: that reads the count before waiting
            self._backlog -= moved
            self._report()

    async def dead_letter_count(self) -> int:
        return await self._run(lambda: self._db.execute("SELECT count(*) FROM dead_letters").fetchone()[0])

    async def dead_letters(self, limit: int = 100) -> list[dict]:
        """What was refused and why; never the payload (it may carry patient data)."""
        rows = await self._run(lambda: self._db.execute(
            "SELECT row, incident_id, error, at FROM dead_letters ORDER BY row LIMIT ?", (limit,)).fetchall())
        return [{"row": r, "incident_id": i, "error": e, "at": a} for r, i, e, a in rows]

    async def requeue_dead_letters(self) -> int:
        """Once the cause is fixed (a codec key restored, say): back in the queue, in their order."""
        def move() -> int:
            with self._db:
                self._db.execute("BEGIN")
                n = self._db.execute("INSERT INTO alerts (incident_id, payload, accepted_at) "
                                     "SELECT incident_id, payload, at FROM dead_letters ORDER BY row").rowcount
                self._db.execute("DELETE FROM dead_letters")
                return n

        n = await self._run(move)
        self._backlog += n
        self._dead = 0
        self._report()
        if n:
            self.wake_event().set()
        return n

    async def close(self) -> None:
        """Stores what was already handed over, then lets go of the file."""
        if self.closed:
            return
        self.closed = True
        if self._writer and self._kick:
            self._kick.set()
            await self._writer
        self._io.shutdown(wait=True)
        self._release()

    # ---------------------------------------------------------------- internals
    def _start(self) -> None:
        if self._writer is None:
            self._kick = asyncio.Event()
            self._writer = asyncio.create_task(self._write_loop(), name="alert-spool-writer")

    def wake_event(self) -> asyncio.Event:
        """Set after each commit: the forwarder waits on it."""
        if self._arrived is None:
            self._arrived = asyncio.Event()
        return self._arrived

    async def _write_loop(self) -> None:
        assert self._kick is not None
        while True:
            await self._kick.wait()
            self._kick.clear()
            batch, self._pending = self._pending, []
            if batch:
                await self._commit(batch)
            if self.closed and not self._pending:
                return

    async def _commit(self, batch: list[tuple[list[tuple[str, bytes]], asyncio.Future[None]]]) -> None:
        rows = [item for items, _ in batch for item in items]
        try:
            await self._run(lambda: self._insert(rows))
        except Exception as e:  # noqa: BLE001 - every waiter hears it; nothing was acknowledged
            for _, done in batch:
                if not done.done():
                    done.set_exception(SpoolError(f"alert spool write failed: {e}"))
            return
        self._backlog += len(rows)
        self._report()
        for _, done in batch:
            if not done.done():
                done.set_result(None)
        self.wake_event().set()

    async def _run(self, fn):
        return await asyncio.get_running_loop().run_in_executor(self._io, fn)

    def _insert(self, rows: list[tuple[str, bytes]]) -> None:
        now = time.time()
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO alerts (incident_id, payload, accepted_at) VALUES (?, ?, ?)",
                                 [(i, p, now) for i, p in rows])

    def _delete(self, rows: list[int]) -> int:
        with self._db:
            self._db.execute("BEGIN")
            return self._delete_in_tx(rows)

    def _delete_in_tx(self, rows: list[int]) -> int:
        n = 0
        for i in range(0, len(rows), 500):
            chunk = rows[i:i + 500]
            n += self._db.execute(f"DELETE FROM alerts WHERE row IN ({','.join('?' * len(chunk))})", chunk).rowcount
        return n

    def _release(self) -> None:
        try:
            self._db.close()
        except Exception:  # noqa: BLE001 - never opened
            pass
        try:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
        finally:
            self._lock.close()

