"""The service catalog: an incident's service decides its targets; the flat config is the
one-service catalog it always was; a mutating activity accepts only a catalog service's."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError

from activities.targets import Targets
from domain.catalog import catalog, for_service
from domain.config import CodeBlueConfig, ServiceEntry

CATALOG = CodeBlueConfig(services={
    "api-gateway": ServiceEntry(deployments=["api-gateway"], helm_release="healthcare-platform",
                                health_url="https://api.example/health"),
    "patient-portal": ServiceEntry(namespace="portal-prod", deployments=["patient-portal", "portal-worker"],
                                   helm_release="patient-portal", helm_chart="./charts/portal",
                                   health_url="https://portal.example/health", on_call="+1-555-0199",
                                   dashboards={"portal": "https://grafana.example/d/portal"}),
})


def test_an_incident_acts_on_its_own_services_targets():
    cfg = for_service(CATALOG, "patient-portal")
    assert cfg.acting_for == "patient-portal" and cfg.unknown_service is None
    assert (cfg.kubernetes.namespace, cfg.kubernetes.gateway_deployment) == ("portal-prod", "patient-portal")
    assert (cfg.helm.release, cfg.helm.chart, cfg.health.url) == ("patient-portal", "./charts/portal", "https://portal.example/health")
    assert cfg.contacts.on_call == "+1-555-0199" and cfg.prometheus.service == "patient-portal"
    assert cfg.prometheus.dashboards["portal"] == "https://grafana.example/d/portal"
    gw = for_service(CATALOG, "api-gateway")
    assert (gw.kubernetes.namespace, gw.helm.chart) == ("healthcare-prod", "./infra/helm/healthcare-platform")  # flat fallbacks
    assert gw.contacts.on_call == CodeBlueConfig().contacts.on_call


def test_a_service_outside_the_catalog_keeps_the_namespace_and_no_target():
    cfg = for_service(CATALOG, "pharmacy")
    assert cfg.unknown_service == "pharmacy" and cfg.acting_for is None
    assert cfg.kubernetes.namespace == "healthcare-prod"
    assert (cfg.kubernetes.gateway_deployment, cfg.helm.release, cfg.health.url) == ("", "", "")


def test_the_flat_config_is_a_one_service_catalog():
    flat = CodeBlueConfig()
    assert list(catalog(flat)) == ["api-gateway"]
    same = for_service(flat, "api-gateway")
    assert same.model_dump(exclude={"acting_for"}) == flat.model_dump(exclude={"acting_for"})
    assert for_service(flat, "patient-portal").unknown_service == "patient-portal"


@pytest.mark.parametrize(("namespace", "deployment", "ok"), [
    ("healthcare-prod", "api-gateway", True), ("portal-prod", "portal-worker", True),
    ("portal-prod", "api-gateway", False), ("healthcare-prod", "patient-portal", False), ("kube-system", "coredns", False)])
def test_a_mutating_activity_accepts_any_catalog_services_deployment_and_nothing_else(namespace, deployment, ok):
    t = Targets(CATALOG)
    if ok:
        t.deployment(namespace, deployment)
    else:
        with pytest.raises(ApplicationError, match="not in the worker's config"):
            t.deployment(namespace, deployment)


def test_releases_and_charts_are_checked_per_service():
    t = Targets(CATALOG)
    t.release("portal-prod", "patient-portal", "./charts/portal")
    t.release("healthcare-prod", "healthcare-platform")
    for ns, rel, chart in (("healthcare-prod", "patient-portal", None), ("portal-prod", "patient-portal", "./evil"),
                           ("portal-prod", "", None)):
        with pytest.raises(ApplicationError):
            t.release(ns, rel, chart)


PLATFORM = CodeBlueConfig(services={
    "api-gateway": ServiceEntry(deployments=["api-gateway"], depends_on=["healthcare-db", "healthcare-redis"]),
    "patient-portal": ServiceEntry(deployments=["patient-portal"], depends_on=["api-gateway", "healthcare-db"]),
    "pharmacy": ServiceEntry(deployments=["pharmacy"], depends_on=["healthcare-db"]),
    "billing": ServiceEntry(deployments=["billing"], depends_on=["billing-db"]),
})


def test_unhealthy_services_sharing_a_database_name_it():
    from domain.catalog import shared_cause

    assert shared_cause(PLATFORM, ["pharmacy", "patient-portal"]) == ("healthcare-db", ["patient-portal", "pharmacy"])
    # an unhealthy service the others need explains them first
    assert shared_cause(PLATFORM, ["api-gateway", "patient-portal"]) == ("api-gateway", ["api-gateway", "patient-portal"])
    assert shared_cause(PLATFORM, ["billing", "pharmacy"]) is None  # nothing in common: each its own problem
    assert shared_cause(PLATFORM, ["pharmacy"]) is None


def test_the_database_explains_all_three_over_an_unhealthy_upstream_explaining_two():
    from domain.catalog import shared_cause

    assert shared_cause(PLATFORM, ["api-gateway", "patient-portal", "pharmacy"]) == (
        "healthcare-db", ["api-gateway", "patient-portal", "pharmacy"])


def test_a_service_has_its_own_database_secret_rds_instance_and_cache_cluster():
    cfg = CodeBlueConfig(services={
        "api-gateway": ServiceEntry(deployments=["api-gateway"]),
        "pharmacy": ServiceEntry(namespace="pharmacy-prod", deployments=["pharmacy"], rds_instance="pharmacy-db",
                                 database_secret="pharmacy-db-secret", cache_cluster="pharmacy-redis"),
    })
    ph = for_service(cfg, "pharmacy")
    assert (ph.aws.rds_instance, ph.database.secret_name, ph.aws.elasticache_cluster) == (
        "pharmacy-db", "pharmacy-db-secret", "pharmacy-redis")
    gw = for_service(cfg, "api-gateway")  # the flat config's where the entry names none
    assert (gw.aws.rds_instance, gw.database.secret_name, gw.aws.elasticache_cluster) == (
        "healthcare-prod", "healthcare-db-secret", "healthcare-prod-redis")
    t = Targets(cfg)
    t.secret("pharmacy-prod", "pharmacy-db-secret", "DATABASE_URL")
    t.secret("healthcare-prod", "healthcare-db-secret")
    for ns, name in (("healthcare-prod", "pharmacy-db-secret"), ("pharmacy-prod", "healthcare-db-secret"),
                     ("pharmacy-prod", "other-secret")):
        with pytest.raises(ApplicationError):
            t.secret(ns, name)


def test_the_incident_channel_names_the_services_own_channel_and_its_runbook_is_known():
    from domain.slack import channel_topic

    cfg = for_service(CodeBlueConfig(services={"patient-portal": ServiceEntry(
        deployments=["patient-portal"], slack_channel="#portal-oncall", runbook_url="https://wiki.example/portal")}),
        "patient-portal")
    assert (cfg.service_slack_channel, cfg.runbook_url) == ("#portal-oncall", "https://wiki.example/portal")
    assert channel_topic("INC-1", "P1", "patient-portal", cfg.service_slack_channel) == (
        "[P1] INC-1 · patient-portal · owners #portal-oncall · CodeBlue incident")
