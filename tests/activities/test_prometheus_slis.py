"""SLIs from Prometheus: the activity against a real Prometheus server scraping the sandbox
gateway's /metrics (bad while its pods crash-loop, good after the rollback), and every way a
read can go wrong recorded on the SLI, never raised: a bad query, an unreachable server, no url.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families
from temporalio import activity
from temporalio.testing import ActivityEnvironment

from activities.helm import HelmActivities
from activities.http_client import tls_context
from activities.prometheus import PrometheusActivities
from domain.cluster import HelmRollbackRequest
from domain.config import CodeBlueConfig, ConfigError
from domain.prometheus import (
    PrometheusConfig,
    Sli,
    SliQuery,
    SliRangeQuery,
    SliReport,
    SliSeries,
    SliValue,
    breaches,
    unknowns,
    verdict,
)
from sandbox.gateway_metrics import GatewayMetrics
from sandbox.memory_world import World
from sandbox.prometheus_server import find_prometheus
from sandbox.scenarios import GATEWAY, NAMESPACE, RELEASE, sandbox_environment
from starters.ports import free_port
from tests.support.polling import until

NO_PROMETHEUS = "no prometheus binary: install Debian's prometheus package (scripts/ensure-services.sh does)"
needs_prometheus = pytest.mark.skipif(find_prometheus() is None, reason=NO_PROMETHEUS)

SVC = 'service="api-gateway"'


def _reads(acts: PrometheusActivities):
    """The probe `until` polls: the SLIs as the incident reads them (every 0.5 s: Prometheus'
    scrapes are a second apart)."""
    return lambda: acts.sli_values(SliQuery(incident_id="INC-SLI"))


def _by_name(report: SliReport) -> dict[str, SliValue]:
    return {v.name: v for v in report.values}


def _value(sli: SliValue) -> float:
    assert sli.value is not None, sli
    return sli.value


def _error(sli: SliValue | SliSeries) -> str:
    assert sli.error is not None, sli
    return sli.error


# -- the real thing ------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module")
async def bad_deploy():
    """One bad-deploy sandbox with its Prometheus for this module's real tests (Prometheus
    applies its scrape targets about 5 s after it starts: pay that once)."""
    if find_prometheus() is None:
        pytest.skip(NO_PROMETHEUS)
    async with sandbox_environment("bad-deploy") as sb, httpx.AsyncClient(verify=tls_context()) as http:
        yield sb, http


@needs_prometheus
async def test_slis_follow_the_bad_deploy_and_its_rollback(bad_deploy):
    sb, http = bad_deploy
    url = sb.config.prometheus.url
    assert url and sb.extras["prometheus"].url == url, "the sandbox sets prometheus.url to its own server"
    # the default queries (1m windows) are valid PromQL the sandbox answers
    defaults = await PrometheusActivities(PrometheusConfig(url=url), http).sli_values(SliQuery(incident_id="INC-SLI"))
    assert [v.name for v in defaults.values] == ["5xx ratio", "p99 latency", "saturation"]
    assert all("bad query" not in (v.error or "") for v in defaults.values), defaults

    # the sandbox's own SLIs: the defaults over 10 s windows (drill speed)
    assert [s.query for s in sb.config.prometheus.slis] == [s.query.replace("[1m]", "[10s]") for s in PrometheusConfig().slis]
    cfg = sb.config.prometheus.model_copy(update={"dashboards": {
        "grafana": "https://grafana.example.org/d/gw?var-service={service}&var-incident={incident_id}&from={from}&to={to}"}})
    acts = PrometheusActivities(cfg, http)
    started = datetime.now(UTC)
    # through the SDK's activity environment once: a real activity, a serializable result
    first = await ActivityEnvironment().run(acts.sli_values, SliQuery(incident_id="INC-SLI"))
    assert not first.skipped and first.dashboards["grafana"].startswith(
        "https://grafana.example.org/d/gw?var-service=api-gateway&var-incident=INC-SLI&from=")
    bad = await until(_reads(acts), lambda r: all(v.value is not None for v in r.values), "values while crash-looping",
                      timeout=30, poll=0.5)
    assert not sb.cluster.gateway_healthy(NAMESPACE, GATEWAY)
    v = _by_name(bad)
    assert _value(v["5xx ratio"]) > 0.2 and v["5xx ratio"].ok is False, v["5xx ratio"]
    assert _value(v["p99 latency"]) > 1.0 and v["p99 latency"].ok is False, v["p99 latency"]
    assert _value(v["saturation"]) > 0.8 and v["saturation"].ok is False
    lines = breaches(bad)
    assert lines[0].startswith("5xx ratio 0.") and lines[0].endswith("(limit < 0.05)"), lines
    assert any(line.startswith("p99 latency ") and line.endswith("(limit < 1 s)") for line in lines), lines
    assert verdict(bad) is False

    # the IC's rollback to revision 11: the gateway's pods become ready
    helm = HelmActivities(sb.config.helm.command, {"KUBECONFIG": str(sb.cluster.kubeconfig_path)})
    await helm.helm_rollback(HelmRollbackRequest(release=RELEASE, namespace=NAMESPACE, from_revision=12,
                                                 to_revision=11, timeout_seconds=60))
    await until(lambda: sb.cluster.gateway_healthy(NAMESPACE, GATEWAY), what="the gateway healthy", timeout=10)
    assert sb.cluster.gateway_healthy(NAMESPACE, GATEWAY)
    healthy_at = time.monotonic()
    good = await until(_reads(acts), lambda r: verdict(r) is True, "every SLI OK after the rollback", timeout=30, poll=0.5)
    took = time.monotonic() - healthy_at
    v = _by_name(good)
    assert _value(v["5xx ratio"]) < 0.05 and _value(v["p99 latency"]) < 1.0 and _value(v["saturation"]) < 0.8
    assert breaches(good) == [] and unknowns(good) == []
    assert took < 20, f"the SLIs took {took:.1f}s to recover after the gateway did"

    # the picture: bad before the rollback, good after, in one range read (its points sit on
    # start + k x step: let one more step pass so the last one is past the recovery)
    await asyncio.sleep(1.5)
    pic = await acts.sli_range(SliRangeQuery(incident_id="INC-SLI", start=started.isoformat(),
                                             end=datetime.now(UTC).isoformat(), step_seconds=1))
    ratio = next(s for s in pic.series if s.name == "5xx ratio")
    assert ratio.error is None and pic.step_seconds == 1
    values = [p for _, p in ratio.points if p is not None]
    assert max(values) > 0.2 and values[-1] < 0.05, ratio.points
    assert pic.end is not None
    assert pic.dashboards["grafana"].endswith(f"&to={int(datetime.fromisoformat(pic.end).timestamp() * 1000)}")


@needs_prometheus
async def test_a_bad_query_is_recorded_on_its_sli_and_the_others_still_read(bad_deploy):
    sb, http = bad_deploy
    cfg = PrometheusConfig(url=sb.config.prometheus.url, slis=[
        Sli(name="broken", query="sum(rate(http_requests_total[5s]", threshold=1),
        Sli(name="nothing", query='sum(http_requests_total{service="no-such-service"})', threshold=1),
        Sli(name="capacity", query=f"sum(http_requests_max_in_flight{{{SVC}}})", threshold=10, comparison=">="),
    ])
    acts = PrometheusActivities(cfg, http)
    report = await until(_reads(acts), lambda r: _by_name(r)["capacity"].value is not None, "the good SLI's value",
                         timeout=30, poll=0.5)
    v = _by_name(report)
    assert v["broken"].ok is None and v["broken"].value is None
    assert _error(v["broken"]).startswith("bad query (bad_data): ") and "parse error" in _error(v["broken"])
    assert "\n" not in _error(v["broken"])
    assert v["nothing"].ok is None and v["nothing"].error == "no data: the query returned an empty result"
    assert v["capacity"].value == 120 and v["capacity"].ok is True
    assert breaches(report) == [] and verdict(report) is None
    assert unknowns(report)[0].startswith("broken: bad query (bad_data)")
    pic = await acts.sli_range(SliRangeQuery(incident_id="INC-SLI", start=(datetime.now(UTC) - timedelta(seconds=30)).isoformat(),
                                             end=datetime.now(UTC).isoformat()))
    s = {x.name: x for x in pic.series}
    assert _error(s["broken"]).startswith("bad query (bad_data)") and s["capacity"].points


async def test_without_the_binary_the_sandbox_runs_and_the_url_stays_unset(monkeypatch, capsys):
    import sandbox.prometheus_server as ps

    monkeypatch.setattr(ps, "find_prometheus", lambda: None)
    monkeypatch.setattr(ps, "_hinted", False)
    for _ in range(2):
        async with sandbox_environment("bad-deploy") as sb:
            assert sb.config.prometheus.url is None and "prometheus" not in sb.extras
    err = capsys.readouterr().err
    assert err.count("install Debian's prometheus package") == 1, err  # said once


# -- recorded, never raised ----------------------------------------------------------------


async def test_an_unreachable_prometheus_is_recorded_on_every_sli():
    cfg = PrometheusConfig(url=f"http://127.0.0.1:{free_port()}", timeout_seconds=2)
    async with httpx.AsyncClient(verify=tls_context()) as http:
        acts = PrometheusActivities(cfg, http)
        report = await acts.sli_values(SliQuery(incident_id="INC-SLI"))
        assert not report.skipped and len(report.values) == 3
        for v in report.values:
            assert v.ok is None and v.value is None and _error(v).startswith("Prometheus unreachable: ConnectError"), v
            assert "127.0.0.1" not in _error(v)  # the URL (which may carry credentials) is not repeated
        assert report.detail == "3 SLIs read, 3 without a value" and verdict(report) is None
        pic = await acts.sli_range(SliRangeQuery(incident_id="INC-SLI", start="2026-01-01T10:00:00Z", end="2026-01-01T11:00:00Z"))
        assert all(_error(s).startswith("Prometheus unreachable") for s in pic.series)


async def test_no_url_means_skipped():
    acts = PrometheusActivities(PrometheusConfig())
    report = await acts.sli_values(SliQuery(incident_id="INC-SLI", names=["5xx ratio", "apdex"]))
    assert report.skipped and report.detail == "prometheus.url is not set"
    assert [(v.name, v.ok) for v in report.values] == [("5xx ratio", None), ("apdex", None)]
    assert report.values[1].error == "not configured in prometheus.slis"
    assert breaches(report) == [] and verdict(report) is None
    pic = await acts.sli_range(SliRangeQuery(incident_id="INC-SLI", start="2026-01-01T10:00:00Z", end="2026-01-01T11:00:00Z"))
    assert pic.skipped and pic.detail == "prometheus.url is not set"
    # an hour at a 15 s step would be 240 points: fine; a day grows the step to stay at 600 points
    assert pic.step_seconds == 15
    day = await acts.sli_range(SliRangeQuery(incident_id="INC-SLI", start="2026-01-01T00:00:00Z", end="2026-01-02T00:00:00Z"))
    assert day.step_seconds == 144


async def test_answers_are_parsed_whatever_their_shape():
    """Against Prometheus' documented answers (MockTransport): scalar, several series (the worst
    counts), NaN, +Inf, HTTP errors with errorType, a body that is not the API's."""
    answers = {
        "scalar": {"status": "success", "data": {"resultType": "scalar", "result": [1.0, "0.02"]}},
        "pods": {"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"pod": "a"}, "value": [1.0, "0.1"]}, {"metric": {"pod": "b"}, "value": [1.0, "0.9"]}]}},
        "nan": {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1.0, "NaN"]}]}},
        "inf": {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1.0, "+Inf"]}]}},
        "slow": (503, {"status": "error", "errorType": "timeout", "error": "query timed out in expression evaluation"}),
        "exec": (422, {"status": "error", "errorType": "execution", "error": "many-to-many matching not allowed"}),
        "proxy": (502, "<html>Bad Gateway</html>"),
        "range": {"status": "success", "data": {"resultType": "matrix", "result": []}},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/prom/api/v1/query" and request.url.params["timeout"] == "5s"
        assert request.url.params["time"] == "1767261600.000"  # the request's `at`
        a = answers[request.url.params["query"]]
        status, body = a if isinstance(a, tuple) else (200, a)
        return httpx.Response(status, json=body) if isinstance(body, dict) else httpx.Response(status, text=body)

    cfg = PrometheusConfig(url="http://prom.example.org/prom/", slis=[
        Sli(name=n, query=n, threshold=0.5, unit="s" if n == "inf" else "") for n in answers])
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        report = await PrometheusActivities(cfg, http).sli_values(SliQuery(incident_id="INC-SLI", at="2026-01-01T10:00:00Z"))
    v = _by_name(report)
    assert (v["scalar"].value, v["scalar"].ok) == (0.02, True)
    assert (v["pods"].value, v["pods"].ok) == (0.9, False)  # the worst pod
    assert v["nan"].ok is None and _error(v["nan"]).startswith("NaN")
    assert v["inf"].value is None and v["inf"].ok is False and v["inf"].error == "value is +Inf"
    assert v["slow"].error == "query timed out (timeout): query timed out in expression evaluation"
    assert v["exec"].error == "query failed (execution): many-to-many matching not allowed"
    assert v["proxy"].error == "HTTP 502: not a Prometheus API answer"
    assert v["range"].error == "the query gives a matrix, not an instant value"
    assert breaches(report) == ["pods 0.9 (limit < 0.5)", "inf value is +Inf (limit < 0.5 s)"]
    assert report.at == "2026-01-01T10:00:00+00:00"
    # the result survives the JSON round trip Temporal gives it (no NaN/Inf in it)
    assert SliReport.model_validate_json(report.model_dump_json()) == report


