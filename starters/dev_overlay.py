"""`codeblue dev --sandbox NAME --config FILE`: the user's config, acting on the sandbox.

The sandbox decides WHERE CodeBlue acts: its Kubernetes API and the names it seeds there, its
helm stand-in, its receiver (health, pager, status page, webhooks, Slack), its Prometheus, its
AWS emulator, its Redis and PostgreSQL. The user's file decides everything else: who may
approve, the two-person rule, Slack users, SLI definitions, mitigation policy, limits, SLA
clocks, timings, API tokens. SANDBOX_KEYS below is the one list of what the sandbox decides.

This module works on two CodeBlueConfig objects only: it never imports the drill world.
"""

from __future__ import annotations

import copy
from typing import Any, TypeVar

from pydantic import BaseModel

from domain.config import PROMETHEUS_URL_ENV, SECRET_URL_ENV, CodeBlueConfig

# Dotted keys taken from the sandbox's config, each with why. A None there counts too: the
# sandbox has none of it, so the step is skipped rather than reaching the real one.
SANDBOX_KEYS: dict[str, str] = {
    # --- the cluster: the sandbox's Kubernetes API and what its scenario seeds there
    "kubernetes.kubeconfig": "the sandbox's Kubernetes API server (its own kubeconfig)",
    "kubernetes.context": "a context of your kubeconfig does not exist in the sandbox's",
    "kubernetes.namespace": "the namespace the scenario seeds",
    "kubernetes.gateway_deployment": "the deployment the scenario seeds",
    "services": "the multi-service scenarios' catalog: the services they seed, each with its release and "
                "its /health on the receiver (yours name production's)",
    "database.secret_name": "the database Secret the scenario seeds in that namespace",
    "database.secret_key": "the key of that Secret the scenario fills",
    "database.check_command": "runs in a gateway pod: the sandbox's pods exec nothing (CodeBlue's own check)",
    # --- helm: the stand-in that reads and writes the sandbox cluster's release history
    "helm.command": "the sandbox's helm stand-in instead of your helm binary",
    "helm.release": "the release whose history the scenario seeds",
    "helm.chart": "the chart the stand-in upgrades to (failed-redeploy makes a local one)",
    # --- what the probes and notifications reach: the sandbox receiver
    "health.url": "the sandbox gateway's /health (answers as its pods are)",
    "notifications.slack_webhook_url": "the receiver's Slack webhook",
    "notifications.statuspage_url": "the receiver's status page",
    "notifications.statuspage_page_id": "a page of the receiver, not of your Statuspage",
    "notifications.statuspage_api_key_env": "which variable's key is sent: the sandbox's, not your Statuspage key's",
    "notifications.pagerduty_url": "the receiver's pager",
    "notifications.pagerduty_routing_key_env": "the variable the sandbox sets for its pager, not your real key's",
    "notifications.pagerduty_routing_keys_env": "yours name real keys, or variables unset here (pages would fail)",
    "notifications.webhook_url": "the receiver's generic webhook",
    "postincident.calendar_webhook_url": "would book a real post-mortem meeting; the sandbox has none (skipped)",
    "postincident.smoke_checks": "request your production URLs; the sandbox serves none of them",
    # --- Slack: the receiver's Web API stand-in
    "slack.api_url": "the Slack Web API stand-in",
    "slack.channel": "the one channel the stand-in knows",
    "slack.bot_token_env": "the variable of the token the stand-in accepts",
    "slack.signing_secret_env": "the variable of the secret the stand-in signs clicks with",
    # --- SLIs: the sandbox's Prometheus (none when the binary is missing: SLIs skipped)
    "prometheus.url": "the sandbox's Prometheus, scraping its gateway (never your production data)",
    # --- AWS: the emulator and the names its scenario seeds (db-outage, db-connections, cache-poisoned)
    "aws.endpoint_url": "the emulator of the scenarios that have one; the others have none, as without --config",
    "aws.region": "the region the emulator's resources are in",
    "aws.rds_instance": "the RDS instance the scenario seeds",
    "aws.rds_snapshot": "the snapshot the scenario seeds",
    "aws.elasticache_cluster": "the cache cluster the scenario seeds",
    "restore.endpoint_override": "the restored instance resolves to the sandbox's PostgreSQL",
    "restore.sanity_query": "runs on the sandbox's PostgreSQL, which has none of your tables: yours would fail the cutover",
    # --- Redis: the sandbox's own server (no AUTH, no TLS, the keys seeded in db 0)
    "cache.endpoint_override": "the sandbox's Redis",
    "cache.db": "the database the scenario seeds its keys in",
    "cache.tls": "the sandbox's Redis speaks plain TCP",
    "cache.password_env": "the sandbox's Redis has no password: your AUTH token would be refused",
}

