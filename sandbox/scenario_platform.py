"""The multi-service world (issue #26): api-gateway, patient-portal and pharmacy in
healthcare-prod, each its own helm release with its own history and health endpoint, all three
on the one database; the worker's config lists them as a service catalog.

Scenarios on it: `portal-bad-deploy` (patient-portal's revision 8 crash-loops: only
patient-portal is rolled back), `two-incidents` (two incidents about the gateway's bad release
approve its rollback at once: one rollback, the other says why it did not) and
`shared-db-outage` (the database down: one database proposal, the services listed as affected).
"""

from __future__ import annotations

import asyncio
import functools
from datetime import UTC, datetime, timedelta

from domain.config import CodeBlueConfig, ServiceEntry
from sandbox.helm_cli import KubeRest, seed_release
from sandbox.scenario_kit import BAD_TAG, GATEWAY, GOOD_TAG, NAMESPACE, RELEASE, SandboxEnvironment, Scenario

PORTAL = "patient-portal"
PHARMACY = "pharmacy"
PORTAL_GOOD, PORTAL_BAD = "v2.3.1", "v2.4.0"
PHARMACY_TAG = "v5.0.2"
DATABASE = "healthcare-db"
SERVICES = (GATEWAY, PORTAL, PHARMACY)


async def seed_platform(env: SandboxEnvironment, *, gateway_tag: str = GOOD_TAG, portal_tag: str = PORTAL_GOOD,
                        deployed_ago: timedelta = timedelta(minutes=12),
                        database_url: str = "postgresql://postgres@127.0.0.1:5432/postgres") -> None:
    """The three services at the given tags (a bad tag's pods crash-loop), their histories:
    the gateway 10, 11, 12 (12 at `gateway_tag`, `deployed_ago`); patient-portal 6, 7, 8 (8 at
    `portal_tag`, 3 minutes after the gateway's); pharmacy 3 (a week ago)."""
    c = env.cluster
    await c.seed_healthcare_prod(namespace=NAMESPACE, gateway=GATEWAY, tag=gateway_tag, replicas=3,
                                 bad_tags={BAD_TAG, PORTAL_BAD}, portal_release=PORTAL, portal_tag=portal_tag,
                                 database_url=database_url)
    c.add_service(NAMESPACE, PHARMACY, f"registry.local/{PHARMACY}:{PHARMACY_TAG}", 2, PHARMACY, port=8000)
    now = datetime.now(UTC)
    histories = {
        (RELEASE, "healthcare-platform"): [
            {"revision": 10, "image_tag": "v1.4.1", "updated": now - timedelta(days=9)},
            {"revision": 11, "image_tag": GOOD_TAG, "updated": now - timedelta(days=3)},
            {"revision": 12, "image_tag": gateway_tag, "updated": now - deployed_ago},
        ],
        (PORTAL, PORTAL): [
            {"revision": 6, "image_tag": "v2.2.0", "updated": now - timedelta(days=20)},
            {"revision": 7, "image_tag": PORTAL_GOOD, "updated": now - timedelta(days=4)},
            {"revision": 8, "image_tag": portal_tag, "updated": now - deployed_ago + timedelta(minutes=3)},
        ],
        (PHARMACY, PHARMACY): [{"revision": 3, "image_tag": PHARMACY_TAG, "updated": now - timedelta(days=7)}],
    }
    api = KubeRest.from_kubeconfig(str(c.kubeconfig_path))
    try:
        for (release, chart), revisions in histories.items():
            await asyncio.to_thread(seed_release, api, NAMESPACE, release, chart, revisions)
    finally:
        api.close()
    await c.reconcile()
    for name in (PORTAL, PHARMACY):
        env.receiver.service_health[name] = functools.partial(c.gateway_healthy, NAMESPACE, name)


def platform_catalog(cfg: CodeBlueConfig, env: SandboxEnvironment) -> CodeBlueConfig:
    """The three services as the worker's catalog, each with its own release and health URL."""
    rx = env.receiver
    return cfg.model_copy(update={"services": {
        GATEWAY: ServiceEntry(deployments=[GATEWAY], helm_release=RELEASE, health_url=rx.health_url, depends_on=[DATABASE]),
        PORTAL: ServiceEntry(deployments=[PORTAL], helm_release=PORTAL, helm_chart=PORTAL,
                             health_url=rx.service_health_url(PORTAL), depends_on=[DATABASE, GATEWAY]),
        PHARMACY: ServiceEntry(deployments=[PHARMACY], helm_release=PHARMACY, helm_chart=PHARMACY,
                               health_url=rx.service_health_url(PHARMACY), depends_on=[DATABASE]),
    }})


async def _portal_bad(env: SandboxEnvironment) -> None:
    await seed_platform(env, portal_tag=PORTAL_BAD)


async def _gateway_bad(env: SandboxEnvironment) -> None:
    await seed_platform(env, gateway_tag=BAD_TAG)


async def _database_down(env: SandboxEnvironment) -> None:
    """healthcare-db refuses connections (the Secret names a closed port): every service's pods
    run their pools dry and fail /health; nothing was deployed for days."""
    await seed_platform(env, deployed_ago=timedelta(days=2), database_url="postgresql://postgres@127.0.0.1:9/postgres")
    for name in SERVICES:
        env.cluster.exhaust_connection_pool(NAMESPACE, name)
    await env.cluster.reconcile()


SHARED_DATABASE = Scenario(
    name="shared-db-outage",
    description=("healthcare-db refuses connections: api-gateway, patient-portal and pharmacy all fail; "
                 "CodeBlue names the shared database, lists the affected services and proposes one database step"),
    title="api-gateway, patient-portal and pharmacy failing at once",
    severity="P1",
    driver="shared-db",
    service=GATEWAY,
    seed=_database_down,
    configure=platform_catalog,
)

PORTAL_BAD_DEPLOY = Scenario(
    name="portal-bad-deploy",
    description=(f"patient-portal's release revision 8 ({PORTAL_BAD}) went out 9 minutes ago and crash-loops; "
                 "api-gateway and pharmacy are healthy; only patient-portal may be touched"),
    title="patient-portal crash-looping after deploy; patients cannot log in",
    severity="P1",
    driver="incident",
    approve=("rollback",),
    service=PORTAL,
    seed=_portal_bad,
    configure=platform_catalog,
)

TWO_INCIDENTS = Scenario(
    name="two-incidents",
    description=(f"the gateway's revision 12 ({BAD_TAG}) crash-loops; two incidents open about it and both ICs "
                 "approve the rollback at once: one rollback runs, the other says why it did not"),
    title="api-gateway crash-looping after deploy",
    severity="P0",
    driver="two-incidents",
    approve=("rollback",),
    service=GATEWAY,
    seed=_gateway_bad,
    configure=platform_catalog,
)