# -- config ----------------------------------------------------------------------------------


def test_config_defaults_env_override_and_history():
    cfg = CodeBlueConfig()
    p = cfg.prometheus
    assert p.url is None and [s.name for s in p.slis] == ["5xx ratio", "p99 latency", "saturation"]
    assert (p.slis[0].threshold, p.slis[0].comparison) == (0.05, "<")
    assert 'code=~"5.."' in p.slis[0].query and "histogram_quantile(0.99" in p.slis[1].query
    assert p.analysis.model_dump() == {"interval_seconds": 30, "count": 5, "successes": 3, "failure_limit": 2}
    env = {"CODEBLUE_PROMETHEUS_URL": "https://ops:s3cret@prometheus.example.org:9090/"}
    wcfg = cfg.with_env_secrets(env)
    assert wcfg.prometheus.url == "https://ops:s3cret@prometheus.example.org:9090"
    assert wcfg.for_history().prometheus.url == "https://prometheus.example.org:9090"  # credentials stay in the worker
    with pytest.raises(ConfigError, match="CODEBLUE_PROMETHEUS_URL: must be an http"):
        cfg.with_env_secrets({"CODEBLUE_PROMETHEUS_URL": "prometheus:9090"})
    with pytest.raises(ValueError, match="unknown placeholder {tenant}"):
        PrometheusConfig(dashboards={"g": "https://g/?t={tenant}"})
    with pytest.raises(ValueError, match="unique"):
        PrometheusConfig(slis=[Sli(name="a", query="1", threshold=1)] * 2)
    with pytest.raises(ValueError, match="successes"):
        CodeBlueConfig.model_validate({"prometheus": {"analysis": {"count": 2, "successes": 3}}})
    with pytest.raises(ValueError, match="ISO 8601"):
        SliQuery(incident_id="INC-1", at="yesterday")


