"""Workflows name activities by their methods (`KubernetesActivities.pod_status`); the activity
type recorded in history is the method's name. Renaming a method would rename the type: open
workflows would stop replaying and the fakes (registered by name) would stop answering. This
list pins the names; a rename keeps the old one with `@activity.defn(name="old_name")`."""

from __future__ import annotations

import inspect
import pkgutil
from importlib import import_module

from temporalio import activity

import activities
from sandbox.memory_world import World

PINNED = {
    "incident_authority", "incident_report", "reopen_incident", "worker_config",
    "pod_status", "service_status", "deployment_status", "gateway_logs", "pod_metrics",
    "scale_deployment", "rollout_restart", "wait_rollout", "db_check",
    "helm_history", "helm_rollback", "helm_revision_values", "helm_preflight", "helm_upgrade",
    "release_ready", "read_known_good", "record_known_good",
    "rds_preflight", "rds_restore", "rds_wait_available", "rds_instance_status", "rds_delete_restored",
    "db_verify_restored", "db_secret_backup", "db_secret_point", "db_secret_restore",
    "describe_cache_cluster", "redis_stats", "redis_flush",
    "probe_health", "page", "change_event", "status_page", "post_message", "slack_post_proposals", "slack_update_proposal",
    "slack_open_channel",
    "sli_values", "sli_range", "smoke_check", "schedule_postmortem",
    "acquire_target", "release_target",
}


def _defined_names() -> set[str]:
    names: set[str] = set()
    for mod in pkgutil.iter_modules(activities.__path__):
        m = import_module(f"activities.{mod.name}")
        for obj in vars(m).values():
            members = vars(obj).values() if inspect.isclass(obj) and obj.__module__ == m.__name__ else [obj]
            for fn in members:
                if callable(fn) and getattr(fn, "__module__", None) == m.__name__:
                    d = activity._Definition.from_callable(fn)  # the SDK's own reading of the decorator
                    if d is not None and d.name:
                        names.add(d.name)
    return names


def test_activity_type_names_are_pinned() -> None:
    assert _defined_names() == PINNED


def test_the_in_memory_world_answers_pinned_names() -> None:
    fakes = {activity._Definition.must_from_callable(fn).name for fn in World().activities()}
    assert fakes <= PINNED, fakes - PINNED
