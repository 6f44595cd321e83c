"""Production connection settings from the environment: mTLS, Temporal Cloud API key,
namespace, metrics endpoint; bad values are one-line errors, the key never shows."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from temporalio.client import TLSConfig

from domain.config import ConfigError, TemporalSettings
from worker.connection import connect_options, tls_config

_VARS = ["TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_TASK_QUEUE", "TEMPORAL_TLS_CERT", "TEMPORAL_TLS_KEY",
         "TEMPORAL_TLS_CA", "TEMPORAL_TLS_SERVER_NAME", "TEMPORAL_TLS", "TEMPORAL_API_KEY", "CODEBLUE_METRICS_BIND",
         "CODEBLUE_TRACING"]


@pytest.fixture
def clean_env(monkeypatch):
    for v in _VARS:
        monkeypatch.delenv(v, raising=False)
    return monkeypatch


def _pem(tmp_path, name: str) -> str:
    p = tmp_path / name
    p.write_bytes(f"-----BEGIN {name}-----\n".encode())
    return str(p)


def test_defaults_are_a_local_plaintext_server(clean_env):
    s = TemporalSettings.from_env()
    assert (s.address, s.namespace, s.task_queue) == ("localhost:7233", "default", "codeblue")
    opts = connect_options(s)
    assert [type(i).__name__ for i in opts.pop("interceptors")] == ["IdentityInterceptor"]  # signs and verifies
    assert opts == {"tls": False}


def test_mtls_from_the_environment(clean_env, tmp_path):
    clean_env.setenv("TEMPORAL_ADDRESS", "temporal.prod.internal:7233")
    clean_env.setenv("TEMPORAL_NAMESPACE", "healthcare")
    clean_env.setenv("TEMPORAL_TLS_CERT", _pem(tmp_path, "CERT"))
    clean_env.setenv("TEMPORAL_TLS_KEY", _pem(tmp_path, "KEY"))
    clean_env.setenv("TEMPORAL_TLS_CA", _pem(tmp_path, "CA"))
    clean_env.setenv("TEMPORAL_TLS_SERVER_NAME", "temporal.prod.internal")
    s = TemporalSettings.from_env()
    tls = tls_config(s)
    assert isinstance(tls, TLSConfig)
    assert (tls.client_cert or b"").startswith(b"-----BEGIN CERT")
    assert (tls.client_private_key or b"").startswith(b"-----BEGIN KEY")
    assert (tls.server_root_ca_cert or b"").startswith(b"-----BEGIN CA") and tls.domain == "temporal.prod.internal"
    assert s.namespace == "healthcare" and "api_key" not in connect_options(s)


def test_temporal_cloud_api_key_implies_tls_and_never_shows(clean_env):
    clean_env.setenv("TEMPORAL_ADDRESS", "us-east-1.aws.api.temporal.io:7233")
    clean_env.setenv("TEMPORAL_NAMESPACE", "codeblue.a1b2c")
    clean_env.setenv("TEMPORAL_API_KEY", "tc-secret-key-123")
    s = TemporalSettings.from_env()
    assert "tc-secret-key-123" not in repr(s) and "tc-secret-key-123" not in s.model_dump_json()
    opts = connect_options(s)
    opts.pop("interceptors")
    assert opts == {"tls": True, "api_key": "tc-secret-key-123"}


def test_server_auth_tls_without_a_client_certificate(clean_env):
    clean_env.setenv("TEMPORAL_TLS", "true")
    assert tls_config(TemporalSettings.from_env()) is True


def test_a_cert_without_its_key_is_refused(clean_env, tmp_path):
    clean_env.setenv("TEMPORAL_TLS_CERT", _pem(tmp_path, "CERT"))
    with pytest.raises(ConfigError, match="TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY must be set together"):
        tls_config(TemporalSettings.from_env())


def test_an_unreadable_cert_is_a_one_line_cli_error(tmp_path):
    codeblue = shutil.which("codeblue")
    assert codeblue
    env = {k: v for k, v in os.environ.items() if k not in _VARS}
    env.update(TEMPORAL_TLS_CERT=str(tmp_path / "missing.crt"), TEMPORAL_TLS_KEY=str(tmp_path / "missing.key"))
    r = subprocess.run([codeblue, "incident", "list"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "TEMPORAL_TLS_CERT" in lines[0] and "missing.crt" in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_the_workflow_sandbox_is_shared_by_default_strict_on_request_and_a_typo_is_refused(monkeypatch):
    from domain.config import ConfigError
    from worker.temporal import SANDBOX_ENV, workflow_runner

    monkeypatch.delenv(SANDBOX_ENV, raising=False)
    shared = workflow_runner().restrictions
    assert {"workflows", "domain"} <= set(shared.passthrough_modules)
    monkeypatch.setenv(SANDBOX_ENV, "strict")
    strict = workflow_runner().restrictions
    assert "workflows" not in strict.passthrough_modules
    monkeypatch.setenv(SANDBOX_ENV, "sharde")
    with pytest.raises(ConfigError, match="CODEBLUE_WORKFLOW_SANDBOX='sharde'"):
        workflow_runner()