def test_the_sandbox_gateway_metrics_follow_its_health():
    now = [0.0]
    m = GatewayMetrics(clock=lambda: now[0])

    def scrape() -> dict:
        from prometheus_client import generate_latest

        out = {}
        for fam in text_string_to_metric_families(generate_latest(m.registry).decode()):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    now[0] = 10.0
    m.advance(healthy=False)
    bad = scrape()
    total = sum(v for (n, _), v in bad.items() if n == "http_requests_total")
    errors = sum(v for (n, lab), v in bad.items() if n == "http_requests_total" and dict(lab)["code"].startswith("5"))
    assert total == 400 and errors / total > 0.3
    assert all(dict(lab)["service"] == "api-gateway" for (_, lab) in bad)
    slow = bad[("http_request_duration_seconds_bucket", (("le", "1.0"), ("service", "api-gateway")))]
    assert slow / total < 0.5  # most requests slower than a second
    now[0] = 20.0
    m.advance(healthy=True)
    good = scrape()
    total2 = sum(v for (n, _), v in good.items() if n == "http_requests_total")
    errors2 = sum(v for (n, lab), v in good.items() if n == "http_requests_total" and dict(lab)["code"].startswith("5"))
    assert total2 == 800 and (errors2 - errors) / (total2 - total) < 0.01
    assert all(good[k] >= v for k, v in bad.items() if k[0].endswith(("_total", "_bucket", "_count")))  # counters only grow
    assert good[("http_requests_in_flight", (("service", "api-gateway"),))] < 10


