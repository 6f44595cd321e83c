"""`codeblue dev --sandbox NAME --config FILE`: the user's config with the sandbox's endpoints
(starters/dev_overlay.py), as a function and as the command a responder runs."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
import yaml
from pydantic import BaseModel

from domain.config import (
    ApiConfig,
    ApiToken,
    CodeBlueConfig,
    HelmConfig,
    KubernetesConfig,
    LimitsConfig,
    MitigationConfig,
    NotificationConfig,
    PostIncidentConfig,
    SlackConfig,
    SmokeCheck,
)
from domain.prometheus import PrometheusConfig, Sli
from sandbox.scenarios import SCENARIOS, base_config, sandbox_prometheus
from starters.dev_overlay import SANDBOX_KEYS, USER_KEYS, get, overlay, replaced_line, sli_note
from tests.support.cli import stop

ROOT = Path(__file__).resolve().parents[2]


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# ---------------------------------------------------------------------------- the two configs


def fake_world() -> SimpleNamespace:
    """What base_config and the scenarios' configure read, with made-up addresses."""
    rx = SimpleNamespace(
        slack_url="http://127.0.0.1:7001/slack", statuspage_url="http://127.0.0.1:7001/statuspage/v1",
        pagerduty_url="http://127.0.0.1:7001/pagerduty", webhook_url="http://127.0.0.1:7001/webhook",
        health_url="http://127.0.0.1:7001/health", slack_api_url="http://127.0.0.1:7001/slack-api/api/",
        service_health_url=lambda name: f"http://127.0.0.1:7001/health/{name}",
    )
    cluster = SimpleNamespace(kubeconfig_path=Path("/tmp/codeblue-sandbox-x/kubeconfig"))
    extras = {
        "aws": SimpleNamespace(endpoint_url="http://127.0.0.1:7002", region="us-east-1"),
        "redis": SimpleNamespace(address="127.0.0.1:7003"),
        "chart": Path("/tmp/codeblue-chart-x/healthcare-platform"),
    }
    return SimpleNamespace(cluster=cluster, rx=rx, receiver=rx, extras=extras)


def sandbox_config(world: SimpleNamespace | None = None, scenario: str = "bad-deploy") -> CodeBlueConfig:
    """The config sandbox_environment(scenario) builds, on the fake world (Prometheus on)."""
    w = world or fake_world()
    cfg = base_config(cast(Any, w.cluster), cast(Any, w.rx))
    cfg = cfg.model_copy(update={"prometheus": sandbox_prometheus("http://127.0.0.1:7004")})
    sc = SCENARIOS[scenario]
    return sc.configure(cfg, cast(Any, w)) if sc.configure else cfg


USER_SLIS = [Sli(name="checkout errors", query="sum(rate(checkout_errors_total[5m]))", threshold=1.0)]


def user_config() -> CodeBlueConfig:
    """A production setup: its own cluster, helm, receivers, Slack, Prometheus, and its people."""
    return CodeBlueConfig(
        kubernetes=KubernetesConfig(namespace="clinical-prod", gateway_deployment="edge-gateway",
                                    kubeconfig="/etc/codeblue/kubeconfig", context="prod-eu",
                                    error_patterns={"db": "deadlock"}, log_tail_lines=200),
        helm=HelmConfig(release="clinical", chart="oci://registry.example.org/charts/clinical",
                        command=["/usr/local/bin/helm"], timeout_seconds=900),
        notifications=NotificationConfig(slack_webhook_url="https://hooks.slack.com/services/T/B/X",
                                         pagerduty_url="https://events.pagerduty.com/v2/enqueue",
                                         pagerduty_routing_keys_env={"security": "PD_SECURITY_KEY"}),
        mitigation=MitigationConfig(approvers=["bob", "carol"], two_person=["rollback", "restore"],
                                    scale_replicas=8),
        limits=LimitsConfig(notes_listed_max=30),
        postincident=PostIncidentConfig(smoke_checks=[SmokeCheck(name="login", url="https://app.example.org/login")],
                                        probe_interval_seconds=120),
        slack=SlackConfig(channel="C0PRODOPS", users={"U01ALICE": "alice", "U02BOB": "bob"},
                          bot_token_env="PROD_SLACK_BOT_TOKEN"),
        prometheus=PrometheusConfig(url="https://prometheus.example.org", slis=USER_SLIS,
                                    dashboards={"grafana": "https://grafana.example.org/d/gw?from={from}&to={to}"}),
        api=ApiConfig(tokens=[ApiToken(name="alice", sha256=sha("alice-secret"), roles=["commander"])],
                      alert_default_severity="P2"),
    )


