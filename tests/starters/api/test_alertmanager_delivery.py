"""Debian's real Alertmanager (0.25) sends its own webhooks to the API over HTTP: groups of 70,
1,001 and 5,000 alerts and a burst of 500 one-alert groups all reach their incidents, none
refused for size or load and none lost; a group it truncates (its receiver's max_alerts) is
counted on the incident."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml
from temporalio.client import Client
from temporalio.worker import Worker

from domain.incident import IncidentReport
from sandbox.memory_world import World, incident_worker
from starters.api.alerts import incident_id_for
from starters.devserver import serve_api
from starters.ports import free_port
from tests.support.api import PEOPLE, api_config
from tests.support.polling import until
from workflows.incident_response import IncidentResponseWorkflow

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
pytestmark = pytest.mark.skipif(ALERTMANAGER is None, reason="no Alertmanager: install Debian's "
                                "prometheus-alertmanager (scripts/ensure-services.sh does)")
CAPPED = 10  # the capped receiver's max_alerts


def _config(api: str, token: str) -> dict:
    hook = {"url": f"{api}/alerts/alertmanager", "send_resolved": True, "max_alerts": 0,
            "http_config": {"authorization": {"type": "Bearer", "credentials": token}}}
    # Alertmanager gives a flush max(group_interval, 10 s) before it cancels it and logs "Notify
    # for alerts failed" (the next flush sends the group again): 30 s, so a slow shared CI box
    # answering a 5,000-alert group late does not read as a refusal. group_wait lets every post
    # below land first, so each group is one flush.
    timing = {"group_wait": "3s", "group_interval": "30s", "repeat_interval": "1h"}
    return {
        "route": {"receiver": "codeblue", "group_by": ["alertname"], **timing, "routes": [
            # every alert its own group: the burst
            {"matchers": ['burst="yes"'], "receiver": "codeblue", "group_by": ["..."], **timing},
            {"matchers": ['capped="yes"'], "receiver": "codeblue-capped", "group_by": ["alertname"], **timing},
        ]},
        "receivers": [{"name": "codeblue", "webhook_configs": [hook]},
                      {"name": "codeblue-capped", "webhook_configs": [{**hook, "max_alerts": CAPPED}]}],
    }


@asynccontextmanager
async def alertmanager(api: str, token: str, work: Path) -> AsyncIterator[str]:
    port = free_port()
    (work / "am.yml").write_text(yaml.safe_dump(_config(api, token)))
    log = (work / "am.log").open("w")
    assert ALERTMANAGER is not None
    proc = subprocess.Popen([ALERTMANAGER, f"--config.file={work / 'am.yml'}", f"--storage.path={work / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(100):
                try:
                    if (await http.get(f"{url}/-/ready")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"Alertmanager did not start: {(work / 'am.log').read_text()[-2000:]}")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def _alerts(name: str, n: int, **labels: str) -> list[dict]:
    start = datetime.now(UTC).isoformat()  # older than group_wait would flush at once, the group half-posted
    return [{"labels": {"alertname": name, "service": "api-gateway", "severity": "warning", "pod": f"pod-{i}", **labels},
             "annotations": {"summary": f"{name}: pod-{i} restarted {i % 7 + 3} times in 10 minutes "
                             "(back-off restarting failed container)"},
             "startsAt": start} for i in range(n)]


def _distinct(rep: IncidentReport) -> int:
    return rep.alerts.get("listed", 0) + rep.alerts.get("unlisted", 0)


async def test_real_alertmanager_groups_of_any_size_and_a_burst_all_reach_their_incidents(dev_env, tmp_path):
    client: Client = dev_env.client
    world, tq = World(), f"am-{uuid.uuid4().hex[:6]}"
    token = PEOPLE["am"][0]
    run = uuid.uuid4().hex[:6]
    groups = {f"KubePodCrashLooping{n}x{run}": n for n in (70, 1001, 5000)}
    burst, capped = f"Burst{run}", f"Capped{run}"
    async with Worker(client, task_queue=tq, **incident_worker(world)), \
            serve_api(api_config(), client.service_client.config.target_host, tq, free_port()) as api, \
            alertmanager(api, token, tmp_path) as am, httpx.AsyncClient(timeout=60) as http:
        posted = [a for name, n in groups.items() for a in _alerts(name, n)]
        posted += _alerts(burst, 500, burst="yes") + _alerts(capped, 25, capped="yes")
        for i in range(0, len(posted), 2000):
            r = await http.post(f"{am}/api/v2/alerts", json=posted[i:i + 2000])
            assert r.status_code == 200, r.text
        expected = {**groups, burst: 500, capped: CAPPED}
        reports: dict[str, IncidentReport] = {}
        for name, n in expected.items():
            h = client.get_workflow_handle(incident_id_for(f"alertname={name},service=api-gateway"))

            def arrived(rep: IncidentReport, n: int = n) -> bool:
                return _distinct(rep) >= n

            await until(h, arrived, f"{n} alerts of {name}", timeout=180)
            reports[name] = await h.query(IncidentResponseWorkflow.status)  # and nothing more came
        for name, n in groups.items():
            assert _distinct(reports[name]) == n, (name, reports[name].alerts)
        assert _distinct(reports[burst]) == 500
        # a capped group's flushes may each carry a different first ten (a flush before every
        # alert arrived carries fewer): at least ten arrive, and the count of the rest is its latest
        assert CAPPED <= _distinct(reports[capped]) <= 25
        assert reports[capped].alerts.get("truncated") == 25 - CAPPED, reports[capped].alerts
        assert any("left 15 alerts of a group out" in e.event for e in reports[capped].timeline)
        assert "truncated" not in reports[burst].alerts
        # nothing Alertmanager sent was refused for good (a 4xx, or retries given up: it logs
        # "Notify for alerts failed"); a 503 of the burst is an attempt it retried
        log = (tmp_path / "am.log").read_text()
        assert "Notify for alerts failed" not in log, log[-3000:]
        for name in expected:
            await client.get_workflow_handle(incident_id_for(f"alertname={name},service=api-gateway")).terminate("done")
