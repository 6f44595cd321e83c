"""`failed-redeploy`: the IC redeploys a hotfix whose pods come up ready but whose /health
answers 503; CodeBlue rolls back to the pre-upgrade revision and verifies the service.

History: revision 10 (v1.4.1, 9 days ago), 11 (v1.5.0, 2 h ago, crash-looped and was rolled
back after 10 minutes), 12 "Rollback to 10" (v1.4.1, deployed). No known-good record yet.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from domain.config import CodeBlueConfig, RecoveryConfig
from sandbox.cluster_reconciler import image_tag
from sandbox.scenario_kit import (
    BAD_TAG,
    GATEWAY,
    NAMESPACE,
    SandboxEnvironment,
    Scenario,
    seed_gateway_release,
)

STABLE_TAG = "v1.4.1"
# ready pods, failing health endpoint: what verification (not helm --wait) must catch
HOTFIX_TAG = "v1.5.1"


def gateway_tag(env: SandboxEnvironment) -> str | None:
    dep = env.cluster.deployment(NAMESPACE, GATEWAY)
    if dep is None:
        return None
    containers = dep["spec"]["template"]["spec"]["containers"]
    return image_tag(containers[0]["image"]) if containers else None


async def seed_failed_redeploy(env: SandboxEnvironment) -> None:
    now = datetime.now(UTC)
    await seed_gateway_release(env, STABLE_TAG, [
        {"revision": 10, "image_tag": STABLE_TAG, "updated": now - timedelta(days=9), "chart": "healthcare-platform-1.4.1"},
        {"revision": 11, "image_tag": BAD_TAG, "updated": now - timedelta(hours=2), "chart": "healthcare-platform-1.5.0"},
        {"revision": 12, "image_tag": STABLE_TAG, "updated": now - timedelta(hours=2) + timedelta(minutes=10),
         "chart": "healthcare-platform-1.4.1", "description": "Rollback to 10"},
    ])

    def healthy() -> bool:
        return env.cluster.gateway_healthy(NAMESPACE, GATEWAY) and gateway_tag(env) != HOTFIX_TAG

    env.receiver.health = healthy


@asynccontextmanager
async def chart_dir() -> AsyncIterator[Path]:
    """A local chart directory, so the preflight's 'chart present' check has one to find."""
    with tempfile.TemporaryDirectory(prefix="codeblue-chart-") as tmp:
        path = Path(tmp) / "healthcare-platform"
        path.mkdir()
        (path / "Chart.yaml").write_text("apiVersion: v2\nname: healthcare-platform\nversion: 1.4.1\n")
        yield path


def configure_recovery(cfg: CodeBlueConfig, env: SandboxEnvironment) -> CodeBlueConfig:
    return cfg.model_copy(
        update={
            "helm": cfg.helm.model_copy(update={"chart": str(env.extras["chart"])}),
            "recovery": RecoveryConfig(
                upgrade_timeout_seconds=30,
                ready_timeout_seconds=30,
                verify_settle_seconds=2,
                health_successes=3,
            ),
        }
    )


SCENARIO = Scenario(
    name="failed-redeploy",
    description=(
        f"the IC redeploys hotfix {HOTFIX_TAG} over revision 12 ({STABLE_TAG}); its pods come up "
        "ready but /health answers 503; CodeBlue must roll back to 12 and verify"
    ),
    title="complete service recovery with a hotfix that fails verification",
    severity="P1",
    driver="failed-redeploy",
    seed=seed_failed_redeploy,
    extras={"chart": chart_dir},
    configure=configure_recovery,
)