# ---------------------------------------------------------------------------- overlay()


def test_the_users_people_and_policy_survive():
    user, sb = user_config(), sandbox_config()
    merged, _ = overlay(user, sb)
    assert merged.slack.users == {"U01ALICE": "alice", "U02BOB": "bob"}
    assert merged.mitigation.approvers == ["bob", "carol"]
    assert merged.mitigation.two_person == ["rollback", "restore"]
    assert merged.mitigation.scale_replicas == 8
    assert merged.mitigation.rollout_timeout_seconds == user.mitigation.rollout_timeout_seconds  # not the drill's 60
    assert merged.prometheus.slis == USER_SLIS
    assert merged.prometheus.dashboards == user.prometheus.dashboards
    assert merged.prometheus.analysis == user.prometheus.analysis  # the drill reads every 6 s; yours stays
    assert merged.api == user.api and merged.api.tokens[0].name == "alice"  # excluded from dumps, kept here
    assert merged.limits.notes_listed_max == 30
    assert merged.kubernetes.error_patterns == {"db": "deadlock"} and merged.kubernetes.log_tail_lines == 200
    assert merged.helm.timeout_seconds == 900
    assert merged.postincident.probe_interval_seconds == 120
    for section in ("contacts", "sla", "ui", "recovery", "memory", "limits"):
        assert getattr(merged, section) == getattr(user, section), section


def test_the_sandboxs_endpoints_win():
    user, sb = user_config(), sandbox_config()
    merged, _ = overlay(user, sb)
    for key in SANDBOX_KEYS:
        assert get(merged, key) == get(sb, key), key
    assert merged.kubernetes.kubeconfig == "/tmp/codeblue-sandbox-x/kubeconfig" and merged.kubernetes.context is None
    assert merged.helm.command == [sys.executable, "-m", "sandbox.helm_cli"]
    assert merged.prometheus.url == "http://127.0.0.1:7004"
    assert merged.postincident.smoke_checks == [] and merged.postincident.calendar_webhook_url is None
    assert merged.slack.bot_token_env == "CODEBLUE_SLACK_BOT_TOKEN"
    # neither input changed, and the merged config shares no list with the sandbox's
    assert user == user_config() and sb == sandbox_config()
    assert merged.helm.command is not sb.helm.command
    CodeBlueConfig.model_validate(merged.model_dump())  # still a valid config


def test_the_replaced_keys_are_exactly_those_that_differed():
    _, replaced = overlay(user_config(), sandbox_config())
    assert replaced == [
        "kubernetes.kubeconfig", "kubernetes.context", "kubernetes.namespace", "kubernetes.gateway_deployment",
        "helm.command", "helm.release", "helm.chart",
        "health.url",
        "notifications.slack_webhook_url", "notifications.statuspage_url", "notifications.pagerduty_url",
        "notifications.pagerduty_routing_keys_env", "notifications.webhook_url",
        "postincident.smoke_checks",
        "slack.api_url", "slack.channel", "slack.bot_token_env",
        "prometheus.url",
    ]
    # the same user on the db-outage sandbox: the AWS emulator and the restored endpoint too
    _, replaced = overlay(user_config(), sandbox_config(scenario="db-outage"))
    assert {"aws.endpoint_url", "restore.endpoint_override"} <= set(replaced)
    assert "aws.region" not in replaced  # the emulator's region is the default one: nothing to say


