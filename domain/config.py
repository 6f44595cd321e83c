"""The environment a worker acts on: one YAML file, defaults from the runbook."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import BaseModel, Field, ValidationError

from domain.backstage import CatalogError, read_catalog_file
from domain.blast_radius import BlastRadiusConfig
from domain.prometheus import PrometheusConfig

# how CodeBlue reaches Temporal (its own module; imported from here as it always was)
from domain.temporal_settings import TemporalSettings as TemporalSettings


class _Section(BaseModel):
    model_config = {"extra": "forbid"}


class KubernetesConfig(_Section):
    namespace: str = "healthcare-prod"
    gateway_deployment: str = "api-gateway"
    # None: in-cluster config when running in a pod, else ~/.kube/config.
    kubeconfig: str | None = None
    context: str | None = None
    log_tail_lines: int = Field(default=500, ge=1, le=10_000)
    # Error patterns counted in gateway logs: name -> case-insensitive substring.
    error_patterns: dict[str, str] = {
        "connection": "connection",
        "timeout": "timeout",
        "out_of_memory": "out of memory",
        "cache": "redis",
        "error": "error",
    }
    request_timeout_seconds: float = 10.0


class HelmConfig(_Section):
    release: str = "healthcare-platform"
    chart: str = "./infra/helm/healthcare-platform"
    # Argument list that runs helm; the drill points it at the sandbox stand-in.
    command: list[str] = ["helm"]
    timeout_seconds: int = 300


class AwsConfig(_Section):
    region: str = "us-east-1"
    endpoint_url: str | None = None
    rds_instance: str = "healthcare-prod"
    rds_snapshot: str = "healthcare-prod-snapshot-latest"
    elasticache_cluster: str = "healthcare-prod-redis"


class DatabaseConfig(_Section):
    secret_name: str = "healthcare-db-secret"
    secret_key: str = "DATABASE_URL"
    # The runbook's `npm run db:check`, executed in a gateway pod; None: CodeBlue's own check.
    check_command: list[str] | None = None
    connect_timeout_seconds: float = 5.0


class RestoreConfig(_Section):
    """Database recovery from an RDS snapshot (DatabaseRestoreWorkflow)."""

    poll_interval_seconds: float = Field(default=30.0, gt=0)
    # one polling activity attempt lasts this long before the retry policy takes over
    poll_window_seconds: float = Field(default=300.0, gt=0)
    # past this, the engineering manager is paged; the wait goes on until the IC cancels
    limit_minutes: float = Field(default=60.0, gt=0)
    # run on the restored database after SELECT 1; its first value is shown to the IC
    sanity_query: str | None = "SELECT count(*) FROM pg_catalog.pg_tables"
    # "host:port" the restored endpoint resolves to (sandboxes, tunnels); None: RDS's endpoint
    endpoint_override: str | None = None
    # delete the restored instance when a cutover is compensated; default keeps it for forensics
    delete_restored_after: bool = False


class Contacts(_Section):
    on_call: str = "+1-555-0123"
    engineering_manager: str = "+1-555-0124"
    devops_lead: str = "+1-555-0125"
    security: str = "security@healthcare-platform.com"


class NotificationConfig(_Section):
    """HTTP endpoints; one left unset makes its step 'skipped' in the timeline."""

    slack_webhook_url: str | None = None
    statuspage_url: str | None = None  # Statuspage-style REST base, e.g. https://api.statuspage.io/v1
    statuspage_page_id: str = "healthcare-platform"
    statuspage_api_key_env: str = "CODEBLUE_STATUSPAGE_API_KEY"
    # service -> its Statuspage component ID: an incident's affected services show as
    # major_outage (P0), partial_outage (P1) or degraded_performance, operational when resolved
    statuspage_components: dict[str, str] = {}
    # Statuspage allows a token one request a second: its calls from this worker are spaced so
    statuspage_min_interval_seconds: float = Field(default=1.0, ge=0, le=60)
    pagerduty_url: str | None = None  # PagerDuty Events v2-style enqueue URL
    # Events API v2 change events (rollbacks, upgrades, restores, cutovers); unset: derived from
    # pagerduty_url (…/v2/enqueue -> …/v2/change/enqueue), none without it
    pagerduty_change_url: str | None = None
    pagerduty_routing_key_env: str = "CODEBLUE_PAGERDUTY_ROUTING_KEY"
    # a routing key per audience (on_call, engineering_manager, devops_lead, security, commander):
    # the variable that holds it; an audience not named here uses pagerduty_routing_key_env
    pagerduty_routing_keys_env: dict[str, str] = {}
    # a routing key per service (from the catalog's `pagerduty_routing_key_env`): the on-call's and
    # the IC's pages and the change events of an incident about that service go there
    pagerduty_service_routing_keys_env: dict[str, str] = {}
    webhook_url: str | None = None  # generic JSON webhook (incident channel, audit)
    timeout_seconds: float = 10.0


class MitigationConfig(_Section):
    scale_replicas: int = Field(default=5, ge=1, le=1000)
    deploy_window_minutes: int = Field(default=60, ge=1)
    remind_after_seconds: int = Field(default=300, ge=1)
    escalate_after_seconds: int = Field(default=600, ge=1)
    # Besides the IC, who may decide on proposals.
    approvers: list[str] = []
    rollout_timeout_seconds: int = Field(default=600, ge=1)
    # after each executed mitigation the evidence is read again, up to this many times apart
    # (durable timers), until healthy; healthy: the proposals still waiting are superseded
    recheck_attempts: int = Field(default=3, ge=1, le=20)
    recheck_interval_seconds: int = Field(default=10, ge=1)
    # Action IDs that need two different authorized people to approve (AWS SSM's
    # MinRequiredApprovals): e.g. [cutover, flushall, restore, redeploy]. Shown as 1/2.
    two_person: list[str] = []


class LimitsConfig(_Section):
    """What keeps a long, noisy incident inside Temporal's limits (2 MB payloads, 50K events):
    the report stays under REPORT_MAX_BYTES (domain.incident) whatever the alert volume."""

    # continue-as-new past this many history events (or when Temporal suggests it)
    continue_as_new_after_events: int = Field(default=8_000, ge=100, le=40_000)
    notes_listed_max: int = Field(default=60, ge=1, le=100)  # later notes are counted, not listed
    notes_per_actor_per_minute: int = Field(default=10, ge=1, le=100)  # beyond: dropped and counted


class SlaConfig(_Section):
    diagnostics_seconds: int = Field(default=300, ge=1)
    assessment_seconds: int = Field(default=900, ge=1)
    communication_seconds: int = Field(default=900, ge=1)


class HealthConfig(_Section):
    url: str = "https://api.healthcare-platform.com/health"
    attempts: int = Field(default=3, ge=1, le=20)
    timeout_seconds: float = 5.0


class RecoveryConfig(_Section):
    """Complete service recovery: helm upgrade to the last known-good tag, verify, undo."""

    # ConfigMap in the release's namespace where verified-healthy tags are recorded
    known_good_configmap: str = "codeblue-known-good"
    # fallback without a record: a revision counts once live this long without a rollback
    known_good_window_minutes: int = Field(default=60, ge=1)
    upgrade_timeout_seconds: int = Field(default=300, ge=1)
    ready_timeout_seconds: int = Field(default=300, ge=1)
    # durable pause after the upgrade before verifying (pods settle, errors show in logs)
    verify_settle_seconds: int = Field(default=30, ge=0)
    # the runbook's `curl -f`: this many 2xx answers in a row
    health_successes: int = Field(default=3, ge=1, le=20)
    # error lines / lines scanned in the gateway logs
    max_error_rate: float = Field(default=0.05, ge=0, le=1)


class SmokeCheck(_Section):
    """One user-facing request that must answer as expected once the incident is resolved."""

    name: str
    url: str
    method: str = "GET"
    expected_status: int = Field(default=200, ge=100, le=599)


class PostIncidentConfig(_Section):
    """Post-incident: verify the fix, close communications, hold the post-mortem within 24 h."""

    health_probes: int = Field(default=3, ge=1, le=20)  # spaced by durable timers
    probe_interval_seconds: int = Field(default=60, ge=1)
    max_latency_ms: float = Field(default=1000.0, gt=0)
    max_error_rate: float = Field(default=0.05, ge=0, le=1)
    smoke_checks: list[SmokeCheck] = []
    # calendar-style JSON webhook that books the post-mortem; unset: recorded as skipped
    calendar_webhook_url: str | None = None
    postmortem_within_hours: int = Field(default=24, ge=1)
    postmortem_slot_after_hours: int = Field(default=16, ge=0)
    postmortem_duration_minutes: int = Field(default=60, ge=15)
    remind_commander_at_hours: list[int] = [12, 20]
    overdue_reminder_every_hours: int = Field(default=24, ge=1)
    # continue-as-new past this many history events (or when the server suggests it)
    max_history_events: int = Field(default=10_000, ge=20)


class CacheConfig(_Section):
    """The Redis cache playbook (ElastiCache cluster `aws.elasticache_cluster`)."""

    # "host:port" the cluster's endpoint resolves to (sandboxes, tunnels); None: ElastiCache's
    # own endpoint. CodeBlue refuses to touch a Redis at any other address.
    endpoint_override: str | None = None
    db: int = Field(default=0, ge=0, le=15)
    password_env: str = "CODEBLUE_REDIS_PASSWORD"  # the AUTH token, from the environment
    tls: bool = False
    timeout_seconds: float = Field(default=5.0, gt=0)
    scan_count: int = Field(default=500, ge=1, le=100_000)


class MemoryConfig(_Section):
    """The high-memory playbook (the runbook's `kubectl top pods` and scale to 10)."""

    samples: int = Field(default=3, ge=2, le=30)
    sample_interval_seconds: int = Field(default=120, ge=1)  # durable timers between samples
    high_ratio: float = Field(default=0.85, gt=0, le=1)  # of the memory limit
    # a leak suspect grows at every sample, by at least this fraction overall
    leak_growth_ratio: float = Field(default=0.05, ge=0)
    scale_replicas: int = Field(default=10, ge=1)
    max_replicas: int = Field(default=20, ge=1)


class SlackConfig(_Section):
    """Slack through its Web API: a channel per P0/P1 incident (created, responders invited,
    topic, bookmark), and interactivity: one message per proposal in `channel` (Approve / Reject
    buttons), posted and updated; clicks come back to the API's `POST /slack/interactions`.
    The bot token and the signing secret are environment only."""

    api_url: str = "https://slack.com/api/"  # slack_sdk's base_url; sandboxes point it at a stand-in
    channel: str | None = None  # the incident channel's ID (C...); unset: proposal messages skipped
    bot_token_env: str = "CODEBLUE_SLACK_BOT_TOKEN"  # xoxb-...: chat:write, channels:history, ...
    signing_secret_env: str = "CODEBLUE_SLACK_SIGNING_SECRET"  # verifies the interaction requests
    # Slack user ID -> CodeBlue principal (a name in the API's token book): who a click is from,
    # and whom an incident channel invites (the IC, the approvers, the on-call)
    users: dict[str, str] = {}
    timeout_seconds: int = Field(default=10, ge=1, le=120)
    # With a bot token, each P0/P1 incident gets its own channel (conversations.create), named
    # <channel_prefix><incident ID> lowercased. Public by default, so any responder can find and
    # join it; true keeps incident talk to those invited (the bot then needs groups:write).
    private_channels: bool = False
    channel_prefix: str = Field(default="inc-", pattern=r"^[a-z0-9_-]{0,15}$")
    # Whether the worker has a bot token ($bot_token_env): set by the worker from its environment
    # (with_env_secrets; a value in the file is overwritten); a workflow reads it to choose the
    # Web API channel over the webhook message. The token itself never leaves the worker.
    bot_token_set: bool = False


class UiConfig(_Section):
    base_url: str = "http://localhost:8233"


class ApiToken(_Section):
    """A bearer token, stored as the sha256 hex of its value (never the value itself)."""

    name: str = Field(min_length=1, max_length=64)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    # viewer < responder < commander < admin; `alerts` only for the Alertmanager webhook.
    roles: list[str] = ["viewer"]


class AlertRule(_Section):
    """Alerts whose labels all match `match` get this severity/service (first rule wins)."""

    match: dict[str, str] = {}
    severity: str = Field(default="P2", pattern=r"^P[0-3]$")
    service: str | None = None  # None: the `service_label` value, else api.default_service


class ApiConfig(_Section):
    tokens: list[ApiToken] = []
    # Env var with extra tokens as JSON [{"name", "token", "roles"}] (hashed when loaded).
    tokens_env: str = "CODEBLUE_API_TOKENS"
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=10 * 1024 * 1024)
    # The alert routes' own limit: Alertmanager sends a whole group in one request (about 1 KiB
    # an alert with its default max_alerts 0) and never retries a 4xx, so a group refused for
    # its size would be lost for good. 32 MiB: some 30,000 alerts.
    max_alert_body_bytes: int = Field(default=32 * 1024 * 1024, ge=64 * 1024, le=512 * 1024 * 1024)
    # How long a request waits for a workflow (an update needs a worker): then 504.
    request_timeout_seconds: float = Field(default=60.0, gt=0, le=600)
    ui_origin: str = "http://localhost:8233"
    # Alert ingestion without a spool: requests per token per second (token bucket) and burst;
    # past it a request waits its turn (up to 10 s), then 503 with Retry-After, which
    # Alertmanager retries (with a spool, the spool absorbs a storm instead).
    alerts_per_second: float = Field(default=50.0, gt=0)
    alerts_burst: int = Field(default=200, ge=1)
    # failed authentications per client address: a burst, then this many a minute (429 after);
    # a valid token is never held back
    auth_failures_burst: int = Field(default=20, ge=1)
    auth_failures_per_minute: float = Field(default=10.0, gt=0)
    alert_rules: list[AlertRule] = [
        AlertRule(match={"severity": "critical"}, severity="P1"),
        AlertRule(match={"severity": "warning"}, severity="P2"),
    ]
    alert_default_severity: str = Field(default="P3", pattern=r"^P[0-3]$")
    service_label: str = "service"
    default_service: str = "api-gateway"
    # Labels forming the dedup key: one open incident per distinct value tuple.
    dedup_labels: list[str] = ["alertname", "service"]
    # Alert spool: a SQLite file on the API's own disk. Set, an alert is answered once it is
    # on that disk (fsync'd) and a forwarder delivers it, batched per key; unset, once
    # Temporal has it (one signal-with-start per alert: slower in a storm, no local state).
    alert_spool: str | None = None
    alert_spool_max_alerts: int = Field(default=100_000, ge=100)
    # An alert re-sent with the same fingerprint and status within this many seconds of its
    # delivery is dropped in the API (counted as `repeats`), never becoming a signal. 0: off.
    alert_repeat_window_seconds: float = Field(default=600.0, ge=0)


