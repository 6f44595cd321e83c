"""How to reach a production Temporal: mTLS, Temporal Cloud API keys, and the SDK runtime
that serves Prometheus metrics. `worker.temporal.connect` applies these options."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from temporalio.client import TLSConfig
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from domain.config import ConfigError, TemporalSettings
from domain.identity import OPERATOR_VIA
from worker.identity import client_interceptors

_runtimes: dict[str, Runtime] = {}


def _read_pem(path: str, what: str, var: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"{var}: cannot read the {what} {path}: {e.strerror}") from None


def tls_config(s: TemporalSettings) -> TLSConfig | bool:
    """mTLS when a client cert is given, server-auth TLS for a CA, an API key or
    TEMPORAL_TLS=true; otherwise plaintext (False)."""
    if bool(s.tls_cert) != bool(s.tls_key):
        raise ConfigError("TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY must be set together")
    if not (s.tls_cert or s.tls_ca or s.tls_server_name):
        return bool(s.tls or s.api_key)
    return TLSConfig(
        client_cert=_read_pem(s.tls_cert, "client certificate", "TEMPORAL_TLS_CERT") if s.tls_cert else None,
        client_private_key=_read_pem(s.tls_key, "client key", "TEMPORAL_TLS_KEY") if s.tls_key else None,
        server_root_ca_cert=_read_pem(s.tls_ca, "CA certificate", "TEMPORAL_TLS_CA") if s.tls_ca else None,
        domain=s.tls_server_name,
    )


# Seconds: the runbook reminds the IC at 5:00 and pages the engineering manager at 10:00, so
# the approval-wait histogram has bucket edges there (deploy/prometheus/codeblue-rules.yaml).
APPROVAL_WAIT_BUCKETS = (30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0)


def metrics_runtime(bind: str) -> Runtime:
    """One runtime per process and address (binding the port twice would fail)."""
    if bind not in _runtimes:
        from workflows.metrics import APPROVAL_WAIT

        try:
            _runtimes[bind] = Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(
                bind_address=bind, histogram_bucket_overrides={APPROVAL_WAIT: list(APPROVAL_WAIT_BUCKETS)})))
        except Exception as e:  # noqa: BLE001 - the core raises a plain RuntimeError/ValueError on a bad or busy address
            raise ConfigError(f"CODEBLUE_METRICS_BIND={bind}: cannot serve metrics: {e}") from None
    return _runtimes[bind]


def tracing_interceptor() -> Any:
    """OpenTelemetry spans for workflow starts, runs, signals, updates and activities.
    Exported by the global tracer provider; when none is configured and the OTLP exporter
    is installed, one exporting to $OTEL_EXPORTER_OTLP_ENDPOINT is set up."""
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from temporalio.contrib.opentelemetry import TracingInterceptor
    except ImportError:
        raise ConfigError("CODEBLUE_TRACING=otel needs OpenTelemetry: pip install 'codeblue[tracing]'") from None
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError:
            OTLPSpanExporter = None  # the host process configures tracing (e.g. opentelemetry-instrument)
        if OTLPSpanExporter is not None:
            provider = TracerProvider()
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            trace.set_tracer_provider(provider)
    return TracingInterceptor()


def tracing_enabled() -> bool:
    value = os.environ.get("CODEBLUE_TRACING", "").strip().lower()
    if value in ("", "off", "none", "false", "0"):
        return False
    if value != "otel":
        raise ConfigError(f"CODEBLUE_TRACING={value}: expected otel or off")
    return True


def connect_options(s: TemporalSettings, via: str | None = OPERATOR_VIA) -> dict[str, Any]:
    """Keyword arguments for `Client.connect` beyond address, namespace and converter.
    Interceptors set on the client apply to every worker built from it. `via`: how this
    client signs commands (worker.identity; None: only for an `acting_as` principal)."""
    opts: dict[str, Any] = {"tls": tls_config(s)}
    interceptors: list[Any] = list(client_interceptors(via))
    if s.api_key is not None:
        opts["api_key"] = s.api_key.get_secret_value()
    if s.metrics_bind:
        from workflows.metrics import MetricsInterceptor

        opts["runtime"] = metrics_runtime(s.metrics_bind)
        interceptors.append(MetricsInterceptor())
    if tracing_enabled():
        interceptors.append(tracing_interceptor())
    opts["interceptors"] = interceptors
    return opts