def test_a_config_already_on_the_sandbox_replaces_nothing():
    sb = sandbox_config()
    mine = sb.model_copy(update={"mitigation": sb.mitigation.model_copy(update={"approvers": ["bob"]})})
    merged, replaced = overlay(mine, sb)
    assert replaced == [] and merged == mine
    assert "none of its endpoint keys differed" in replaced_line("my.yaml", replaced)


def test_the_printed_line_names_every_replaced_key():
    _, replaced = overlay(user_config(), sandbox_config())
    line = replaced_line("my.yaml", replaced)
    assert line.startswith("Your config (my.yaml) with the sandbox's endpoints: replaced kubernetes.kubeconfig, ")
    assert f"replaced {', '.join(replaced)}; everything else is yours" in line


def test_the_sli_note_says_the_users_slis_may_read_nothing():
    user, sb = user_config(), sandbox_config()
    merged, _ = overlay(user, sb)
    note = sli_note(merged, sb)
    assert note is not None and "checkout errors" in note and "reads nothing" in note
    same, _ = overlay(user.model_copy(update={"prometheus": sb.prometheus}), sb)
    assert sli_note(same, sb) is None  # the sandbox's own SLIs: nothing to say
    no_prom = sb.model_copy(update={"prometheus": PrometheusConfig()})
    merged, _ = overlay(user, no_prom)
    assert merged.prometheus.url is None and sli_note(merged, no_prom) is None  # skipped: dev says so already


