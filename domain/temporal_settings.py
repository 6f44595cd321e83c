"""How CodeBlue reaches Temporal: address, namespace, task queue, TLS and API key, from the
environment (`TEMPORAL_*`), never from the config file."""

from __future__ import annotations

import os

from pydantic import BaseModel, SecretStr


class TemporalSettings(BaseModel):
    address: str = "localhost:7233"
    namespace: str = "default"
    task_queue: str = "codeblue"
    # mTLS (self-hosted or Temporal Cloud): PEM file paths; a CA alone means server-auth TLS.
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    tls_server_name: str | None = None
    # TLS with the system's roots and no client certificate (implied by an API key).
    tls: bool = False
    # Temporal Cloud API key; a SecretStr so it never shows in a repr or a log line.
    api_key: SecretStr | None = None
    # host:port for the SDK runtime's Prometheus endpoint (workers and CodeBlue's own metrics).
    metrics_bind: str | None = None

    @classmethod
    def from_env(cls) -> TemporalSettings:
        env = os.environ
        key = env.get("TEMPORAL_API_KEY") or None
        return cls(
            address=env.get("TEMPORAL_ADDRESS", "localhost:7233"),
            namespace=env.get("TEMPORAL_NAMESPACE", "default"),
            task_queue=env.get("TEMPORAL_TASK_QUEUE", "codeblue"),
            tls_cert=env.get("TEMPORAL_TLS_CERT") or None,
            tls_key=env.get("TEMPORAL_TLS_KEY") or None,
            tls_ca=env.get("TEMPORAL_TLS_CA") or None,
            tls_server_name=env.get("TEMPORAL_TLS_SERVER_NAME") or None,
            tls=env.get("TEMPORAL_TLS", "").strip().lower() in ("1", "true", "yes", "on"),
            api_key=SecretStr(key) if key else None,
            metrics_bind=env.get("CODEBLUE_METRICS_BIND") or None,
        )
