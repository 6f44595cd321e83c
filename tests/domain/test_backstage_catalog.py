"""A Backstage catalog file becomes the worker's service catalog: Components and the
annotations the README lists, dependencies by name, secrets never read; a bad file is one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from domain.catalog import for_service
from domain.config import ConfigError, ServiceEntry, load_config

DATA = Path(__file__).parent / "data"


def _config(tmp_path: Path, extra: str = "") -> Path:
    shutil.copy(DATA / "catalog-info.yaml", tmp_path / "catalog-info.yaml")
    cfg = tmp_path / "codeblue.yaml"
    cfg.write_text("backstage_catalog: catalog-info.yaml\n" + extra)
    return cfg


def test_components_become_services_with_their_annotations(tmp_path):
    cfg = load_config(_config(tmp_path))
    assert sorted(cfg.services) == ["api-gateway", "patient-portal"]  # Resources, System, Group: not services
    gw = cfg.services["api-gateway"]
    assert gw == ServiceEntry(
        namespace="healthcare-prod", deployments=["api-gateway"], helm_release="healthcare-platform",
        helm_chart="./infra/helm/healthcare-platform", health_url="https://api.healthcare-platform.com/health",
        dashboards={"Gateway overview": "https://grafana.example.org/d/gateway"},
        runbook_url="https://wiki.example.org/runbooks/gateway", depends_on=["healthcare-db", "healthcare-redis"])
    portal = cfg.services["patient-portal"]
    assert portal.deployments == ["patient-portal", "patient-portal-worker"] and portal.slack_channel == "#portal-oncall"
    assert portal.depends_on == ["api-gateway", "healthcare-db"] and portal.on_call == "+1-555-0199"
    # its pages and change events go to its own PagerDuty service; the integration key in the file is never read
    assert cfg.notifications.pagerduty_service_routing_keys_env == {"patient-portal": "CODEBLUE_PD_KEY_PORTAL"}
    assert "do-not-read-this-secret" not in cfg.model_dump_json()
    acting = for_service(cfg, "patient-portal")
    assert (acting.kubernetes.namespace, acting.kubernetes.gateway_deployment, acting.helm.release) == (
        "portal-prod", "patient-portal", "patient-portal")
    # its own database and cache
    assert (acting.database.secret_name, acting.aws.rds_instance, acting.aws.elasticache_cluster) == (
        "portal-db-secret", "portal-db", "portal-redis")


def test_a_service_in_the_config_wins_over_the_catalog_file(tmp_path):
    cfg = load_config(_config(tmp_path, "services:\n  api-gateway: {deployments: [gw-canary], helm_release: canary}\n"))
    assert cfg.services["api-gateway"].deployments == ["gw-canary"]
    assert "patient-portal" in cfg.services


@pytest.mark.parametrize(("catalog", "message"), [
    (None, "backstage_catalog file not found"),
    ("kind: Component\nmetadata: {name: a}\n---\nkind: Component\nmetadata: {name: a}\n", "Component a is defined twice"),
    ("kind: Component\nmetadata: {annotations: {}}\n", "a Component without metadata.name"),
    ("kind: Component\nmetadata: {name: [oops\n", "not valid YAML"),
])
def test_a_bad_catalog_file_is_one_line_naming_it(tmp_path, catalog, message):
    cfg = tmp_path / "codeblue.yaml"
    cfg.write_text("backstage_catalog: other.yaml\n")
    if catalog is not None:
        (tmp_path / "other.yaml").write_text(catalog)
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert message in str(e.value) and "other.yaml" in str(e.value) and "\n" not in str(e.value)
