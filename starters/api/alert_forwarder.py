"""Delivers spooled alerts to their incidents: per key in acceptance order, many alerts per signal.

A row leaves the spool only once Temporal has its signal; after a crash a batch may be sent
again, and the incident ignores what it already recorded (`AlertLedger`). Temporal being
down only delays delivery (backoff); an alert Temporal refuses for good (invalid argument)
or that cannot be decoded goes to the spool's dead letters, never blocking the keys behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.service import RPCError, RPCStatusCode

from domain.alerts import MAX_BATCH, AlertBatch, AlertNotice
from starters.api.alert_spool import AlertSpool, SpooledAlert
from starters.api.alerts import BATCH_SIGNAL, joinable_id, sender_of, signal_if_open, signal_with_start
from starters.api.problems import Problem
from worker.identity import acting_as

log = logging.getLogger("codeblue.api.alerts")


class _Refused(Exception):
    """Delivery of these alerts can never succeed: dead-letter them."""


class AlertForwarder:
    def __init__(self, spool: AlertSpool, client: Callable[[], Awaitable[Client]], task_queue: str,
                 converter: DataConverter, *, read: int = 5000, parallel: int = 16, round_seconds: float = 1.0,
                 first_backoff: float = 0.5, max_backoff: float = 30.0) -> None:
        self.spool, self.client, self.task_queue, self.converter = spool, client, task_queue, converter
        self.read, self.parallel = read, parallel
        # Rounds start at most this often: in a storm a key's alerts gather into one signal
        # (one workflow task) per round; after a quiet spell the first alert goes at once.
        self.round_seconds = round_seconds
        self.first_backoff, self.max_backoff = first_backoff, max_backoff
        self._running: OrderedDict[str, str] = OrderedDict()  # key incident ID -> the open incident it joins
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="alert-forwarder")

    async def stop(self, drain_seconds: float = 0.0) -> None:
        """Delivers what it can within `drain_seconds` (a rolling restart), then stops; the
        rest stays in the spool for the next start."""
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if drain_seconds > 0 and self.spool.backlog:
            try:
                async with asyncio.timeout(drain_seconds):
                    while self.spool.backlog and await self.drain_once():
                        pass
            except Exception:  # noqa: BLE001 - timeout or Temporal down: the spool keeps the rest
                pass
        if self.spool.backlog:
            log.warning("stopping with %d alerts in the spool; delivered on the next start", self.spool.backlog)

    async def drain_once(self) -> bool:
        """Delivers what the spool holds now; False when something must be retried later."""
        wake = self.spool.wake_event()
        wake.clear()  # before reading: a commit from here on wakes the next round
        alerts = await self.spool.peek(self.read)
        if not alerts:
            return True
        client = await self.client()
        groups: dict[str, list[SpooledAlert]] = {}
        for a in alerts:
            groups.setdefault(a.incident_id, []).append(a)
        gate = asyncio.Semaphore(self.parallel)

        async def key(iid: str, rows: list[SpooledAlert]) -> tuple[list[int], bool]:
            async with gate:
                return await self._deliver(client, iid, rows)

        outcomes = await asyncio.gather(*(key(iid, rows) for iid, rows in groups.items()))
        done = [row for rows, _ in outcomes for row in rows]
        await self.spool.delivered(done)
        return all(ok for _, ok in outcomes)

    async def _run(self) -> None:
        backoff = self.first_backoff
        wake = self.spool.wake_event()
        loop = asyncio.get_running_loop()
        last = -self.round_seconds
        while True:
            await asyncio.sleep(max(0.0, last + self.round_seconds - loop.time()))
            last = loop.time()
            try:
                ok = await self.drain_once()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - Temporal unreachable and the like: keep the alerts, retry
                log.warning("alert delivery paused (%s alerts waiting): %s", self.spool.backlog, _brief(e))
                ok = False
            if not ok:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            backoff = self.first_backoff
            if self.spool.backlog == 0:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for can lose a cancel that
                # lands as `wake` is set, and this loop would outlive the API's shutdown
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5):
                        await wake.wait()

    async def _deliver(self, client: Client, iid: str, rows: list[SpooledAlert]) -> tuple[list[int], bool]:
        """Chunks in order; stops at the first chunk that must wait, so order within a key holds."""
        done: list[int] = []
        for i in range(0, len(rows), MAX_BATCH):
            chunk = rows[i:i + MAX_BATCH]
            notices, bad = await self._decode(chunk)
            if bad:
                log.error("%d alerts for %s moved to dead letters: cannot decode", len(bad), iid)
                await self.spool.dead_letter(bad, "cannot decode (codec key gone, or not a payload)")
                chunk = [a for a in chunk if a not in bad]
                if not chunk:
                    continue
            try:
                await self._send(client, iid, notices)
            except _Refused as e:
                log.error("%d alerts for %s moved to dead letters: %s", len(chunk), iid, e)
                await self.spool.dead_letter(chunk, str(e))
                continue
            except RPCError as e:
                log.warning("alerts for %s wait: Temporal answered %s", iid, e.status.name if e.status else "?")
                return done, False
            except Exception as e:  # noqa: BLE001 - connection trouble: retry later
                log.warning("alerts for %s wait: %s", iid, _brief(e))
                return done, False
            done.extend(a.row for a in chunk)
        return done, True

    async def _decode(self, chunk: list[SpooledAlert]) -> tuple[list[AlertNotice], list[SpooledAlert]]:
        """The notices, and the rows that cannot be read (one bad row spoils no others)."""
        notices: list[AlertNotice] = []
        bad: list[SpooledAlert] = []
        for a in chunk:
            try:
                notices.extend(await self.converter.decode([Payload.FromString(a.payload)], [AlertNotice]))
            except Exception:  # noqa: BLE001 - e.g. the codec key is gone; never echo the payload
                bad.append(a)
        return notices, bad

    async def _send(self, client: Client, iid: str, notices: list[AlertNotice]) -> None:
        batch = AlertBatch(notices=notices)
        opener = next((n for n in notices if n.status == "firing"), None)
        try:
            target = self._running.get(iid)
            if target is not None:
                # A plain signal costs less than signal-with-start; a closed incident
                # answers NOT_FOUND and the batch takes the long way below.
                try:
                    with acting_as(sender_of(batch)):
                        await client.get_workflow_handle(target).signal(BATCH_SIGNAL, batch)
                    self._running.move_to_end(iid)
                    return
                except RPCError as e:
                    if e.status != RPCStatusCode.NOT_FOUND:
                        raise
                    del self._running[iid]
            # the key's incident, or an alternate when a foreign workflow holds its ID
            target = await joinable_id(client, notices[0].dedup_key, self.task_queue)
            if opener:
                await signal_with_start(client, target, opener, self.task_queue, BATCH_SIGNAL, batch)
            elif not await signal_if_open(client, target, BATCH_SIGNAL, batch):
                return
            self._running[iid] = target
            if len(self._running) > 10_000:
                self._running.popitem(last=False)
        except RPCError as e:
            if e.status == RPCStatusCode.INVALID_ARGUMENT:
                raise _Refused(f"Temporal refused the batch ({e.status.name})") from None
            raise


def _brief(e: BaseException) -> str:
    """Connection trouble in a line; for anything else only the type, since a message may
    quote an alert's text."""
    if not isinstance(e, (OSError, RuntimeError, RPCError, Problem)) or not str(e):
        return type(e).__name__
    return f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
