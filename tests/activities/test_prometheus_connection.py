"""Prometheus connection settings (managed Prometheus, Thanos, Mimir): a bearer token from the
environment variable the config names, extra headers (a tenant), a CA bundle and a client
certificate for mTLS. Against real servers on loopback: an aiohttp app answering
`/api/v1/query` in Prometheus' format that checks the credentials, and the same app behind TLS
requiring a client certificate (a CA, server and client certificates made here). A refused
read is recorded on the SLI, never raised; the token never shows in a result, an error or a log.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import ValidationError
from temporalio.testing import ActivityEnvironment

from activities.http_client import tls_context
from activities.prometheus import PrometheusActivities, connection_headers, connection_tls, prometheus_client
from domain.config import CodeBlueConfig, ConfigError, load_config
from domain.prometheus import PROMETHEUS_TOKEN_ENV, PrometheusConfig, Sli, SliQuery, SliReport, SliValue
from starters.ports import free_port

TOKEN = "tok-3f9a1c-never-shown-8d2e"
TOKEN_ENV = "CODEBLUE_TEST_PROMETHEUS_TOKEN"
TENANT = "tenant-blue"
SLI = Sli(name="5xx ratio", query="sum(rate(http_requests_total[1m]))", threshold=0.05)


# -- a Prometheus stand-in that checks who asks ------------------------------------------------


@dataclass
class Seen:
    requests: list[dict[str, str]]


def _app(seen: Seen, *, token: str | None, tenant: str | None) -> web.Application:
    async def query(request: web.Request) -> web.Response:
        seen.requests.append(dict(request.headers))
        auth = request.headers.get("Authorization", "")
        if token is not None and auth != f"Bearer {token}":
            # as a careless proxy does: the credentials it got, echoed in plain text
            return web.Response(status=401, text=f"unauthorized: got Authorization={auth!r}")
        if tenant is not None and request.headers.get("X-Scope-OrgID") != tenant:
            return web.Response(status=401, text="no org id")  # Mimir's answer
        if request.query.get("query") == "echo":  # an API error quoting the request's header
            return web.json_response({"status": "error", "errorType": "bad_data",
                                      "error": f"parse error near {auth}"}, status=400)
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {}, "value": [float(request.query.get("time", "0")), "0.0125"]}]}})

    app = web.Application()
    app.router.add_get("/api/v1/query", query)
    return app


@asynccontextmanager
async def serving(app: web.Application, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context)
    await site.start()
    try:
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _read(cfg: PrometheusConfig, query: str | None = None) -> SliReport:
    """One SLI read through the SDK's activity environment, the activity building its client
    from the config (as the worker does), closed after."""
    if query is not None:
        cfg = cfg.model_copy(update={"slis": [SLI.model_copy(update={"query": query})]})
    acts = PrometheusActivities(cfg)
    try:
        return await ActivityEnvironment().run(acts.sli_values, SliQuery(incident_id="INC-CONN"))
    finally:
        await acts.aclose()


def _only(report: SliReport) -> SliValue:
    assert len(report.values) == 1, report
    return report.values[0]


def _no_token(report: SliReport) -> None:
    text = report.model_dump_json()
    assert TOKEN not in text and TOKEN[:12] not in text, text


# -- bearer token and headers --------------------------------------------------------------------


async def test_the_token_and_tenant_header_are_sent_and_never_shown(monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    seen = Seen([])
    async with serving(_app(seen, token=TOKEN, tenant=TENANT)) as url:
        cfg = PrometheusConfig(url=url, slis=[SLI], bearer_token_env=TOKEN_ENV, headers={"X-Scope-OrgID": TENANT})

        monkeypatch.setenv(TOKEN_ENV, TOKEN)
        good = await _read(cfg)
        v = _only(good)
        assert v.value == 0.0125 and v.ok is True and v.error is None, v
        assert seen.requests[-1]["Authorization"] == f"Bearer {TOKEN}"
        assert seen.requests[-1]["X-Scope-OrgID"] == TENANT
        _no_token(good)

        # the API quoting the header back in its error: recorded, redacted
        echoed = _only(await _read(cfg, query="echo"))
        assert echoed.ok is None and echoed.error is not None
        assert echoed.error.startswith("bad query (bad_data): parse error near "), echoed
        assert TOKEN not in echoed.error and "<redacted>" in echoed.error, echoed.error

        # without the tenant header: Mimir's refusal, recorded on the SLI
        no_tenant = _only(await _read(cfg.model_copy(update={"headers": {}})))
        assert no_tenant.ok is None and no_tenant.value is None
        assert no_tenant.error is not None and no_tenant.error.startswith("HTTP 401: refused"), no_tenant
        assert "no org id" in no_tenant.error

        # a wrong token, echoed by the server: the error names the status, never the token
        monkeypatch.setenv(TOKEN_ENV, TOKEN[::-1])
        wrong = _only(await _read(cfg))
        assert wrong.ok is None and wrong.error is not None and wrong.error.startswith("HTTP 401: refused"), wrong
        assert TOKEN[::-1] not in wrong.error and "<redacted>" in wrong.error, wrong.error

        # no token in the environment (unset or empty): no Authorization header at all
        for unset in (None, "  "):
            if unset is None:
                monkeypatch.delenv(TOKEN_ENV)
            else:
                monkeypatch.setenv(TOKEN_ENV, unset)
            missing = await _read(cfg)
            assert "Authorization" not in seen.requests[-1]
            assert _only(missing).ok is None and (_only(missing).error or "").startswith("HTTP 401: refused")
            assert missing.detail == "1 SLIs read, 1 without a value"
    assert TOKEN not in caplog.text and TOKEN[::-1] not in caplog.text


async def test_the_default_token_variable_and_an_authorization_header_of_ones_own(monkeypatch):
    assert PrometheusConfig().bearer_token_env == PROMETHEUS_TOKEN_ENV == "CODEBLUE_PROMETHEUS_TOKEN"
    seen = Seen([])
    async with serving(_app(seen, token=TOKEN, tenant=None)) as url:
        monkeypatch.setenv(PROMETHEUS_TOKEN_ENV, TOKEN)
        assert _only(await _read(PrometheusConfig(url=url, slis=[SLI]))).ok is True
        monkeypatch.delenv(PROMETHEUS_TOKEN_ENV)
        # no bearer_token_env: the Authorization header comes from `headers` (a gateway's own scheme)
        own = PrometheusConfig(url=url, slis=[SLI], bearer_token_env=None, headers={"Authorization": f"Bearer {TOKEN}"})
        report = await _read(own)
        assert _only(report).ok is True, report
        _no_token(report)
    # the headers never reach a workflow's history
    wcfg = CodeBlueConfig(prometheus=own)
    assert wcfg.for_history().prometheus.headers == {}
    assert TOKEN not in wcfg.for_history().model_dump_json()


def test_the_token_is_checked_when_the_client_is_built(monkeypatch):
    cfg = PrometheusConfig(url="https://prometheus.example.org", bearer_token_env=TOKEN_ENV)
    assert connection_headers(cfg, {}) == {}
    assert connection_headers(cfg, {TOKEN_ENV: f" {TOKEN}\n"}) == {"Authorization": f"Bearer {TOKEN}"}
    with pytest.raises(ConfigError) as e:
        connection_headers(cfg, {TOKEN_ENV: "two words"})
    assert str(e.value) == f"{TOKEN_ENV}: the Prometheus bearer token has spaces, control or non-ASCII characters"
    # basic auth in the url and a bearer token: httpx would send the url's; refused
    basic = cfg.model_copy(update={"url": "https://u:p@prometheus.example.org"})
    with pytest.raises(ConfigError, match=r"^prometheus: a bearer token \(CODEBLUE_TEST_PROMETHEUS_TOKEN\) and "
                                          r"user:pass@ in the url are both set: use one$"):
        connection_headers(basic, {TOKEN_ENV: TOKEN})
    assert connection_headers(basic, {}) == {}


# -- config validation -----------------------------------------------------------------------------


def _load(tmp_path: Path, prometheus: dict) -> CodeBlueConfig:
    path = tmp_path / "codeblue.yaml"
    path.write_text(json.dumps({"prometheus": prometheus}))  # JSON is YAML
    return load_config(path)


def _refused(tmp_path: Path, prometheus: dict) -> str:
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, prometheus)
    text = str(e.value)
    assert "\n" not in text, text
    return text.removeprefix(f"{tmp_path / 'codeblue.yaml'}: ")


def test_connection_settings_are_validated_in_one_line(tmp_path):
    ok = _load(tmp_path, {"url": "https://mimir.example.org/prometheus", "bearer_token_env": "MIMIR_TOKEN",
                          "headers": {"X-Scope-OrgID": "tenant-1"}, "ca_file": "/etc/p/ca.pem",
                          "cert_file": "/etc/p/c.pem", "key_file": "/etc/p/k.pem"}).prometheus
    assert (ok.bearer_token_env, ok.headers, ok.ca_file, ok.cert_file, ok.key_file) == (
        "MIMIR_TOKEN", {"X-Scope-OrgID": "tenant-1"}, "/etc/p/ca.pem", "/etc/p/c.pem", "/etc/p/k.pem")
    defaults = PrometheusConfig()
    assert (defaults.headers, defaults.ca_file, defaults.cert_file, defaults.key_file) == ({}, None, None, None)

    assert _refused(tmp_path, {"cert_file": "/etc/p/c.pem"}) == (
        "prometheus: Value error, cert_file and key_file go together: both (a client certificate for mTLS) or neither")
    assert _refused(tmp_path, {"key_file": "/etc/p/k.pem"}).startswith("prometheus: Value error, cert_file and key_file")
    assert _refused(tmp_path, {"headers": {"X Scope": "a"}}) == (
        "prometheus.headers: Value error, 'X Scope' is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~)")
    assert _refused(tmp_path, {"headers": {"X-Scope-OrgID:": "a"}}).startswith("prometheus.headers: Value error, 'X-Scope-OrgID:' is not")
    assert _refused(tmp_path, {"headers": {"X-A": "1", "x-a": "2"}}) == "prometheus.headers: Value error, header 'x-a' is given twice"
    # a value that would split the request: refused without being shown
    refused = _refused(tmp_path, {"headers": {"X-Scope-OrgID": f"{TOKEN}\r\nX-Evil: 1"}})
    assert refused == "prometheus.headers: Value error, header 'X-Scope-OrgID': its value must be one line of printable ASCII"
    # an Authorization header and a bearer token variable: one of them
    assert _refused(tmp_path, {"headers": {"authorization": "Basic abc"}}) == (
        "prometheus: Value error, headers.Authorization and bearer_token_env (CODEBLUE_PROMETHEUS_TOKEN) are both "
        "set: use one (bearer_token_env: null to send your own Authorization header)")
    # the token pasted where its variable's name goes: refused, not repeated
    refused = _refused(tmp_path, {"bearer_token_env": "eyJhbGciOi.JIUzI1NiJ9-x"})
    assert "eyJhbGciOi" not in refused and "not the token itself" in refused, refused
    with pytest.raises(ValidationError) as e:
        PrometheusConfig(bearer_token_env=TOKEN, headers={"Authorization": TOKEN})
    assert TOKEN not in str(e.value)
    # blank means unset
    blank = _load(tmp_path, {"bearer_token_env": "", "ca_file": " ", "headers": {"Authorization": "Bearer x"}}).prometheus
    assert blank.bearer_token_env is None and blank.ca_file is None


# -- TLS: a CA, a server certificate, a client certificate -----------------------------------------


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, issuer_key: ec.EllipticCurvePrivateKey,
          *, ca: bool = False, server: bool = False) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                          content_commitment=False, key_encipherment=False, data_encipherment=False,
                                          key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        b = b.add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    if server:
        import ipaddress

        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate | None = None, key: ec.EllipticCurvePrivateKey | None = None,
           password: bytes | None = None) -> Path:
    if cert is not None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    else:
        assert key is not None
        enc = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    d = tmp_path_factory.mktemp("prometheus-pki")
    ca_key, other_key, server_key, client_key = _key(), _key(), _key(), _key()
    ca = _cert("CodeBlue test CA", ca_key, "CodeBlue test CA", ca_key, ca=True)
    other = _cert("Another CA", other_key, "Another CA", other_key, ca=True)
    return Pki(
        ca=_write(d / "ca.pem", ca),
        server_cert=_write(d / "server.pem", _cert("prometheus", server_key, "CodeBlue test CA", ca_key, server=True)),
        server_key=_write(d / "server-key.pem", key=server_key),
        client_cert=_write(d / "client.pem", _cert("codeblue-worker", client_key, "CodeBlue test CA", ca_key)),
        client_key=_write(d / "client-key.pem", key=client_key),
        other_ca=_write(d / "other-ca.pem", other),
    )


def _server_tls(pki: Pki) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
    ctx.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    ctx.verify_mode = ssl.CERT_REQUIRED  # no client certificate, no answer
    return ctx


async def test_mtls_with_the_configured_ca_and_client_certificate(pki, monkeypatch):
    monkeypatch.delenv(PROMETHEUS_TOKEN_ENV, raising=False)
    seen = Seen([])
    async with serving(_app(seen, token=None, tenant=None), _server_tls(pki)) as url:
        mtls = PrometheusConfig(url=url, slis=[SLI], ca_file=str(pki.ca), cert_file=str(pki.client_cert),
                                key_file=str(pki.client_key))
        good = _only(await _read(mtls))
        assert good.value == 0.0125 and good.ok is True, good
        assert len(seen.requests) == 1

        # the server verified by our CA, but no client certificate: refused in the handshake
        no_cert = _only(await _read(mtls.model_copy(update={"cert_file": None, "key_file": None})))
        assert no_cert.ok is None and no_cert.value is None
        assert no_cert.error is not None and no_cert.error.startswith("Prometheus unreachable: "), no_cert
        assert no_cert.error != "Prometheus unreachable: ReadError", "the cause's text, not a bare name"

        # another CA: the server's certificate does not verify
        for wrong in (mtls.model_copy(update={"ca_file": str(pki.other_ca)}),
                      mtls.model_copy(update={"ca_file": None})):  # the default roots do not know our CA
            failed = _only(await _read(wrong))
            assert failed.ok is None and failed.error is not None, failed
            assert "CERTIFICATE_VERIFY_FAILED" in failed.error, failed.error
        assert len(seen.requests) == 1

        # the worker's path: prometheus_client builds the same client
        async with prometheus_client(mtls) as http:
            report = await PrometheusActivities(mtls, http).sli_values(SliQuery(incident_id="INC-CONN"))
        assert _only(report).ok is True and len(seen.requests) == 2


def test_unusable_files_are_one_config_error_line(pki, tmp_path):
    def refused(**files: str | None) -> str:
        cfg = PrometheusConfig(url="https://127.0.0.1:1", **files)
        with pytest.raises(ConfigError) as e:
            prometheus_client(cfg)
        assert "\n" not in str(e.value) and e.value.__cause__ is None
        return str(e.value)

    missing = str(tmp_path / "missing.pem")
    assert refused(ca_file=missing) == f"prometheus.ca_file: cannot read the CA bundle {missing}: No such file or directory"
    assert refused(ca_file=str(tmp_path)) == f"prometheus.ca_file: cannot read the CA bundle {tmp_path}: Is a directory"
    assert refused(ca_file=str(pki.client_key)).startswith(f"prometheus.ca_file: {pki.client_key} holds no PEM certificate")
    assert refused(cert_file=missing, key_file=str(pki.client_key)) == (
        f"prometheus.cert_file: cannot read the client certificate {missing}: No such file or directory")
    assert refused(cert_file=str(pki.client_cert), key_file=missing) == (
        f"prometheus.key_file: cannot read the client key {missing}: No such file or directory")
    # the server's key with the client's certificate: not a pair
    assert refused(cert_file=str(pki.client_cert), key_file=str(pki.server_key)).startswith(
        "prometheus.cert_file, key_file: ")
    # an encrypted key: refused, never a password prompt on the worker's terminal
    locked = _write(tmp_path / "locked.pem", key=_key(), password=b"pw")
    assert refused(cert_file=str(pki.client_cert), key_file=str(locked)) == (
        f"prometheus.key_file: {locked} is encrypted: give an unencrypted PEM key")
    # without any of them, the shared verifying context
    assert connection_tls(PrometheusConfig()) is tls_context()


async def test_a_file_missing_at_first_use_is_recorded_on_each_sli(tmp_path):
    missing = str(tmp_path / "ca.pem")
    cfg = PrometheusConfig(url="https://127.0.0.1:1", ca_file=missing)
    report = await _read(cfg)
    assert [v.error for v in report.values] == [
        f"prometheus.ca_file: cannot read the CA bundle {missing}: No such file or directory"] * 3
    assert all(v.ok is None for v in report.values)


def test_the_worker_builds_the_prometheus_client_at_start(tmp_path):
    from worker.main import activities_for

    kube = tmp_path / "kubeconfig"
    kube.write_text("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n"
                    "users: [{name: u, user: {}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
                    "current-context: x\n")
    missing = tmp_path / "ca.pem"
    cfg = CodeBlueConfig.model_validate({"kubernetes": {"kubeconfig": str(kube)},
                                         "prometheus": {"url": "https://127.0.0.1:1", "ca_file": str(missing)}})
    http = httpx.AsyncClient()
    with pytest.raises(ConfigError, match=r"^prometheus\.ca_file: cannot read the CA bundle .*: No such file or directory$"):
        activities_for(cfg, http)