async def test_the_fake_world_answers_healthy_slis_by_default():
    world = World()
    acts = {_name(a): a for a in world.activities()}
    report = await acts["sli_values"](SliQuery(incident_id="INC-FAKE"))
    assert verdict(report) is True and [v.name for v in report.values] == ["5xx ratio", "p99 latency", "saturation"]
    world.slis["5xx ratio"] = 0.31
    assert breaches(await acts["sli_values"](SliQuery(incident_id="INC-FAKE"))) == ["5xx ratio 0.31 (limit < 0.05)"]
    assert world.calls["sli_values"] == 2


async def test_the_worker_registers_the_sli_activities():
    from worker.main import activities_for

    async with httpx.AsyncClient(verify=tls_context()) as http:
        names = {_name(a) for a in activities_for(_sandboxless_config(), http)}
    assert {"sli_values", "sli_range"} <= names


def _name(fn) -> str | None:  # None: a dynamic activity
    defn = activity._Definition.from_callable(fn)
    assert defn is not None, fn
    return defn.name


def _sandboxless_config() -> CodeBlueConfig:
    # a kubeconfig that loads (activities_for builds its clients eagerly), pointing nowhere
    import tempfile

    path = os.path.join(tempfile.mkdtemp(prefix="codeblue-kube-"), "config")
    with open(path, "w") as f:
        f.write("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n"
                "users: [{name: u, user: {}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n")
    return CodeBlueConfig.model_validate({"kubernetes": {"kubeconfig": path}})
