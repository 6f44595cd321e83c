"""The alert spool: an alert the API acknowledged is never lost, reaches its incident in
order and once, and Temporal being down or a bad alert blocks nothing."""

from __future__ import annotations

import asyncio
import functools
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import Worker

from activities.http_client import tls_context
from domain.alerts import AlertLedger, AlertNotice
from domain.config import AlertRule
from domain.incident import TimelineKind
from sandbox.memory_world import World, incident_worker
from starters.api.alert_forwarder import AlertForwarder
from starters.api.alert_spool import AlertSpool, SpoolError, SpoolFull
from starters.api.alerts import incident_id_for
from starters.ports import free_port
from tests.support.api import api_config, api_on, auth, wait_report
from tests.support.polling import until
from worker.temporal import data_converter, replayer
from workflows.incident_response import IncidentResponseWorkflow


def notice(name: str, status: str = "firing", fingerprint: str = "", summary: str = "") -> AlertNotice:
    return AlertNotice(dedup_key=f"alertname={name},service=api-gateway", alertname=name, status=status,
                       severity="P3", service="api-gateway", summary=summary, fingerprint=fingerprint,
                       ingest_id=uuid.uuid4().hex)


async def rows_for(notices: list[AlertNotice]) -> list[tuple[str, bytes]]:
    payloads = await data_converter().encode(notices)
    return [(incident_id_for(n.dedup_key), p.SerializeToString()) for n, p in zip(notices, payloads, strict=True)]


def alert_events(rep) -> list[str]:
    return [e.event for e in rep.timeline if e.kind == TimelineKind.ALERT]


# ---------------------------------------------------------------- the file itself
async def test_acknowledged_alerts_survive_a_restart_in_order(tmp_path):
    spool = AlertSpool(tmp_path / "s.sqlite3")
    await spool.append([("A", b"1"), ("B", b"2")])
    await spool.append([("A", b"3")])
    await spool.close()  # the API stops (or dies) before delivering
    again = AlertSpool(tmp_path / "s.sqlite3")
    try:
        assert again.backlog == 3
        assert [(a.incident_id, a.payload) for a in await again.peek(10)] == [("A", b"1"), ("B", b"2"), ("A", b"3")]
        await again.delivered([a.row for a in await again.peek(1)])
        assert again.backlog == 2 and [a.payload for a in await again.peek(10)] == [b"2", b"3"]
    finally:
        await again.close()


async def test_a_second_owner_is_refused(tmp_path):
    spool = AlertSpool(tmp_path / "s.sqlite3")
    try:
        with pytest.raises(SpoolError, match="in use by another process"):
            AlertSpool(tmp_path / "s.sqlite3")
    finally:
        await spool.close()
    AlertSpool(tmp_path / "s.sqlite3")  # free again once closed


async def test_a_full_spool_refuses_instead_of_dropping(tmp_path):
    spool = AlertSpool(tmp_path / "s.sqlite3", max_alerts=100)
    try:
        await spool.append([("A", b"x")] * 100)
        with pytest.raises(SpoolFull):
            await spool.append([("A", b"y")])
        assert spool.backlog == 100
    finally:
        await spool.close()


def test_the_ledger_records_changes_not_repeats():
    led = AlertLedger(limit=3)
    fire, again, gone = notice("X", fingerprint="f1"), notice("X", fingerprint="f1"), notice("X", "resolved", "f1")
    assert [led.is_new(n) for n in (fire, again, gone, notice("X", fingerprint="f1"))] == [True, False, True, True]
    assert led.repeats == 1 and led.received == 4
    no_print = notice("Y")
    assert led.is_new(no_print) and not led.is_new(no_print)  # a redelivered batch: same ingest ID
    for i in range(10):
        led.is_new(notice("Z", fingerprint=f"z{i}"))
    assert len(led.status) == 3  # bounded, whatever the storm


async def test_a_storm_on_one_key_is_listed_up_to_a_cap_then_counted(dev_env, tmp_path):
    name = f"Flood{uuid.uuid4().hex[:6]}"
    async with forwarding(dev_env, tmp_path) as (spool, fwd):
        storm = [notice(name, fingerprint=f"f{i}") for i in range(510)]
        await spool.append(await rows_for(storm + storm[:20]))  # 20 re-sent
        assert await fwd.drain_once()
        h = handle(dev_env, name)
        rep = await h.query(IncidentResponseWorkflow.status)
        assert sum(e.event == f"Alert firing: {name}" for e in rep.timeline) == 500
        assert "Alert flood: further alerts are counted, not listed" in [e.event for e in rep.timeline]
        assert rep.alerts == {"received": 530, "listed": 500, "unlisted": 10, "repeats": 20}
        await h.terminate("test done")