def _leaves(model: BaseModel, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            yield from _leaves(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", value


def _listed(key: str, keys: dict[str, str]) -> bool:
    parts = key.split(".")
    return any(".".join(parts[:i]) in keys for i in range(1, len(parts) + 1))


def test_the_two_lists_name_real_keys_and_do_not_overlap():
    defaults = CodeBlueConfig()
    for key in (*SANDBOX_KEYS, *USER_KEYS):
        get(defaults, key)  # AttributeError names a key that does not exist
    assert not [k for k in SANDBOX_KEYS if _listed(k, USER_KEYS)]
    assert not [k for k in USER_KEYS if _listed(k, SANDBOX_KEYS)]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_key_a_scenario_sets_is_decided(scenario):
    """A key a scenario sets is either taken from the sandbox or documented as the user's:
    a new sandbox endpoint cannot slip past the overlay unnoticed."""
    defaults = dict(_leaves(CodeBlueConfig()))
    set_by_sandbox = [k for k, v in _leaves(sandbox_config(scenario=scenario)) if v != defaults[k]]
    assert set_by_sandbox
    undecided = [k for k in set_by_sandbox if not _listed(k, SANDBOX_KEYS) and not _listed(k, USER_KEYS)]
    assert not undecided, f"add them to SANDBOX_KEYS or USER_KEYS in starters/dev_overlay.py: {undecided}"


# ---------------------------------------------------------------------------- codeblue dev


async def test_codeblue_dev_runs_the_users_config_on_the_sandbox(tmp_path: Path):
    """`codeblue dev --sandbox bad-deploy --config my.yaml`: it names the keys it replaced; the
    API takes the file's tokens; the incident on the sandbox's cluster follows the file's
    two-person rule and approvers."""
    from starters.ports import free_port

    user_yaml = {
        "kubernetes": {"namespace": "clinical-prod", "gateway_deployment": "edge-gateway",
                       "kubeconfig": str(tmp_path / "no-such-kubeconfig"), "context": "prod-eu"},
        "helm": {"release": "clinical", "command": [str(tmp_path / "no-such-helm")]},
        "health": {"url": "http://127.0.0.1:9/health"},
        "notifications": {"webhook_url": "http://127.0.0.1:9/hook", "slack_webhook_url": "http://127.0.0.1:9/slack"},
        "mitigation": {"approvers": ["bob"], "two_person": ["rollback"]},
        "slack": {"channel": "C0PRODOPS", "users": {"U01ALICE": "alice", "U02BOB": "bob"}},
        "prometheus": {"url": "http://127.0.0.1:9",
                       "slis": [{"name": "checkout errors", "query": "sum(rate(checkout_errors_total[1m]))",
                                 "threshold": 1}]},
        "api": {"tokens": [{"name": "alice", "sha256": sha("alice-secret"), "roles": ["commander"]},
                           {"name": "bob", "sha256": sha("bob-secret"), "roles": ["commander"]}]},
    }
    config = tmp_path / "my.yaml"
    config.write_text(yaml.safe_dump(user_yaml))
    expected = ["kubernetes.kubeconfig", "kubernetes.context", "kubernetes.namespace", "kubernetes.gateway_deployment",
                "helm.command", "helm.release", "health.url", "notifications.slack_webhook_url",
                "notifications.statuspage_url", "notifications.pagerduty_url", "notifications.webhook_url",
                "slack.api_url", "slack.channel", "prometheus.url"]

    # this checkout's code (not whatever `codeblue` is on PATH), in a clean directory
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CODEBLUE_", "KUBE"))}
    env.update(PYTHONPATH=str(ROOT), CODEBLUE_WEBHOOK_URL="http://127.0.0.1:9/from-env")
    api_port = free_port()
    ports = ["--port", str(free_port()), "--ui-port", str(free_port()), "--api-port", str(api_port)]
    log_path = tmp_path / "dev.log"
    log = log_path.open("w+")
    dev = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from starters.cli import main; main()", "dev", "--sandbox", "bad-deploy",
        "--config", str(config), *ports, cwd=tmp_path, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        for _ in range(480):
            if "Ctrl-C stops everything" in log_path.read_text() or dev.returncode is not None:
                break
            await asyncio.sleep(0.25)
        printed = log_path.read_text()
        assert (tmp_path / ".codeblue" / "dev.env").exists(), printed[-3000:]
        assert f"Your config ({config}) with the sandbox's endpoints: replaced {', '.join(expected)}; " in printed, printed
        assert "Ignored $CODEBLUE_WEBHOOK_URL for this run" in printed, printed
        if "Sandbox Prometheus at" in printed:
            assert "Your prometheus.slis are kept (checkout errors)" in printed, printed

        alice = {"Authorization": "Bearer alice-secret"}
        bob = {"Authorization": "Bearer bob-secret"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}", timeout=90) as http:
            who = await http.get("/whoami", headers=alice)  # the file's api section
            assert who.status_code == 200 and who.json()["name"] == "alice" and "commander" in who.json()["roles"], who.text

            started = await http.post("/incidents", headers=alice,
                                      json={"title": "api-gateway down", "severity": "P0", "commander": "alice"})
            assert started.status_code == 201, started.text
            iid = started.json()["incident_id"]

            async def rollback() -> dict[str, Any] | None:
                report = (await http.get(f"/incidents/{iid}", headers=alice)).json()
                return next((a for a in report.get("actions", []) if a["id"] == "rollback"), None)

            # proposed only once the diagnostics found the bad release: on the sandbox's cluster
            for _ in range(240):
                if await rollback():
                    break
                await asyncio.sleep(0.5)
            assert (await rollback() or {}).get("state") == "proposed", (await http.get(f"/incidents/{iid}", headers=alice)).text

            first = await http.post(f"/incidents/{iid}/decisions", headers=alice, json={"action_id": "rollback", "approve": True})
            assert first.status_code == 200, first.text
            assert first.json()["state"] == "proposed" and "1/2" in first.json()["message"], first.text  # two_person
            second = await http.post(f"/incidents/{iid}/decisions", headers=bob, json={"action_id": "rollback", "approve": True})
            assert second.status_code == 200, second.text  # bob decides: one of the file's approvers
            assert second.json()["state"] == "approved", second.text

            # and it runs with the sandbox's helm stand-in on the sandbox's release
            for _ in range(240):
                act = await rollback()
                if act and act["state"] not in ("proposed", "approved"):
                    break
                await asyncio.sleep(0.5)
            assert act and act["state"] == "executed" and act["approved_by"] == "alice, bob", act
    finally:
        await stop(dev)
        log.close()