class ServiceEntry(_Section):
    """One service of the platform, as the catalog knows it (domain.catalog): where CodeBlue
    acts for an incident about it. A field left unset falls back to the flat config's."""

    namespace: str | None = None
    # the first is the one CodeBlue reads logs of, scales and restarts
    deployments: list[str] = Field(default=[], max_length=20)
    helm_release: str | None = None
    helm_chart: str | None = None
    health_url: str | None = None
    # who answers for it: its on-call contact (the page's), the variable holding its PagerDuty
    # routing key (its pages and change events go to its own PagerDuty service), its Slack channel
    on_call: str | None = None
    pagerduty_routing_key_env: str | None = None
    slack_channel: str | None = None
    dashboards: dict[str, str] = {}
    runbook_url: str | None = None
    service_slack_channel: str | None = None  # and its own channel (the catalog's slack_channel)
    # its own database and cache, where they are not the flat config's: the RDS instance a
    # restore starts from, the Secret (in its namespace) holding its database URL, and the
    # ElastiCache cluster its cache playbook reads and flushes
    rds_instance: str | None = None
    database_secret: str | None = None
    cache_cluster: str | None = None
    # other catalog services and resources it needs (a database, a cache, an upstream)
    depends_on: list[str] = []


class CodeBlueConfig(_Section):
    # The service catalog: service name -> where CodeBlue acts for it. Empty: the flat sections
    # below describe one service, `api.default_service` (the runbook as written, the gateway).
    services: dict[str, ServiceEntry] = {}
    # A Backstage catalog file (Component entities and their annotations, domain.backstage),
    # relative to this config file: its services join `services` (an entry here wins)
    backstage_catalog: str | None = None
    # Set by the worker for each incident (domain.catalog.for_service), never in the file: the
    # catalog service the config acts for, or the incident's service the catalog does not
    # know (then nothing is proposed: CodeBlue knows none of its targets).
    acting_for: str | None = None
    unknown_service: str | None = None
    # set by the worker with acting_for: that service's runbook (the catalog's runbook_url), linked
    # from its pages and change events
    runbook_url: str | None = None
    service_slack_channel: str | None = None  # and its own channel (the catalog's slack_channel)
    kubernetes: KubernetesConfig = KubernetesConfig()
    helm: HelmConfig = HelmConfig()
    aws: AwsConfig = AwsConfig()
    database: DatabaseConfig = DatabaseConfig()
    contacts: Contacts = Contacts()
    notifications: NotificationConfig = NotificationConfig()
    mitigation: MitigationConfig = MitigationConfig()
    limits: LimitsConfig = LimitsConfig()
    # what incidents may change together (domain.blast_radius): leases, hourly rates, ceilings
    blast_radius: BlastRadiusConfig = BlastRadiusConfig()
    sla: SlaConfig = SlaConfig()
    health: HealthConfig = HealthConfig()
    ui: UiConfig = UiConfig()
    postincident: PostIncidentConfig = PostIncidentConfig()
    recovery: RecoveryConfig = RecoveryConfig()
    cache: CacheConfig = CacheConfig()
    memory: MemoryConfig = MemoryConfig()
    restore: RestoreConfig = RestoreConfig()
    slack: SlackConfig = SlackConfig()
    # SLIs from Prometheus (domain.prometheus); url unset: recorded as skipped
    prometheus: PrometheusConfig = PrometheusConfig()
    # Excluded from serialization: token hashes never travel into workflow history.
    api: ApiConfig = Field(default_factory=ApiConfig, exclude=True)

    def with_env_secrets(self, env: Mapping[str, str] | None = None) -> CodeBlueConfig:
        """Webhook URLs are credentials: the worker's environment (or a mounted Secret as env)
        supplies them, over the file. Variables: SECRET_URL_ENV. Whether the Slack bot token
        is set there is recorded too (`slack.bot_token_set`; the token stays in the environment)."""
        e = os.environ if env is None else env
        n = {f: e[v] for f, v in SECRET_URL_ENV.items() if f != "calendar_webhook_url" and e.get(v)}
        out = self.model_copy(update={"notifications": self.notifications.model_copy(update=n)}) if n else self
        cal = e.get(SECRET_URL_ENV["calendar_webhook_url"])
        if cal:
            out = out.model_copy(update={"postincident": out.postincident.model_copy(update={"calendar_webhook_url": cal})})
        bot = bool((e.get(out.slack.bot_token_env) or "").strip())
        if bot != out.slack.bot_token_set:
            out = out.model_copy(update={"slack": out.slack.model_copy(update={"bot_token_set": bot})})
        prom = (e.get(PROMETHEUS_URL_ENV) or "").strip()
        if prom:
            try:
                url = PrometheusConfig.model_validate({"url": prom}).url  # same checks as the file's
            except ValidationError:
                raise ConfigError(f"{PROMETHEUS_URL_ENV}: must be an http:// or https:// URL") from None
            out = out.model_copy(update={"prometheus": out.prometheus.model_copy(update={"url": url})})
        return out

    def for_history(self) -> CodeBlueConfig:
        """What a workflow may hold (it lands in history): the worker's config without any
        webhook URL. Only the notifier and calendar activities, built from the worker's own
        config, know where to deliver."""
        return self.model_copy(update={
            "notifications": self.notifications.model_copy(update={f: None for f in SECRET_URL_FIELDS}),
            "postincident": self.postincident.model_copy(update={"calendar_webhook_url": None}),
            # set or not is what a workflow needs; credentials in it (user:pass@) and the extra
            # headers (an Authorization, a tenant) stay here
            "prometheus": self.prometheus.model_copy(update={"url": _without_userinfo(self.prometheus.url),
                                                             "headers": {}}),
        })