# ---------------------------------------------------------------- delivery (real dev server)
class FlakyTemporal:
    """The forwarder's client getter: unreachable until `up` is set."""

    def __init__(self, client: Client) -> None:
        self.client, self.up, self.calls = client, False, 0

    async def __call__(self) -> Client:
        self.calls += 1
        if not self.up:
            raise RuntimeError("cannot reach Temporal: connection refused")
        return self.client


@asynccontextmanager
async def forwarding(env, tmp_path) -> AsyncIterator[tuple[AlertSpool, AlertForwarder]]:
    """A spool, its forwarder (Temporal up) and a worker on a fresh task queue."""
    tq = f"spool-{uuid.uuid4().hex[:6]}"
    spool = AlertSpool(tmp_path / "s.sqlite3")
    temporal = FlakyTemporal(env.client)
    temporal.up = True
    try:
        async with Worker(env.client, task_queue=tq, **incident_worker(World())):
            yield spool, AlertForwarder(spool, temporal, tq, data_converter())
    finally:
        await spool.close()


def handle(env, name: str):
    return env.client.get_workflow_handle(incident_id_for(f"alertname={name},service=api-gateway"))


async def test_alerts_accepted_while_temporal_is_down_arrive_once_it_is_back(dev_env, tmp_path):
    tq = f"spool-{uuid.uuid4().hex[:6]}"
    name = f"Down{uuid.uuid4().hex[:6]}"
    spool = AlertSpool(tmp_path / "s.sqlite3")
    temporal = FlakyTemporal(dev_env.client)
    fwd = AlertForwarder(spool, temporal, tq, data_converter(), first_backoff=0.05, max_backoff=0.2, round_seconds=0.05)
    iid = incident_id_for(f"alertname={name},service=api-gateway")
    try:
        async with Worker(dev_env.client, task_queue=tq, **incident_worker(World())):
            fwd.start()
            await spool.append(await rows_for([notice(name, fingerprint="a", summary="first"),
                                               notice(name, fingerprint="b", summary="second")]))
            await until(lambda: temporal.calls >= 3, what="three tries", timeout=60)  # it tried, and keeps trying
            assert spool.backlog == 2
            await spool.append(await rows_for([notice(name, "resolved", fingerprint="a", summary="first ends")]))
            temporal.up = True
            await until(lambda: not spool.backlog, what="the spool drained", timeout=60)
            h = dev_env.client.get_workflow_handle(iid)
            rep = await h.query(IncidentResponseWorkflow.status)
            assert alert_events(rep) == [f"Alert firing: {name}", f"Alert firing: {name}",
                                         f"Alert resolved (recorded; the IC resolves): {name}"]
            assert [e.result for e in rep.timeline if e.kind == TimelineKind.ALERT] == ["first", "second", "first ends"]
            assert rep.status == "open"
            history = await h.fetch_history()
            signals = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED]
            assert [s.workflow_execution_signaled_event_attributes.signal_name for s in signals] == ["add_alerts"]
            await h.terminate("test done")
        replay = await replayer([IncidentResponseWorkflow]).replay_workflow(
            await h.fetch_history(), raise_on_replay_failure=False)
        assert replay.replay_failure is None, replay.replay_failure
    finally:
        await fwd.stop()
        await spool.close()


async def test_a_redelivered_batch_is_recorded_once_and_a_bad_alert_blocks_no_one(dev_env, tmp_path):
    good, bad = f"Good{uuid.uuid4().hex[:6]}", f"Bad{uuid.uuid4().hex[:6]}"
    rows = await rows_for([notice(good, fingerprint="g1"), notice(good)])
    async with forwarding(dev_env, tmp_path) as (spool, fwd):
        # the API died after delivering and before deleting: the same rows come again
        good_id = incident_id_for(f"alertname={good},service=api-gateway")
        await spool.append([(incident_id_for(f"alertname={bad},service=api-gateway"), b"not a payload"),
                            rows[0], (good_id, b"garbled"), rows[1]])  # a bad row amid a key's good ones
        assert await fwd.drain_once()
        await spool.append(rows)
        assert await fwd.drain_once()
        assert spool.backlog == 0 and await spool.dead_letter_count() == 2
        h = handle(dev_env, good)
        assert alert_events(await h.query(IncidentResponseWorkflow.status)) == [f"Alert firing: {good}"] * 2
        await h.terminate("test done")


