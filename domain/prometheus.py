"""Service-level indicators read from Prometheus: the config that names them (the worker's),
the requests a workflow sends (SLI names and times, never a query or a URL), the results.

    prometheus:
      url: http://prometheus.monitoring:9090      # or $CODEBLUE_PROMETHEUS_URL; unset: skipped
      slis:
        - {name: 5xx ratio, query: 'sum(rate(...))', threshold: 0.05, comparison: "<"}
      dashboards: {grafana: "https://grafana/d/gw?var-service={service}&from={from}&to={to}"}
      bearer_token_env: CODEBLUE_PROMETHEUS_TOKEN  # the variable's NAME; set: Authorization: Bearer
      headers: {X-Scope-OrgID: tenant-1}           # e.g. Mimir/Cortex tenancy
      ca_file: /etc/prometheus-tls/ca.pem          # verifies the server (instead of the default roots)
      cert_file: /etc/prometheus-tls/client.pem    # mTLS: a client certificate and its key, both or neither
      key_file: /etc/prometheus-tls/client-key.pem

`comparison` is the OK condition: `value <comparison> threshold` (an error ratio `<` 0.05).
"""

from __future__ import annotations

import math
import re
import string
from datetime import UTC, datetime
from typing import Literal, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, Field, field_validator, model_validator

from domain.incident import IncidentId

Comparison = Literal["<", "<=", ">", ">="]

# the placeholders a dashboard link template may use
DASHBOARD_PLACEHOLDERS = frozenset({"incident_id", "service", "from", "to"})
# a range picture has at most this many points per SLI (the step grows to fit): history-sized
MAX_RANGE_POINTS = 600
# the environment variable that holds Prometheus' bearer token, unless the config names another
PROMETHEUS_TOKEN_ENV = "CODEBLUE_PROMETHEUS_TOKEN"
# an HTTP header name is a token (RFC 9110 5.1); a value one line of printable ASCII (tab allowed)
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Section(BaseModel):
    model_config = {"extra": "forbid"}


class Sli(_Section):
    name: str = Field(min_length=1, max_length=64)
    # PromQL giving one instant value (aggregate it: `sum(...)`); several series: the worst counts
    query: str = Field(min_length=1, max_length=4000)
    threshold: float
    comparison: Comparison = "<"
    unit: str = Field(default="", max_length=16)  # "" for ratios, "s" for latencies


def _gateway_slis() -> list[Sli]:
    """The runbook's gateway: errors, latency, saturation, from the metrics the sandbox's
    gateway exports (standard HTTP server names; adjust to your exporter)."""
    svc = 'service="api-gateway"'
    return [
        Sli(name="5xx ratio",
            query=f'sum(rate(http_requests_total{{{svc},code=~"5.."}}[1m])) / sum(rate(http_requests_total{{{svc}}}[1m]))',
            threshold=0.05, comparison="<"),
        Sli(name="p99 latency",
            query=f"histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{{{svc}}}[1m])))",
            threshold=1.0, comparison="<", unit="s"),
        # requests being served / how many the gateway serves at once (its worker pool)
        Sli(name="saturation",
            query=f"sum(http_requests_in_flight{{{svc}}}) / sum(http_requests_max_in_flight{{{svc}}})",
            threshold=0.8, comparison="<"),
    ]


class AnalysisConfig(_Section):
    """How a workflow judges a mitigation from SLIs (for the workflows): `count` measurements
    `interval_seconds` apart; it passes at `successes` consecutive measurements with every SLI OK and fails
    once more than `failure_limit` breach (Argo Rollouts' analysis semantics). A measurement
    with errors or skipped counts as neither."""

    interval_seconds: int = Field(default=30, ge=1)
    count: int = Field(default=5, ge=1, le=100)
    successes: int = Field(default=3, ge=1)
    failure_limit: int = Field(default=2, ge=0)

    @model_validator(mode="after")
    def _reachable(self) -> AnalysisConfig:
        if self.successes > self.count:
            raise ValueError(f"successes ({self.successes}) cannot exceed count ({self.count})")
        return self