# Credentials disguised as URLs (a Slack webhook URL is a bearer token): from the environment.
SECRET_URL_ENV = {
    "slack_webhook_url": "CODEBLUE_SLACK_WEBHOOK_URL",
    "webhook_url": "CODEBLUE_WEBHOOK_URL",
    "statuspage_url": "CODEBLUE_STATUSPAGE_URL",
    "pagerduty_url": "CODEBLUE_PAGERDUTY_URL",
    "calendar_webhook_url": "CODEBLUE_CALENDAR_WEBHOOK_URL",
}
SECRET_URL_FIELDS = ("slack_webhook_url", "webhook_url", "statuspage_url", "pagerduty_url")
# Prometheus' base URL from the worker's environment (wins over prometheus.url in the file)
PROMETHEUS_URL_ENV = "CODEBLUE_PROMETHEUS_URL"


def _without_userinfo(url: str | None) -> str | None:
    if not url:
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


class EnvironmentQuery(BaseModel):
    incident_id: str
    # the incident's service: the worker answers with that catalog service's targets
    # ("": the catalog's default service, as before the catalog)
    service: str = Field(default="", max_length=100)
    # a person's start: the worker checks no earlier run of this workflow ID used its proof
    workflow_id: str | None = None
    run_id: str | None = None
    start_proof: str | None = None  # the proof's MAC
    start_issued_at: float | None = None


