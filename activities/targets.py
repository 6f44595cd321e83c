"""What the worker's own config allows an activity to touch. A request is built by a workflow
from that same config, so a mismatch means someone is steering CodeBlue elsewhere (a raw
Temporal client, an old history's input config): refused, non-retryable, nothing touched.
`CacheActivities.allowed_address` is the same rule for Redis."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.exceptions import ApplicationError

from domain import catalog
from domain.cluster import DbCheckRequest
from domain.config import CodeBlueConfig
from domain.database_restore import RestoredDbVerifyRequest
from domain.notify import Audience, PageRequest
from domain.post_incident import SmokeCheckRequest


def _refuse(what: str) -> ApplicationError:
    return ApplicationError(f"refused: {what} is not in the worker's config", type="TargetNotConfigured",
                            non_retryable=True)


@dataclass(frozen=True)
class Targets:
    cfg: CodeBlueConfig

    def deployment(self, namespace: str, name: str) -> None:
        """A catalog service's deployment: CodeBlue scales, restarts and waits on no other."""
        if not catalog.owns_deployment(self.cfg, namespace, name):
            raise _refuse(f"deployment {namespace}/{name}")

    def release(self, namespace: str, release: str, chart: str | None = None) -> None:
        """A catalog service's helm release (and its chart): CodeBlue rolls back and upgrades no other."""
        if not catalog.owns_release(self.cfg, namespace, release):
            raise _refuse(f"release {namespace}/{release}")
        if chart is not None and not catalog.owns_release(self.cfg, namespace, release, chart):
            raise _refuse(f"chart {chart}")

    def secret(self, namespace: str, name: str, key: str | None = None) -> None:
        """The database Secret (and its key) the cutover backs up, points and restores."""
        if not catalog.owns_secret(self.cfg, namespace, name) or key not in (None, self.cfg.database.secret_key):
            raise _refuse(f"secret {namespace}/{name}")

    def restored_endpoint(self, host: str, port: int) -> None:
        """Where a cutover may point the database secret: the configured endpoint when one is
        set (else the restored instance's, which the workflow read from RDS)."""
        override = self.cfg.restore.endpoint_override
        if override and f"{host}:{port}" != override:
            raise _refuse(f"endpoint {host}:{port}")

    def health_url(self, url: str) -> None:
        if url != self.cfg.health.url and url not in {e.health_url for _, e in catalog.targets(self.cfg)}:
            raise _refuse(f"health URL {url}")

    def db_check(self, req: DbCheckRequest) -> None:
        d = self.cfg.database
        if req.command is not None and req.command != d.check_command:
            raise _refuse("that database check command")
        if req.secret_key != d.secret_key or not catalog.owns_secret(self.cfg, req.namespace, req.secret_name):
            raise _refuse(f"secret {req.secret_name}/{req.secret_key}")
        if not catalog.owns_deployment(self.cfg, req.namespace, req.deployment):
            raise _refuse(f"deployment {req.namespace}/{req.deployment}")

    def restored_db(self, req: RestoredDbVerifyRequest) -> None:
        d, r = self.cfg.database, self.cfg.restore
        if req.sanity_query != r.sanity_query:
            raise _refuse("that sanity query")
        if req.secret_key != d.secret_key or not catalog.owns_secret(self.cfg, req.namespace, req.secret_name):
            raise _refuse(f"secret {req.namespace}/{req.secret_name}")
        if r.endpoint_override and f"{req.host}:{req.port}" != r.endpoint_override:
            raise _refuse(f"endpoint {req.host}:{req.port}")

    def smoke_check(self, req: SmokeCheckRequest) -> None:
        ok = any((s.name, s.method.upper(), s.url, s.expected_status) == (req.name, req.method.upper(), req.url, req.expected_status)
                 for s in self.cfg.postincident.smoke_checks)
        if not ok:
            raise _refuse(f"smoke check {req.name} ({req.method} {req.url})")

    def page(self, req: PageRequest) -> None:
        c = self.cfg.contacts
        expected = {Audience.ON_CALL: c.on_call, Audience.ENGINEERING_MANAGER: c.engineering_manager,
                    Audience.DEVOPS_LEAD: c.devops_lead, Audience.SECURITY: c.security}.get(req.audience)
        if expected is not None and req.contact != expected:  # the IC's page names the IC
            raise _refuse(f"contact {req.contact} for {req.audience.value}")