class PrometheusConfig(_Section):
    # a refused value (a header's, a mistaken token) is never echoed in a validation error
    model_config = {"extra": "forbid", "hide_input_in_errors": True}

    # Prometheus' base URL (the HTTP API is at {url}/api/v1/...); $CODEBLUE_PROMETHEUS_URL wins.
    # Unset: every SLI read is recorded as skipped.
    url: str | None = None
    timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    # the service the SLIs describe ({service} in dashboard links)
    service: str = "api-gateway"
    # name -> link template with {incident_id}, {service}, {from}, {to} (epoch milliseconds, as
    # Grafana takes them), e.g. https://grafana.example.org/d/gw?var-service={service}&from={from}&to={to}
    dashboards: dict[str, str] = {}
    # a link's window when the request gives no start: this long before its time
    dashboard_window_minutes: int = Field(default=60, ge=1)
    slis: list[Sli] = Field(default_factory=_gateway_slis)
    analysis: AnalysisConfig = AnalysisConfig()
    # -- connection (managed Prometheus, Thanos, Mimir); read when the worker builds its client --
    # The NAME of the environment variable holding a bearer token, never the token: set and
    # non-empty in the worker's environment, every request carries `Authorization: Bearer <it>`.
    # null: no bearer token (then `headers` may carry an Authorization of their own).
    bearer_token_env: str | None = PROMETHEUS_TOKEN_ENV
    # extra request headers, e.g. {X-Scope-OrgID: tenant-1} (Mimir, Cortex, Thanos tenancy);
    # they stay in the worker (for_history drops them)
    headers: dict[str, str] = {}
    # a PEM CA bundle verifying the server, instead of the default roots (certifi's, or
    # $SSL_CERT_FILE); a client certificate and its key (PEM) for mTLS, both or neither
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    @field_validator("url")
    @classmethod
    def _url_ok(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        v = v.strip().rstrip("/")
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v

    @field_validator("bearer_token_env", "ca_file", "cert_file", "key_file")
    @classmethod
    def _blank_is_none(cls, v: str | None) -> str | None:
        return v.strip() or None if v is not None else None

    @field_validator("bearer_token_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME.fullmatch(v):
            # a pasted token lands here: say so without repeating it
            raise ValueError("must be the NAME of an environment variable (letters, digits, _), not the token itself")
        return v

    @field_validator("headers")
    @classmethod
    def _headers_ok(cls, v: dict[str, str]) -> dict[str, str]:
        seen: set[str] = set()
        for name, value in v.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~)")
            if name.lower() in seen:
                raise ValueError(f"header {name!r} is given twice")
            seen.add(name.lower())
            if not _HEADER_VALUE.fullmatch(value):
                raise ValueError(f"header {name!r}: its value must be one line of printable ASCII")
        return {name: value.strip() for name, value in v.items()}

    @model_validator(mode="after")
    def _connection_ok(self) -> PrometheusConfig:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("cert_file and key_file go together: both (a client certificate for mTLS) or neither")
        if self.bearer_token_env and any(n.lower() == "authorization" for n in self.headers):
            raise ValueError(f"headers.Authorization and bearer_token_env ({self.bearer_token_env}) are both set: "
                             "use one (bearer_token_env: null to send your own Authorization header)")
        return self

    @field_validator("slis")
    @classmethod
    def _unique(cls, v: list[Sli]) -> list[Sli]:
        names = [s.name for s in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"SLI names must be unique: {', '.join(dup)}")
        return v

    @field_validator("dashboards")
    @classmethod
    def _templates_ok(cls, v: dict[str, str]) -> dict[str, str]:
        for name, template in v.items():
            try:
                fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
            except ValueError as e:
                raise ValueError(f"dashboard {name!r}: {e}") from None
            unknown = fields - DASHBOARD_PLACEHOLDERS
            if unknown:
                raise ValueError(f"dashboard {name!r}: unknown placeholder {{{sorted(unknown)[0]}}}; "
                                 f"use {', '.join('{' + p + '}' for p in sorted(DASHBOARD_PLACEHOLDERS))}")
        return v

    def sli(self, name: str) -> Sli | None:
        return next((s for s in self.slis if s.name == name), None)

    def render_dashboards(self, incident_id: str, start: datetime, end: datetime) -> dict[str, str]:
        """Each template with its placeholders filled in, URL-encoded."""
        values = {"incident_id": quote(incident_id, safe=""), "service": quote(self.service, safe=""),
                  "from": str(_epoch_ms(start)), "to": str(_epoch_ms(end))}
        return {name: t.format_map(values) for name, t in self.dashboards.items()}


def parse_time(v: str) -> datetime:
    """An ISO 8601 time; naive means UTC."""
    t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _epoch_ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


_OptStr = TypeVar("_OptStr", str, str | None)


def _iso_ok(v: _OptStr) -> _OptStr:
    if v is not None:
        try:
            parse_time(v)
        except ValueError:
            raise ValueError(f"not an ISO 8601 time: {v!r}") from None
    return v


class SliQuery(BaseModel):
    """Read SLIs now (or at `at`). Names pick from the worker's `prometheus.slis`; the query
    itself always comes from there."""

    incident_id: IncidentId
    names: list[str] = []  # empty: every configured SLI
    at: str | None = None  # ISO time for the instant query; None: now
    since: str | None = None  # ISO start of the dashboard links' window; None: `at` less the window

    @field_validator("at", "since")
    @classmethod
    def _times_ok(cls, v: str | None) -> str | None:
        return _iso_ok(v)


class SliValue(BaseModel):
    name: str
    query: str = ""  # "" when the name is not configured
    value: float | None = None  # None: no number (see error)
    threshold: float | None = None
    comparison: Comparison | None = None
    unit: str = ""
    ok: bool | None = None  # None: not known (error); False: breaching
    error: str | None = None  # one line: bad query, no data, unreachable, NaN, ...


class SliReport(BaseModel):
    skipped: bool = False
    detail: str = ""
    at: str | None = None  # the evaluation time, ISO
    values: list[SliValue] = []
    dashboards: dict[str, str] = {}  # name -> link for this incident and time


class SliRangeQuery(BaseModel):
    """Before/after pictures: each SLI's values from `start` to `end` every `step_seconds`
    (the step grows so no SLI has more than MAX_RANGE_POINTS points)."""

    incident_id: IncidentId
    start: str
    end: str
    step_seconds: float = Field(default=15.0, gt=0)
    names: list[str] = []  # empty: every configured SLI

    @field_validator("start", "end")
    @classmethod
    def _times_ok(cls, v: str) -> str:
        return _iso_ok(v)

    @model_validator(mode="after")
    def _ordered(self) -> SliRangeQuery:
        if parse_time(self.end) <= parse_time(self.start):
            raise ValueError("end must be after start")
        return self


class SliSeries(BaseModel):
    name: str
    query: str = ""
    threshold: float | None = None
    comparison: Comparison | None = None
    unit: str = ""
    # (unix seconds, value); value None where Prometheus had NaN/Inf
    points: list[tuple[float, float | None]] = []
    error: str | None = None


class SliRangeReport(BaseModel):
    skipped: bool = False
    detail: str = ""
    start: str | None = None
    end: str | None = None
    step_seconds: float | None = None  # the step used
    series: list[SliSeries] = []
    dashboards: dict[str, str] = {}


def holds(value: float, comparison: str, threshold: float) -> bool:
    """The OK condition `value <comparison> threshold`."""
    return {"<": value < threshold, "<=": value <= threshold,
            ">": value > threshold, ">=": value >= threshold}[comparison]


def worst(values: list[float], comparison: str) -> float:
    """The value furthest on the bad side: the largest when OK means below, else the smallest."""
    return max(values) if comparison in ("<", "<=") else min(values)


def _num(v: float | None, unit: str) -> str:
    if v is None:
        return "n/a"
    text = f"{v:.3g}" if math.isfinite(v) else ("+Inf" if v > 0 else "-Inf")
    return f"{text} {unit}" if unit else text


def breaches(report: SliReport) -> list[str]:
    """One human line per SLI that is not OK: "5xx ratio 0.31 (limit < 0.05)". SLIs that could
    not be read are not breaches (see `unknowns`)."""
    out = []
    for v in report.values:
        if v.ok is False:
            shown = _num(v.value, v.unit) if v.value is not None else (v.error or "n/a")
            out.append(f"{v.name} {shown} (limit {v.comparison} {_num(v.threshold, v.unit)})")
    return out


def unknowns(report: SliReport) -> list[str]:
    """One line per SLI that could not be judged: "saturation: no data (...)"."""
    return [f"{v.name}: {v.error or 'no value'}" for v in report.values if v.ok is None]


def verdict(report: SliReport) -> bool | None:
    """False: some SLI breaches; True: every SLI read and OK; None: skipped or not all known."""
    if any(v.ok is False for v in report.values):
        return False
    if report.skipped or not report.values or any(v.ok is None for v in report.values):
        return None
    return True
