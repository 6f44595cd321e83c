"""A Backstage software catalog (`catalog-info.yaml`) read into CodeBlue's service catalog.

Each `kind: Component` entity becomes a service (`domain.config.ServiceEntry`) named by its
`metadata.name`. Read from it:

- `backstage.io/kubernetes-id`: the deployment (as the Kubernetes plugin labels workloads);
  `codeblue.io/deployments` (comma-separated) when there are several
- `backstage.io/kubernetes-namespace`: the namespace
- `codeblue.io/helm-release`, `codeblue.io/helm-chart`, `codeblue.io/health-url`, `codeblue.io/on-call`
- `codeblue.io/rds-instance`, `codeblue.io/database-secret`, `codeblue.io/cache-cluster`: its own
  database instance, the Secret holding its database URL, and its ElastiCache cluster
- `codeblue.io/pagerduty-routing-key-env`: the variable holding its PagerDuty routing key (the
  PagerDuty plugin's `pagerduty.com/integration-key` is a secret and is never read from a file)
- `slack.com/channel` (or `codeblue.io/slack-channel`): its incident channel
- `metadata.links`: dashboards by title (a link titled "Runbook" is its runbook)
- `spec.dependsOn`: entity references (`resource:default/healthcare-db` -> `healthcare-db`)

Other kinds (Resource, System, API, Group, ...) are dependencies' names only. The result is
each service's fields; `domain.config.load_config` validates them as `ServiceEntry`s. Written by hand on
PyYAML: Backstage's own catalog model is TypeScript, and no maintained Python reader exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

PREFIX = "codeblue.io/"


def _ref_name(ref: str) -> str:
    """`[kind:][namespace/]name` -> name."""
    return ref.split(":", 1)[-1].split("/", 1)[-1]


class CatalogError(ValueError):
    """A catalog file that cannot be read; the message is one line naming where."""


def _entry(entity: dict[str, Any], where: str) -> tuple[str, dict[str, Any]]:
    meta = entity.get("metadata") or {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise CatalogError(f"{where}: a Component without metadata.name")
    ann = {str(k): str(v) for k, v in (meta.get("annotations") or {}).items()}
    spec = entity.get("spec") or {}
    deployments = [d.strip() for d in ann.get(PREFIX + "deployments", "").split(",") if d.strip()]
    if not deployments and ann.get("backstage.io/kubernetes-id"):
        deployments = [ann["backstage.io/kubernetes-id"]]
    links = [lk for lk in meta.get("links") or [] if isinstance(lk, dict) and lk.get("url")]
    runbook = next((lk["url"] for lk in links if str(lk.get("title", "")).lower() == "runbook"), None)
    dashboards = {str(lk.get("title") or lk["url"]): str(lk["url"]) for lk in links if lk["url"] != runbook}
    fields: dict[str, Any] = {
        "namespace": ann.get("backstage.io/kubernetes-namespace"),
        "deployments": deployments,
        "helm_release": ann.get(PREFIX + "helm-release"),
        "helm_chart": ann.get(PREFIX + "helm-chart"),
        "health_url": ann.get(PREFIX + "health-url"),
        "on_call": ann.get(PREFIX + "on-call"),
        "rds_instance": ann.get(PREFIX + "rds-instance"),
        "database_secret": ann.get(PREFIX + "database-secret"),
        "cache_cluster": ann.get(PREFIX + "cache-cluster"),
        "pagerduty_routing_key_env": ann.get(PREFIX + "pagerduty-routing-key-env"),
        "slack_channel": ann.get("slack.com/channel") or ann.get(PREFIX + "slack-channel"),
        "dashboards": dashboards,
        "runbook_url": runbook,
        "depends_on": [_ref_name(str(r)) for r in spec.get("dependsOn") or []],
    }
    return name, {k: v for k, v in fields.items() if v not in (None, [], {})}


def read_catalog(text: str, source: str = "catalog") -> dict[str, dict[str, Any]]:
    """Every Component of a (multi-document) catalog file, by name."""
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise CatalogError(f"{source}:{f' line {mark.line + 1}' if mark else ''} not valid YAML") from None
    out: dict[str, dict[str, Any]] = {}
    for i, doc in enumerate(docs, 1):
        if not isinstance(doc, dict):
            continue
        if doc.get("kind") == "Component":
            name, entry = _entry(doc, f"{source} (document {i})")
            if name in out:
                raise CatalogError(f"{source} (document {i}): Component {name} is defined twice")
            out[name] = entry
    return out


def read_catalog_file(path: Path) -> dict[str, dict[str, Any]]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise CatalogError(f"{path}: backstage_catalog file not found") from None
    except OSError as e:
        raise CatalogError(f"{path}: cannot read: {e.strerror}") from None
    return read_catalog(text, str(path))