# ---------------------------------------------------------------- through the API
async def test_the_api_answers_once_spooled_and_one_incident_per_key(dev_env, tmp_path):
    cfg = api_config(alerts_per_second=10_000, alerts_burst=10_000, alert_spool=str(tmp_path / "alerts.sqlite3"),
                     alert_rules=[AlertRule(match={"severity": "warning"}, severity="P3")])
    run = uuid.uuid4().hex[:6]
    keys = [f"Spool{run}{i}" for i in range(3)]

    def hook(n: int) -> dict:
        return {"version": "4", "status": "firing", "alerts": [
            {"status": "firing", "labels": {"alertname": keys[(n * 4 + j) % 3], "service": "api-gateway", "severity": "warning"},
             "annotations": {"summary": f"alert {n}-{j}"}, "fingerprint": f"{run}-{n}-{j}"} for j in range(4)]}

    async with api_on(dev_env.client, cfg) as (http, world, _):
        rs = await asyncio.gather(*[http.post("/alerts/alertmanager", headers=auth("am"), json=hook(n)) for n in range(150)])
        assert all(r.status_code == 200 for r in rs), [r.text for r in rs if r.status_code != 200][:3]
        body = rs[0].json()
        assert body["delivery"] == "queued" and sum(i["queued"] for i in body["incidents"]) == 4
        ids = {i["incident_id"] for r in rs for i in r.json()["incidents"]}
        world.handles.extend(ids)
        assert len(ids) == 3
        for iid in ids:
            # the answer came before delivery: that is the point
            await until(functools.partial(http.get, f"/incidents/{iid}", headers=auth("vic")), lambda r: r.status_code != 404,
                        "the incident delivered", timeout=60)
            rep = await wait_report(http, iid, lambda x: sum(e["event"].startswith("Alert firing") for e in x["timeline"]) >= 200,
                                    "alerts on the timeline")
            assert sum(e["event"].startswith("Alert firing") for e in rep["timeline"]) == 200
            runs = [e for e in (await dev_env.client.get_workflow_handle(iid).fetch_history()).events
                    if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED]
            assert len(runs) == 1


async def test_a_full_spool_answers_503_with_retry_after(dev_env, tmp_path):
    cfg = api_config(alert_spool=str(tmp_path / "alerts.sqlite3"), alert_spool_max_alerts=100)
    async with api_on(dev_env.client, cfg) as (http, _, _):
        big = {"version": "4", "status": "resolved", "alerts": [
            {"status": "resolved", "labels": {"alertname": f"Full{uuid.uuid4().hex[:6]}"}}] * 101}
        r = await http.post("/alerts/alertmanager", headers=auth("am"), json=big)
        assert r.status_code == 503 and "spool full" in r.json()["detail"] and r.headers["retry-after"] == "30"


async def test_a_spool_in_use_stops_the_api_at_start_up(tmp_path):
    holder = AlertSpool(tmp_path / "alerts.sqlite3")
    (tmp_path / "c.yaml").write_text(f"api:\n  alert_spool: {tmp_path / 'alerts.sqlite3'}\n")
    try:
        p = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from starters.cli import main; main()", "api", "--config", str(tmp_path / "c.yaml"),
            "--port", "1", stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out = (await asyncio.wait_for(p.communicate(), 60))[0].decode()
        assert p.returncode != 0 and "in use by another process" in out and "Traceback" not in out, out
    finally:
        await holder.close()


async def test_a_graceful_stop_delivers_the_backlog_first(dev_env, tmp_path):
    name = f"Stop{uuid.uuid4().hex[:6]}"
    async with forwarding(dev_env, tmp_path) as (spool, fwd):
        await spool.append(await rows_for([notice(name, fingerprint=str(i)) for i in range(3)]))
        await fwd.stop(drain_seconds=10)  # never started: SIGTERM came first
        assert spool.backlog == 0
        h = handle(dev_env, name)
        assert len(alert_events(await h.query(IncidentResponseWorkflow.status))) == 3
        await h.terminate("test done")


async def test_a_firing_alert_after_the_incident_closed_opens_a_new_one(dev_env, tmp_path):
    name = f"Again{uuid.uuid4().hex[:6]}"
    h = handle(dev_env, name)
    async with forwarding(dev_env, tmp_path) as (spool, fwd):
        await spool.append(await rows_for([notice(name, fingerprint="1")]))
        assert await fwd.drain_once()
        first = (await h.describe()).run_id
        await h.terminate("closed by the IC")
        # a resolved alert for a closed incident is dropped; a firing one opens the next
        await spool.append(await rows_for([notice(name, "resolved", fingerprint="1")]))
        assert await fwd.drain_once() and spool.backlog == 0
        await spool.append(await rows_for([notice(name, fingerprint="2")]))
        assert await fwd.drain_once() and spool.backlog == 0
        assert (await h.describe()).run_id != first
        assert alert_events(await h.query(IncidentResponseWorkflow.status)) == [f"Alert firing: {name}"]
        await h.terminate("test done")


