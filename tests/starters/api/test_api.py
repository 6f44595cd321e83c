"""The HTTP API as an IC, a responder and Alertmanager use it, against the real dev server."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from activities.http_client import tls_context
from domain.alerts import AlertBatch, AlertNotice
from domain.config import AlertRule
from starters.api import alerts
from starters.api.app import ApiSettings, create_app
from starters.api.ratelimit import RateLimiter
from starters.ports import free_port
from tests.support.api import PEOPLE, api_config, api_on, auth, wait_report
from tests.support.polling import until


def problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    assert body["status"] == status and body["detail"] and "Traceback" not in r.text
    return body


async def test_p0_started_approved_and_resolved_over_http(dev_env):
    async with api_on(dev_env.client) as (http, world, _):
        iid = f"INC-API-{uuid.uuid4().hex[:6]}"
        r = await http.post("/incidents", headers=auth("bob"),
                            json={"title": "gateway down", "outage": True, "commander": "alice", "incident_id": iid})
        assert r.status_code == 201, r.text
        world.handles.append(iid)
        assert r.json()["severity"] == "P0" and iid in r.json()["ui_url"]
        problem(await http.post("/incidents", headers=auth("bob"),
                                json={"title": "again", "severity": "P1", "incident_id": iid}), 409)

        rep = await wait_report(http, iid, lambda x: bool(x["actions"]), "proposals")
        assert rep["timeline"][0]["actor"] == "bob"  # who started it comes from the token
        # a responder's note lands on the timeline under the token's name, not the body's
        r = await http.post(f"/incidents/{iid}/notes", headers=auth("bob"), json={"text": "502s since 10:02"})
        assert r.status_code == 202, r.text
        problem(await http.post(f"/incidents/{iid}/notes", headers=auth("bob"), json={"text": "x", "by": "alice"}), 422)
        problem(await http.post(f"/incidents/{iid}/notes", headers=auth("bob"), json={"text": ""}), 422)
        problem(await http.post(f"/incidents/{iid}/notes", headers=auth("vic"), json={"text": "x"}), 403)
        rep = await wait_report(http, iid, lambda x: any(e["kind"] == "note" for e in x["timeline"]), "the note")
        assert [(e["actor"], e["result"]) for e in rep["timeline"] if e["kind"] == "note"] == [("bob", "502s since 10:02")]
        first, rest = rep["actions"][0]["id"], [a["id"] for a in rep["actions"][1:]]
        url = f"/incidents/{iid}/decisions"
        # a responder token may not decide at all; a commander who is not this IC is refused by the workflow
        assert "lacks the commander role" in problem(await http.post(url, headers=auth("bob"), json={"action_id": first, "approve": True}), 403)["detail"]
        assert "carol is not the incident commander (alice)" in problem(
            await http.post(url, headers=auth("carol"), json={"action_id": first, "approve": True}), 403)["detail"]
        # the body cannot claim to be someone else
        problem(await http.post(url, headers=auth("carol"), json={"action_id": first, "approve": True, "by": "alice"}), 422)
        problem(await http.post(url, headers=auth("alice"), json={"action_id": "nope", "approve": True}), 422)
        problem(await http.post(url, headers=auth("alice"), json={"action_id": rest[0], "approve": False}), 422)
        # the IC is no admin: an override of the blast-radius policy is theirs to ask for, not to give
        assert "only an admin may override the blast-radius policy" in problem(await http.post(
            url, headers=auth("alice"), json={"action_id": first, "approve": True, "override": "urgent"}), 403)["detail"]

        r = await http.post(url, headers=auth("alice"), json={"action_id": first, "approve": True})
        assert r.status_code == 200 and r.json()["state"] == "approved", r.text
        problem(await http.post(url, headers=auth("alice"), json={"action_id": first, "approve": True}), 409)
        for a in rest:
            r = await http.post(url, headers=auth("alice"), json={"action_id": a, "approve": False, "reason": "not needed"})
            assert r.status_code == 200, r.text
        rep = await wait_report(http, iid, lambda x: x["actions"][0]["state"] == "executed", "rollback executed")
        assert rep["actions"][0]["approved_by"] == "alice"

        async def listed() -> list[dict]:
            r = await http.get("/incidents", params={"severity": "P0", "phase": "mitigation"}, headers=auth("vic"))
            assert r.status_code == 200
            return r.json()

        # visibility is eventually consistent
        await until(listed, lambda rows: iid in {row["incident_id"] for row in rows}, "the incident listed in mitigation",
                    timeout=10)
        r = await http.get("/incidents", params={"severity": "P3"}, headers=auth("vic"))
        assert iid not in {row["incident_id"] for row in r.json()}
        problem(await http.get("/incidents", params={"severity": "P9"}, headers=auth("vic")), 422)

        problem(await http.post(f"/incidents/{iid}/resolve", headers=auth("bob"), json={"summary": "x"}), 403)
        r = await http.post(f"/incidents/{iid}/resolve", headers=auth("alice"), json={"summary": "rolled back"})
        assert r.status_code == 200 and r.json()["resolved"] and r.json()["verified"], r.text
        problem(await http.post(url, headers=auth("alice"), json={"action_id": first, "approve": True}), 409)
        assert world.effects == ["rollback 12->11"]
        r = await http.get(f"/incidents/{iid}/postmortem", headers=auth("vic"))
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/markdown") and iid in r.text


async def test_commander_handover_needs_the_current_ic(dev_env):
    async with api_on(dev_env.client) as (http, world, _):
        iid = f"INC-API-{uuid.uuid4().hex[:6]}"
        r = await http.post("/incidents", headers=auth("bob"), json={"title": "slow", "severity": "P2", "incident_id": iid, "commander": "alice"})
        assert r.status_code == 201
        world.handles.append(iid)
        r = await http.post(f"/incidents/{iid}/commander", headers=auth("carol"), json={"commander": "carol"})
        assert r.status_code == 202  # a signal: recorded, and ignored by the workflow
        await wait_report(http, iid, lambda x: any(e["kind"] == "ignored" and e["actor"] == "carol" for e in x["timeline"]),
                          "ignored")
        r = await http.post(f"/incidents/{iid}/commander", headers=auth("alice"), json={"commander": "carol"})
        assert r.status_code == 202
        rep = await wait_report(http, iid, lambda x: x["commander"] == "carol", "handover")
        assert [(e["actor"], e["result"]) for e in rep["timeline"] if e["kind"] == "commander"] == [("alice", "carol")]


# role -> expected status for each endpoint, with an incident ID that does not exist (so an
# authorized caller reaches Temporal and gets 404) and bodies that are valid.
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None, set[str], int]] = [
    ("GET", "/incidents", None, {"viewer", "responder", "commander", "admin"}, 200),
    ("GET", "/incidents/INC-NOPE", None, {"viewer", "responder", "commander", "admin"}, 404),
    ("GET", "/incidents/INC-NOPE/postmortem", None, {"viewer", "responder", "commander", "admin"}, 404),
    ("POST", "/incidents", {"title": "matrix", "severity": "P3"}, {"responder", "commander", "admin"}, 201),
    ("POST", "/incidents/INC-NOPE/decisions", {"action_id": "rollback", "approve": True}, {"commander", "admin"}, 404),
    ("POST", "/incidents/INC-NOPE/resolve", {"summary": "done"}, {"commander", "admin"}, 404),
    ("POST", "/incidents/INC-NOPE/commander", {"commander": "x"}, {"commander", "admin"}, 404),
    ("POST", "/incidents/INC-NOPE/escalate", {"severity": "P0"}, {"responder", "commander", "admin"}, 404),
    ("POST", "/incidents/INC-NOPE/notes", {"text": "saw 502s"}, {"responder", "commander", "admin"}, 404),
    ("POST", "/alerts/alertmanager", None, {"alerts", "admin"}, 200),
    ("POST", "/alerts/webhook", {"alerts": [{"name": "MatrixGeneric", "status": "resolved"}]}, {"alerts", "admin"}, 200),
    ("GET", "/alerts/dead-letters", None, {"admin"}, 404),  # 404: this API has no spool
    ("POST", "/alerts/dead-letters/requeue", None, {"admin"}, 404),
    ("POST", "/codec/encode?workflow_id=INC-1", {"payloads": []}, {"admin"}, 200),
    ("POST", "/codec/decode", {"payloads": []}, {"viewer", "responder", "commander", "admin"}, 200),
    ("GET", "/whoami", None, {"viewer", "responder", "commander", "admin", "alerts"}, 200),
    # no such incident: only an admin may start a procedure for it (and then finds none to follow)
    ("POST", "/procedures/postmortem", {"incident_id": "INC-NOPE"}, {"admin"}, 404),
    ("POST", "/procedures/INC-NOPE-cache/confirm-flush", {"cluster_name": "x"}, {"commander", "admin"}, 404),
    ("POST", "/procedures/INC-NOPE-memory/resolve-memory", {}, {"commander", "admin"}, 404),
    ("POST", "/incidents/INC-NOPE/db-restore/cancel", {"reason": "x"}, {"commander", "admin"}, 404),
    ("POST", "/incidents/INC-NOPE/postmortem/held", {}, {"responder", "commander", "admin"}, 404),
    ("POST", "/incidents/INC-NOPE/action-items", {"text": "t", "owner": "o", "due": "2026-12-31"},
     {"responder", "commander", "admin"}, 404),
    ("POST", "/incidents/INC-NOPE/action-items/AI-1/close", {}, {"responder", "commander", "admin"}, 404),
]
ROLE_OF = {"vic": "viewer", "bob": "responder", "alice": "commander", "root": "admin", "am": "alerts"}


def resolved_only_hook() -> dict:
    return {"version": "4", "status": "resolved", "alerts": [
        {"status": "resolved", "labels": {"alertname": f"Matrix{uuid.uuid4().hex[:4]}", "service": "api"}}]}


async def test_authorization_matrix(dev_env):
    async with api_on(dev_env.client, api_config(auth_failures_burst=1000)) as (http, world, _):
        for method, path, body, allowed, ok in ENDPOINTS:
            for who, role in ROLE_OF.items():
                payload = resolved_only_hook() if path == "/alerts/alertmanager" else body
                r = await http.request(method, path, headers=auth(who), json=payload)
                want = ok if role in allowed else 403
                assert r.status_code == want, (method, path, role, r.status_code, r.text)
                if r.status_code == 201:
                    world.handles.append(r.json()["incident_id"])
            problem(await http.request(method, path, json=body), 401)
            problem(await http.request(method, path, json=body, headers={"Authorization": "Bearer wrong"}), 401)
        for path in ("/healthz", "/readyz"):
            assert (await http.get(path)).status_code == 200


async def test_bad_requests_get_problem_bodies(dev_env):
    async with api_on(dev_env.client, api_config(max_body_bytes=2048)) as (http, world, _):
        h = {**auth("bob"), "content-type": "application/json"}
        assert problem(await http.post("/incidents", headers=h, content=b"{not json"), 400)["detail"] == "malformed JSON body"
        assert "extra" in problem(await http.post("/incidents", headers=h, json={"title": "x", "severity": "P1", "sneaky": 1}), 422)["detail"].lower()
        assert "severity" in problem(await http.post("/incidents", headers=h, json={"title": "x", "severity": "P7"}), 422)["detail"]
        problem(await http.post("/incidents", headers=h, json={"title": "x" * 5000}), 413)

        async def chunked():  # no Content-Length: the limit applies while reading
            for _ in range(10):
                yield b" " * 1000

        problem(await http.post("/incidents", headers=h, content=chunked()), 413)
        problem(await http.post("/incidents", headers=h, json={"title": "x", "incident_id": "bad id!"}), 422)
        assert "alert path" in problem(await http.post("/incidents", headers=h, json={
            "title": "x", "severity": "P3", "incident_id": "ALERT-0123456789abcdef"}), 422)["detail"]
        problem(await http.get("/incidents/bad%20id!", headers=auth("vic")), 422)
        problem(await http.get("/nowhere", headers=auth("vic")), 404)


async def test_temporal_unreachable_is_503():
    async def factory() -> Client:
        return await Client.connect("127.0.0.1:1")

    app = create_app(factory, ApiSettings(config=api_config()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        assert (await http.get("/healthz")).status_code == 200
        problem(await http.get("/readyz"), 503)
        problem(await http.get("/incidents", headers=auth("vic")), 503)
        problem(await http.post("/incidents", headers=auth("bob"), json={"title": "x", "severity": "P1"}), 503)


def storm_config(**kw):
    return api_config(alerts_per_second=10_000, alerts_burst=10_000,
                      alert_rules=[AlertRule(match={"severity": "warning"}, severity="P3")], **kw)


async def test_alert_storm_makes_one_incident_per_key(dev_env):
    async with api_on(dev_env.client, storm_config()) as (http, world, _):
        run = uuid.uuid4().hex[:6]
        keys = [f"Storm{run}{i}" for i in range(3)]

        def hook(n: int) -> dict:
            batch = [{"status": "firing", "labels": {"alertname": keys[(n * 5 + j) % 3], "service": "api-gateway",
                                                     "severity": "warning", "pod": f"p{n}-{j}"},
                      "annotations": {"summary": f"alert {n}-{j}"}, "fingerprint": f"{n}-{j}"} for j in range(5)]
            return {"version": "4", "status": "firing", "receiver": "codeblue", "groupKey": "{}", "alerts": batch}

        rs = await asyncio.gather(*[http.post("/alerts/alertmanager", headers=auth("am"), json=hook(n)) for n in range(200)])
        assert all(r.status_code == 200 for r in rs), [r.text for r in rs if r.status_code != 200][:3]
        ids = {i["incident_id"] for r in rs for i in r.json()["incidents"]}
        world.handles.extend(ids)
        assert len(ids) == 3
        per_id: dict[str, int] = {}
        signals_per_id: dict[str, int] = {}

        async def delivered() -> int:
            for iid in ids:
                h = dev_env.client.get_workflow_handle(iid)
                hist = await h.fetch_history()
                runs = [e for e in hist.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED]
                signals = [e.workflow_execution_signaled_event_attributes for e in hist.events
                           if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED]
                assert {s.signal_name for s in signals} <= {alerts.BATCH_SIGNAL}
                batches = [(await dev_env.client.data_converter.decode(s.input.payloads, [AlertBatch]))[0] for s in signals]
                assert len(runs) == 1
                per_id[iid] = sum(len(b.notices) for b in batches)
                signals_per_id[iid] = len(signals)
                assert (await h.describe()).run_id == hist.run_id  # one run per key
            return sum(per_id.values())

        # signals that arrive during a workflow task are buffered until it completes; three
        # histories read per look: a look every 0.2 s at most
        await until(delivered, lambda n: n >= 1000, "1000 alerts in the histories", timeout=40, poll=0.2)
        assert sum(per_id.values()) == 1000 and sorted(per_id.values()) == [333, 333, 334]
        # a webhook's alerts of one key are one signal: each of the 200 webhooks had all three keys
        assert signals_per_id == dict.fromkeys(ids, 200), signals_per_id
        if alerts.TIMELINE_RECORDS_ALERTS:
            for iid, n in per_id.items():
                rep = await wait_report(http, iid, lambda x, n=n: sum(e["kind"] == "alert" for e in x["timeline"]) >= n, "alerts on timeline")
                assert rep["severity"] == "P3"
        # a resolved alert is recorded on its open incident and never resolves it
        k = keys[0]
        r = await http.post("/alerts/alertmanager", headers=auth("am"), json={"version": "4", "status": "resolved", "alerts": [
            {"status": "resolved", "labels": {"alertname": k, "service": "api-gateway", "severity": "warning"}}]})
        assert r.json()["incidents"][0]["recorded"] == 1
        rep = (await http.get(f"/incidents/{r.json()['incidents'][0]['incident_id']}", headers=auth("vic"))).json()
        assert rep["status"] == "open"


async def test_generic_webhook_alerts_dedup_like_alertmanagers_and_may_state_a_severity(dev_env):
    cfg = api_config(alert_rules=[AlertRule(match={"team": "lab"}, severity="P2", service="lab-results")])
    name = f"Generic{uuid.uuid4().hex[:6]}"
    async with api_on(dev_env.client, cfg) as (http, world, _):
        r = await http.post("/alerts/webhook", headers=auth("am"), json={"alerts": [
            {"name": name, "severity": "P1", "service": "pharmacy", "summary": "orders stuck", "fingerprint": "a"},
            {"name": name, "service": "pharmacy", "summary": "orders stuck", "fingerprint": "a"},  # re-sent
            {"name": name, "labels": {"team": "lab"}, "summary": "results late"}]})
        assert r.status_code == 200, r.text
        body = r.json()
        world.handles.extend(i["incident_id"] for i in body["incidents"])
        assert [(i["dedup_key"], i["firing"]) for i in body["incidents"]] == [
            (f"alertname={name},service=pharmacy", 2), (f"alertname={name},service=lab-results", 1)]
        pharmacy, lab = [await wait_report(http, i["incident_id"], lambda x: bool(x["timeline"]), "incident")
                         for i in body["incidents"]]
        assert (pharmacy["severity"], pharmacy["service"]) == ("P1", "pharmacy")  # stated, over the default
        assert (lab["severity"], lab["service"]) == ("P2", "lab-results")  # the rule's
        assert [e["result"] for e in pharmacy["timeline"] if e["kind"] == "alert"] == ["orders stuck"]  # the report JSON names the kind
        problem(await http.post("/alerts/webhook", headers=auth("am"), json={"alerts": [{"name": "x", "sev": "P0"}]}), 422)
        problem(await http.post("/alerts/webhook", headers=auth("am"), json={"alerts": [{"name": "x", "severity": "P9"}]}), 422)
        problem(await http.post("/alerts/webhook", headers=auth("bob"), json={"alerts": [{"name": "x"}]}), 403)


async def test_alert_rules_and_dedup_key():
    cfg = api_config(alert_rules=[AlertRule(match={"team": "db", "severity": "critical"}, severity="P0", service="postgres")]).api
    a = alerts.AmAlert(status="firing", labels={"alertname": "Down", "team": "db", "severity": "critical", "service": "x"})
    assert alerts.route(a, cfg) == (alerts.Severity.P0, "postgres")
    b = alerts.AmAlert(status="firing", labels={"alertname": "Down", "service": "billing"})
    assert alerts.route(b, cfg) == (alerts.Severity.P3, "billing")
    assert alerts.dedup_key(a, cfg, "postgres") == "alertname=Down,service=postgres"
    iid = alerts.incident_id_for("alertname=Down,service=postgres")
    assert iid == alerts.incident_id_for("alertname=Down,service=postgres") and "postgres" not in iid


def test_a_keys_alerts_go_in_order_in_few_signals_and_resolved_ones_never_open_an_incident():
    def n(i: int, status: str = "firing") -> AlertNotice:
        return AlertNotice(dedup_key="k", alertname=f"A{i}", status=status, severity="P3", service="s", received_by="am")

    got = alerts.delivery_batches([n(0, "resolved"), n(1, "resolved"), *[n(i) for i in range(2, 452)], n(452, "resolved")])
    assert [[x.alertname for x in b] for b in got] == [
        ["A0", "A1"], [f"A{i}" for i in range(2, 202)], [f"A{i}" for i in range(202, 402)],
        [*(f"A{i}" for i in range(402, 452)), "A452"]]
    assert all(x.status == "resolved" for x in got[0])  # ahead of the first firing alert: alone, never an opener
    assert alerts.delivery_batches([n(0, "resolved")]) == [[n(0, "resolved")]]


async def test_alert_ingestion_past_its_rate_waits_its_turn_then_is_503_never_4xx(dev_env, monkeypatch):
    """Alertmanager drops a group answered 4xx and retries a 5xx: a burst is paced, and only a
    wait past the pacing limit is refused, with 503 and Retry-After."""
    import time

    from starters.api import alert_routes
    from starters.api import app as api_app

    # The limiters' clock runs in real time, then stands still for a concurrent burst: how many
    # of six requests get a turn must not depend on how busy the machine is.
    frozen: list[float] = []
    monkeypatch.setattr(alert_routes, "ALERT_PACING_SECONDS", 0.5)
    monkeypatch.setattr(api_app, "RateLimiter", lambda rate, burst, **kw: RateLimiter(
        rate, burst, clock=lambda: frozen[0] if frozen else time.monotonic(), **kw))
    async with api_on(dev_env.client, api_config(alerts_per_second=4, alerts_burst=2)) as (http, world, _):
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        codes = [(await http.post("/alerts/alertmanager", headers=auth("am"), json=resolved_only_hook())).status_code for _ in range(4)]
        assert codes == [200] * 4 and loop.time() - t0 >= 0.4  # the 3rd and 4th waited their turn (0.25 s each)
        frozen.append(time.monotonic())
        many = await asyncio.gather(*(http.post("/alerts/alertmanager", headers=auth("root"), json=resolved_only_hook())
                                      for _ in range(6)))
        # another token has its own bucket: its burst of 2 at once, then 0.5 s of turns, then 503
        assert sorted(r.status_code for r in many) == [200, 200, 200, 200, 503, 503]
        r = next(r for r in many if r.status_code == 503)
        assert "alerts_per_second" in problem(r, 503)["detail"] and int(r.headers["retry-after"]) >= 1
        # the first token's turn came while the clock stood still
        assert (await http.post("/alerts/alertmanager", headers=auth("am"), json=resolved_only_hook())).status_code == 200
        problem(await http.post("/alerts/alertmanager", headers=auth("am"), json={"version": "3", "status": "firing", "alerts": []}), 422)


def test_rate_limiter_memory_is_bounded():
    now = [0.0]
    rl = RateLimiter(per_second=1, burst=2, max_keys=10, clock=lambda: now[0])
    for i in range(1000):
        rl.allow(f"k{i}")
    assert len(rl) == 10
    assert [rl.allow("x") for _ in range(3)] == [True, True, False]
    now[0] += 1.0
    assert rl.allow("x") and not rl.allow("x")


async def test_codeblue_api_command_serves_over_http(dev_env):
    exe = shutil.which("codeblue")
    assert exe
    port = free_port()
    token = "tok-" + uuid.uuid4().hex
    env = {**os.environ, "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
           "CODEBLUE_API_TOKENS": json.dumps([{"name": "vic", "token": token, "roles": ["viewer"]}])}
    p = await asyncio.create_subprocess_exec(exe, "api", "--port", str(port), env=env, stdin=asyncio.subprocess.DEVNULL,
                                             stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        async with httpx.AsyncClient(verify=tls_context(), base_url=f"http://127.0.0.1:{port}") as http:
            await until(lambda: http.get("/healthz"), lambda r: r.status_code == 200, "the API's /healthz", timeout=10,
                        retry=(httpx.TransportError,))
            assert (await http.get("/readyz")).status_code == 200
            assert (await http.get("/incidents", headers={"Authorization": f"Bearer {token}"})).status_code == 200
            problem(await http.post("/incidents", headers={"Authorization": f"Bearer {token}"}, json={"title": "x", "severity": "P1"}), 403)
            assert "/incidents/{incident_id}/decisions" in (await http.get("/openapi.json")).json()["paths"]
    finally:
        p.terminate()
        _, err = await asyncio.wait_for(p.communicate(), 20)
    assert token not in err.decode()  # tokens never logged
    assert "Traceback" not in err.decode()


async def test_bad_token_env_is_one_line_without_the_secret():
    exe = shutil.which("codeblue")
    assert exe
    secret = "tok-" + uuid.uuid4().hex
    p = await asyncio.create_subprocess_exec(exe, "api", env={**os.environ, "CODEBLUE_API_TOKENS": f"[{{{secret}"},
                                             stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(p.communicate(), 30)
    assert p.returncode == 1
    lines = [ln for ln in err.decode().splitlines() if ln.strip()]
    assert len(lines) == 1 and "CODEBLUE_API_TOKENS" in lines[0] and secret not in lines[0]


@pytest.mark.parametrize("who", list(PEOPLE))
def test_tokens_are_kept_hashed(who):
    from starters.api.auth import TokenBook

    book = TokenBook.from_config(api_config().api, env={})
    token = PEOPLE[who][0]
    principal = book.lookup(token)
    assert principal is not None and principal.name == who
    assert token.encode() not in repr(vars(book)).encode()
    assert book.lookup(token + "x") is None


async def test_a_resent_alert_is_dropped_in_the_api_before_it_becomes_a_signal(dev_env):
    async with api_on(dev_env.client, storm_config()) as (http, world, _):
        name = f"Resent{uuid.uuid4().hex[:6]}"

        def hook(status: str = "firing") -> dict:
            return {"version": "4", "status": status, "alerts": [
                {"status": status, "labels": {"alertname": name, "service": "api-gateway", "severity": "warning"},
                 "annotations": {"summary": "still failing"}, "fingerprint": "fp-1"}]}

        first = (await http.post("/alerts/alertmanager", headers=auth("am"), json=hook())).json()
        iid = first["incidents"][0]["incident_id"]
        world.handles.append(iid)
        assert first["incidents"][0]["recorded"] == 1
        # Alertmanager's repeat_interval re-sends: answered, counted, and no signal is sent
        for _ in range(3):
            again = (await http.post("/alerts/alertmanager", headers=auth("am"), json=hook())).json()
            assert again["incidents"][0]["repeats"] == 1 and again["incidents"][0]["recorded"] == 0
        # a change of status is news: it goes through
        resolved = (await http.post("/alerts/alertmanager", headers=auth("am"), json=hook("resolved"))).json()
        assert resolved["incidents"][0]["recorded"] == 1 and resolved["incidents"][0]["repeats"] == 0
        rep = await wait_report(http, iid, lambda x: x["alerts"].get("received") == 2, "the resolution recorded")
        assert rep["alerts"]["repeats"] == 0  # the workflow never saw the re-sends
        hist = await dev_env.client.get_workflow_handle(iid).fetch_history()
        signals = [e for e in hist.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED]
        assert len(signals) == 2  # the opening alert and the resolution, not the three re-sends


async def test_repeated_bad_tokens_are_throttled_and_a_valid_token_is_not(dev_env):
    async with api_on(dev_env.client, api_config(auth_failures_burst=5, auth_failures_per_minute=1)) as (http, _, _):
        answers = [(await http.get("/whoami", headers={"Authorization": f"Bearer wrong-{i}"})) for i in range(8)]
        assert [r.status_code for r in answers] == [401] * 5 + [429] * 3
        assert int(answers[-1].headers["retry-after"]) >= 1
        assert (await http.get("/whoami", headers=auth("vic"))).status_code == 200  # same address, valid token
        assert (await http.get("/whoami")).status_code == 401  # no token at all is no guess: never 429