# What the sandbox's config sets that the user's config keeps, and why (the sandbox's values
# apply only without --config). tests/starters/test_dev_overlay.py checks that every key a scenario
# sets is in one of the two lists.
USER_KEYS: dict[str, str] = {
    "prometheus.slis": "your SLI definitions; they query the sandbox's Prometheus, which has only its "
                       "gateway's metrics: an SLI on other metrics reads nothing there (see sli_note)",
    "prometheus.analysis": "your analysis policy (the sandbox reads every 6 s)",
    "health.attempts": "your probe policy",
    "health.timeout_seconds": "your probe policy",
    "helm.timeout_seconds": "your timing (the sandbox: 60 s)",
    "mitigation.rollout_timeout_seconds": "your timing (the sandbox: 60 s)",
    "postincident.probe_interval_seconds": "your timing (the sandbox probes every second)",
    "restore.poll_interval_seconds": "your timing (the sandbox polls every 0.5 s)",
    "restore.poll_window_seconds": "your timing",
    "recovery": "your verification policy and timings",
    "memory": "your sampling and scaling policy",
}

# Environment variables the worker reads OVER its config (CodeBlueConfig.with_env_secrets): set,
# they would take a drill's notifications, calendar or SLIs out of the sandbox.
OVERRIDING_ENV = (*SECRET_URL_ENV.values(), PROMETHEUS_URL_ENV)


def get(cfg: BaseModel, key: str) -> Any:
    """The value at a dotted key (`kubernetes.namespace`)."""
    value: Any = cfg
    for part in key.split("."):
        value = getattr(value, part)
    return value


M = TypeVar("M", bound=BaseModel)


def _with(model: M, parts: list[str], value: Any) -> M:
    """A copy of `model` with `value` (a copy of it) at the path `parts`."""
    head, rest = parts[0], parts[1:]
    new = _with(getattr(model, head), rest, value) if rest else copy.deepcopy(value)
    return model.model_copy(update={head: new})


def overlay(user: CodeBlueConfig, sandbox: CodeBlueConfig) -> tuple[CodeBlueConfig, list[str]]:
    """`user` with the sandbox's value at every SANDBOX_KEYS key, and the keys where that
    changed the user's value (in SANDBOX_KEYS order). Neither argument is modified."""
    merged = user
    replaced: list[str] = []
    for key in SANDBOX_KEYS:
        theirs = get(sandbox, key)
        if get(merged, key) != theirs:
            merged = _with(merged, key.split("."), theirs)
            replaced.append(key)
    return merged, replaced


def replaced_line(source: str, replaced: list[str]) -> str:
    """The one line `codeblue dev` prints: which of the user's keys the sandbox's replaced."""
    head = f"Your config ({source}) with the sandbox's endpoints: "
    kept = ("everything else is yours (approvers, two-person rule, Slack users, SLIs, policy, limits, "
            "timings, API tokens)")
    if not replaced:
        return head + f"none of its endpoint keys differed from the sandbox's; {kept}"
    return head + f"replaced {', '.join(replaced)}; {kept}"


def sli_note(merged: CodeBlueConfig, sandbox: CodeBlueConfig) -> str | None:
    """A line when the user's SLIs are not the sandbox's and run on the sandbox's Prometheus."""
    if not merged.prometheus.url or merged.prometheus.slis == sandbox.prometheus.slis:
        return None
    names = ", ".join(s.name for s in merged.prometheus.slis) or "none"
    return (f"Your prometheus.slis are kept ({names}): they query the sandbox's Prometheus, which has only "
            "the sandbox gateway's metrics (those its own SLIs read), so an SLI on other metrics reads nothing here")