class ConfigError(Exception):
    """A bad config file; the message is one line naming the file and the field."""


def _backstage_services(path: Path) -> dict[str, ServiceEntry]:
    try:
        found = read_catalog_file(path)
    except CatalogError as e:
        raise ConfigError(str(e)) from None
    out = {}
    for name, fields in found.items():
        try:
            out[name] = ServiceEntry.model_validate(fields)
        except ValidationError as e:
            err = e.errors()[0]
            raise ConfigError(f"{path}: Component {name}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    return out


def load_config(path: str | Path | None = None) -> CodeBlueConfig:
    """Load the YAML at `path` (or $CODEBLUE_CONFIG); neither given: the runbook defaults."""
    if path is None:
        path = os.environ.get("CODEBLUE_CONFIG") or None
    if path is None:
        return CodeBlueConfig()
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{p}: file not found") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}:{where} not valid YAML") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: top level must be a mapping of sections")
    try:
        cfg = CodeBlueConfig.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(x) for x in err["loc"]) or "(top level)"
        raise ConfigError(f"{p}: {field}: {err['msg']}") from None
    if cfg.backstage_catalog:
        cfg = cfg.model_copy(update={"services": {**_backstage_services(p.parent / cfg.backstage_catalog),
                                                  **cfg.services}})
    routing = {name: e.pagerduty_routing_key_env for name, e in cfg.services.items() if e.pagerduty_routing_key_env}
    if routing:
        n = cfg.notifications
        cfg = cfg.model_copy(update={"notifications": n.model_copy(update={
            "pagerduty_service_routing_keys_env": {**routing, **n.pagerduty_service_routing_keys_env}})})
    return cfg