async def test_the_spool_keeps_alert_text_encrypted_and_owner_only(tmp_path, monkeypatch):
    from starters.api.alerts import AmWebhook, enqueue
    from worker.codec import new_key

    monkeypatch.setenv("CODEBLUE_CODEC_KEY", new_key())
    spool = AlertSpool(tmp_path / "alerts.sqlite3")
    hook = AmWebhook.model_validate({"version": "4", "status": "firing", "alerts": [
        {"status": "firing", "labels": {"alertname": "PatientFeedDown", "severity": "warning"},
         "annotations": {"summary": "bed 12: patient Jane Roe's feed is stale"}}]})
    try:
        answer = await enqueue(spool, data_converter(), hook, api_config().api, "am")
        assert answer["delivery"] == "queued" and answer["incidents"][0]["queued"] == 1 and spool.backlog == 1
        on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir())
        assert b"Jane Roe" not in on_disk and b"PatientFeedDown" not in on_disk
        for p in tmp_path.iterdir():
            assert p.stat().st_mode & 0o077 == 0, p.name
    finally:
        await spool.close()


async def test_an_admin_sees_dead_letters_without_their_text_and_can_requeue_them(dev_env, tmp_path):
    cfg = api_config(alert_spool=str(tmp_path / "alerts.sqlite3"))
    async with api_on(dev_env.client, cfg) as (http, _, _):
        spool: AlertSpool = http._transport.app.state.alert_spool  # type: ignore[attr-defined]  # the ASGI transport's app
        await spool.append([("ALERT-poison", b"patient Jane Roe, not a payload")])
        await until(lambda: not spool.backlog, what="the spool drained", timeout=60)
        r = await http.get("/alerts/dead-letters", headers=auth("root"))
        assert r.status_code == 200 and r.json()["count"] == 1, r.text
        assert r.json()["dead_letters"][0]["incident_id"] == "ALERT-poison" and "decode" in r.json()["dead_letters"][0]["error"]
        assert "Jane Roe" not in r.text
        assert (await http.get("/alerts/dead-letters", headers=auth("am"))).status_code == 403
        r = await http.post("/alerts/dead-letters/requeue", headers=auth("root"))
        assert r.status_code == 200 and r.json()["requeued"] == 1
        # still undecodable: refused again, not lost
        await until(spool.dead_letter_count, what="the requeued alert dead-lettered again", timeout=60)
        assert spool.backlog == 0


async def test_alerts_taken_while_temporal_was_down_survive_an_api_restart(dev_env, tmp_path):
    """`codeblue api` processes, as deployed: the first never reaches Temporal and is stopped
    with SIGTERM; the second delivers what the first acknowledged."""
    import json
    import os
    import signal

    import httpx
    import yaml

    from starters.api.auth import sha256_hex

    token = "tok-restart-" + "r" * 24
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"api": {
        "tokens": [{"name": "am", "sha256": sha256_hex(token), "roles": ["alerts"]}],
        "alert_spool": str(tmp_path / "alerts.sqlite3")}}))
    tq = f"spool-{uuid.uuid4().hex[:6]}"
    name = f"Restart{uuid.uuid4().hex[:6]}"

    async def api(address: str) -> tuple[asyncio.subprocess.Process, str]:
        port = free_port()
        p = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from starters.cli import main; main()", "api", "--config", str(tmp_path / "c.yaml"),
            "--port", str(port), env={**os.environ, "TEMPORAL_ADDRESS": address, "TEMPORAL_TASK_QUEUE": tq},
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(verify=tls_context()) as c:
            await until(lambda: c.get(f"{url}/healthz"), lambda r: r.status_code == 200, "the API started", timeout=10,
                        retry=(httpx.TransportError,))
        return p, url

    first, url = await api("127.0.0.1:1")  # nothing listens there
    async with httpx.AsyncClient(verify=tls_context(), headers={"Authorization": f"Bearer {token}"}) as c:
        r = await c.post(f"{url}/alerts/webhook", json={"alerts": [{"name": name, "summary": "taken while down"}]})
        assert r.status_code == 200 and r.json()["delivery"] == "queued", r.text
    first.send_signal(signal.SIGTERM)
    await asyncio.wait_for(first.wait(), 30)

    second, url = await api(dev_env.client.service_client.config.target_host)
    h = handle(dev_env, name)
    try:
        async with Worker(dev_env.client, task_queue=tq, **incident_worker(World())):
            rep = await until(h, lambda r: bool(alert_events(r)), "the alert taken while down", timeout=20,
                              retry=(Exception,))  # not delivered yet: no incident to ask
            assert [e.result for e in rep.timeline if e.kind == TimelineKind.ALERT] == ["taken while down"]
            async with httpx.AsyncClient(verify=tls_context()) as c:
                assert json.loads((await c.get(f"{url}/readyz")).text)["alerts_waiting"] == 0
            await h.terminate("test done")
    finally:
        second.send_signal(signal.SIGTERM)
        await asyncio.wait_for(second.wait(), 30)
