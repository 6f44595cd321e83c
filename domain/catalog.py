"""The service catalog: which service an incident is about decides where CodeBlue acts.

The worker's config lists its services (`services:`, or the flat sections as one service, the
runbook's gateway). For each incident the worker answers `worker_config` with the config of
that incident's service (`for_service`): its namespace, deployment, helm release and chart,
health URL, on-call contact and dashboards in the sections the workflows already read, and
`acting_for` naming it. A service the catalog does not know keeps the namespace (to read what
it can) and no target: nothing is proposed for it.
"""

from __future__ import annotations

from domain.config import CodeBlueConfig, ServiceEntry


def catalog(cfg: CodeBlueConfig) -> dict[str, ServiceEntry]:
    """Every service the worker may act for; the flat config is a one-service catalog."""
    if cfg.services:
        return cfg.services
    return {cfg.api.default_service: ServiceEntry(
        namespace=cfg.kubernetes.namespace, deployments=[cfg.kubernetes.gateway_deployment],
        helm_release=cfg.helm.release, helm_chart=cfg.helm.chart, health_url=cfg.health.url)}


def targets(cfg: CodeBlueConfig) -> list[tuple[str, ServiceEntry]]:
    """Each catalog service with its fallbacks filled in from the flat sections."""
    return [(name, _filled(cfg, e)) for name, e in catalog(cfg).items()]


def _filled(cfg: CodeBlueConfig, e: ServiceEntry) -> ServiceEntry:
    return e.model_copy(update={
        "namespace": e.namespace or cfg.kubernetes.namespace,
        "helm_release": e.helm_release or "",
        "helm_chart": e.helm_chart or cfg.helm.chart,
        "health_url": e.health_url or "",
        "rds_instance": e.rds_instance or cfg.aws.rds_instance,
        "database_secret": e.database_secret or cfg.database.secret_name,
        "cache_cluster": e.cache_cluster or cfg.aws.elasticache_cluster,
    })


def for_service(cfg: CodeBlueConfig, service: str) -> CodeBlueConfig:
    """The config an incident about `service` acts with (see the module's docstring)."""
    entry = catalog(cfg).get(service)
    if entry is None:
        return cfg.model_copy(update={
            "acting_for": None, "unknown_service": service,
            "kubernetes": cfg.kubernetes.model_copy(update={"gateway_deployment": ""}),
            "helm": cfg.helm.model_copy(update={"release": ""}),
            "health": cfg.health.model_copy(update={"url": ""}),
            "prometheus": cfg.prometheus.model_copy(update={"service": service}),
        })
    e = _filled(cfg, entry)
    return cfg.model_copy(update={
        "acting_for": service, "unknown_service": None, "runbook_url": e.runbook_url,
        "service_slack_channel": e.slack_channel,
        "kubernetes": cfg.kubernetes.model_copy(update={
            "namespace": e.namespace, "gateway_deployment": e.deployments[0] if e.deployments else ""}),
        "helm": cfg.helm.model_copy(update={"release": e.helm_release, "chart": e.helm_chart}),
        "aws": cfg.aws.model_copy(update={"rds_instance": e.rds_instance, "elasticache_cluster": e.cache_cluster}),
        "database": cfg.database.model_copy(update={"secret_name": e.database_secret}),
        "health": cfg.health.model_copy(update={"url": e.health_url}),
        "contacts": cfg.contacts.model_copy(update={"on_call": e.on_call}) if e.on_call else cfg.contacts,
        "prometheus": cfg.prometheus.model_copy(update={
            "service": service, "dashboards": {**cfg.prometheus.dashboards, **e.dashboards}}),
    })


def owns_deployment(cfg: CodeBlueConfig, namespace: str, deployment: str) -> bool:
    return any(namespace == e.namespace and deployment in e.deployments for _, e in targets(cfg))


def owns_secret(cfg: CodeBlueConfig, namespace: str, name: str) -> bool:
    """A catalog service's database Secret (in its namespace), or the flat config's."""
    return (namespace, name) == (cfg.kubernetes.namespace, cfg.database.secret_name) or any(
        (namespace, name) == (e.namespace, e.database_secret) for _, e in targets(cfg))


def owns_release(cfg: CodeBlueConfig, namespace: str, release: str, chart: str | None = None) -> bool:
    return any(namespace == e.namespace and release == e.helm_release and release
               and (chart is None or chart == e.helm_chart) for _, e in targets(cfg))


# how many other services' health an assessment reads at most (one probe each, in parallel)
HEALTH_READS_MAX = 12


def others_to_probe(cfg: CodeBlueConfig) -> list[tuple[str, str]]:
    """(service, health URL) of every other catalog service with a health URL, the incident's
    own excepted: what the assessment reads to list the affected services."""
    if not cfg.services:
        return []
    own = cfg.acting_for or cfg.unknown_service
    return [(n, e.health_url) for n, e in targets(cfg) if n != own and e.health_url][:HEALTH_READS_MAX]


def dependencies(cfg: CodeBlueConfig, service: str) -> set[str]:
    """Everything `service` depends on, through the catalog's services (transitively)."""
    cat = catalog(cfg)
    seen: set[str] = set()
    todo = list(cat[service].depends_on) if service in cat else []
    while todo:
        d = todo.pop()
        if d not in seen:
            seen.add(d)
            todo.extend(cat[d].depends_on if d in cat else [])
    return seen


def shared_cause(cfg: CodeBlueConfig, unhealthy: list[str]) -> tuple[str, list[str]] | None:
    """What two or more unhealthy services have in common: an unhealthy service the others
    depend on, else a dependency (a database, a cache) they share; with the services it
    explains. None: nothing shared (each is its own problem)."""
    if len(unhealthy) < 2:
        return None
    deps = {s: dependencies(cfg, s) for s in unhealthy}
    counts: dict[str, list[str]] = {}
    for s, ds in deps.items():
        for d in ds:
            counts.setdefault(d, []).append(s)
    # an unhealthy service the others need explains itself and them; a dependency two or more
    # share explains those: the one explaining the most wins (a tie: the one seen unhealthy)
    candidates = [(len(explained), d in unhealthy, d, explained) for d, users in counts.items()
                  for explained in [sorted({d, *users}) if d in unhealthy else sorted(users)]
                  if d in unhealthy or len(users) >= 2]
    if not candidates:
        return None
    _, _, d, explained = max(candidates)
    return d, explained
