"""The environment a worker acts on: one YAML file, defaults from the runbook."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import BaseModel, Field, ValidationError


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
    pagerduty_url: str | None = None  # PagerDuty Events v2-style enqueue URL
    pagerduty_routing_key_env: str = "CODEBLUE_PAGERDUTY_ROUTING_KEY"
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


class SlaConfig(_Section):
    diagnostics_seconds: int = Field(default=300, ge=1)
    assessment_seconds: int = Field(default=900, ge=1)
    communication_seconds: int = Field(default=900, ge=1)


class HealthConfig(_Section):
    url: str = "https://api.healthcare-platform.com/health"
    attempts: int = Field(default=3, ge=1, le=20)
    timeout_seconds: float = 5.0


class UiConfig(_Section):
    base_url: str = "http://localhost:8233"


class CodeBlueConfig(_Section):
    kubernetes: KubernetesConfig = KubernetesConfig()
    helm: HelmConfig = HelmConfig()
    aws: AwsConfig = AwsConfig()
    database: DatabaseConfig = DatabaseConfig()
    contacts: Contacts = Contacts()
    notifications: NotificationConfig = NotificationConfig()
    mitigation: MitigationConfig = MitigationConfig()
    sla: SlaConfig = SlaConfig()
    health: HealthConfig = HealthConfig()
    ui: UiConfig = UiConfig()


class EnvironmentQuery(BaseModel):
    incident_id: str


class ConfigError(Exception):
    """A bad config file; the message is one line naming the file and the field."""


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
        return CodeBlueConfig.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(x) for x in err["loc"]) or "(top level)"
        raise ConfigError(f"{p}: {field}: {err['msg']}") from None


class TemporalSettings(BaseModel):
    address: str = "localhost:7233"
    namespace: str = "default"
    task_queue: str = "codeblue"

    @classmethod
    def from_env(cls) -> "TemporalSettings":
        return cls(
            address=os.environ.get("TEMPORAL_ADDRESS", "localhost:7233"),
            namespace=os.environ.get("TEMPORAL_NAMESPACE", "default"),
            task_queue=os.environ.get("TEMPORAL_TASK_QUEUE", "codeblue"),
        )
