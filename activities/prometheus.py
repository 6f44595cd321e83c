"""SLIs from Prometheus' HTTP API: instant values (`GET /api/v1/query`) and before/after pictures
(`GET /api/v1/query_range`), https://prometheus.io/docs/prometheus/latest/querying/api/.

The worker's config decides everything: the server (`prometheus.url`) and each SLI's PromQL. A
request only names SLIs and times. Nothing here fails an incident: a bad query (400
`bad_data`), an empty result, NaN, a timeout, an unreachable server are recorded on the SLI
as a one-line `error` with `ok=None`; no url: the report is `skipped`. No retries inside: a
workflow judging a mitigation samples again at its next interval.

Connection settings come from the same config: a bearer token from the environment variable
`prometheus.bearer_token_env` names, extra `headers` (a Mimir/Cortex tenant), a CA bundle and a
client certificate for mTLS (`prometheus_client`, which the worker builds at start). A setting
that cannot be used (an unreadable file, a token that cannot be sent) is one ConfigError line;
the token and the headers' values never reach a result, an error or a log line.

Why httpx and not prometheus-api-client: that client is synchronous (requests), so every query
would block the worker's event loop or need a thread of its own; it brings requests and
dateparser (pandas, numpy, matplotlib were required before 0.7 and are extras since), and
answers an error status with an exception carrying the body, where we want Prometheus'
`errorType`/`error`. Two documented GET endpoints with an async client CodeBlue already
shares are simpler.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from temporalio import activity

from activities.deferred import deferred
from activities.http_client import HttpActivities, tls_context
from domain.config import ConfigError
from domain.prometheus import (
    MAX_RANGE_POINTS,
    PrometheusConfig,
    Sli,
    SliQuery,
    SliRangeQuery,
    SliRangeReport,
    SliReport,
    SliSeries,
    SliValue,
    holds,
    parse_time,
    worst,
)

# Deferred (activities.deferred): workflows import this module for its typed activity
# references; httpx load only where an activity uses them.
if TYPE_CHECKING:
    import ssl

    import httpx
else:
    httpx = deferred("httpx")

UNSET = "prometheus.url is not set"
MAX_ERROR_CHARS = 240
REDACTED = "<redacted>"
# a bearer token is sent as is: printable ASCII without spaces (RFC 6750's b64token and more)
_TOKEN_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F))


class QueryFailed(Exception):
    """One line saying why an SLI has no value."""


def _line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def _reason(e: BaseException) -> str:
    """The exception's text, else its first cause's that has one: an mTLS server refusing a
    client without a certificate shows as a bare ReadError over "Connection reset by peer"."""
    seen: set[int] = set()
    x: BaseException | None = e
    while x is not None and id(x) not in seen:
        if str(x):
            return str(x)
        seen.add(id(x))
        x = x.__cause__ or x.__context__
    return ""


def _float(raw: Any) -> float:
    """Prometheus sends sample values as strings: "0.31", "NaN", "+Inf"."""
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise QueryFailed(f"not a number: {raw!r}") from None


# -- connection ------------------------------------------------------------------------------


def connection_headers(cfg: PrometheusConfig, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`cfg.headers` and, when the variable `cfg.bearer_token_env` names is set and non-empty,
    `Authorization: Bearer <token>`. A token that cannot be sent is a ConfigError naming the
    variable, never showing the token."""
    headers = dict(cfg.headers)
    name = cfg.bearer_token_env
    token = ((os.environ if env is None else env).get(name) or "").strip() if name else ""
    if not token:
        return headers
    if not set(token) <= _TOKEN_CHARS:
        raise ConfigError(f"{name}: the Prometheus bearer token has spaces, control or non-ASCII characters")
    if cfg.url and "@" in urlsplit(cfg.url).netloc:
        raise ConfigError(f"prometheus: a bearer token ({name}) and user:pass@ in the url are both set: use one")
    headers["Authorization"] = f"Bearer {token}"
    return headers


def _readable(path: str, what: str, key: str) -> None:
    try:
        with Path(path).open("rb") as f:
            f.read(1)
    except OSError as e:
        raise ConfigError(f"prometheus.{key}: cannot read the {what} {path}: {e.strerror or e}") from None


class _EncryptedKey(Exception):
    pass


def _no_password() -> bytes:
    # OpenSSL would otherwise prompt on the worker's terminal for an encrypted key
    raise _EncryptedKey


def connection_tls(cfg: PrometheusConfig) -> ssl.SSLContext:
    """The shared verifying context (`tls_context()`) unless the config names a CA bundle or a
    client certificate: then a context of its own, with the files read now. A missing,
    unreadable or unusable file is a ConfigError naming the setting and the path."""
    if not (cfg.ca_file or cfg.cert_file):
        return tls_context()
    import ssl

    if cfg.ca_file:
        _readable(cfg.ca_file, "CA bundle", "ca_file")
        try:
            ctx = ssl.create_default_context(cafile=cfg.ca_file)
        except ssl.SSLError as e:
            raise ConfigError(f"prometheus.ca_file: {cfg.ca_file} holds no PEM certificate ({e.reason or e})") from None
        except OSError as e:
            raise ConfigError(f"prometheus.ca_file: cannot read the CA bundle {cfg.ca_file}: {e.strerror or e}") from None
    else:
        ctx = httpx.create_ssl_context()  # httpx's default roots, as tls_context(), plus the certificate
    if cfg.cert_file and cfg.key_file:
        _readable(cfg.cert_file, "client certificate", "cert_file")
        _readable(cfg.key_file, "client key", "key_file")
        try:
            ctx.load_cert_chain(cfg.cert_file, cfg.key_file, password=_no_password)
        except _EncryptedKey:
            raise ConfigError(f"prometheus.key_file: {cfg.key_file} is encrypted: give an unencrypted PEM key") from None
        except (ssl.SSLError, OSError) as e:
            raise ConfigError(f"prometheus.cert_file, key_file: {cfg.cert_file} and {cfg.key_file} are not a PEM "
                              f"certificate and its key ({getattr(e, 'reason', None) or e})") from None
    return ctx


def prometheus_client(cfg: PrometheusConfig, env: Mapping[str, str] | None = None) -> httpx.AsyncClient:
    """A client for `cfg`'s server: its CA bundle and client certificate, its headers and bearer
    token. The files and the token are read now (the worker builds it at start): a setting that
    cannot be used raises ConfigError in one line."""
    # Like curl without -L: a redirect is an answer, not followed (and not 2xx).
    return httpx.AsyncClient(follow_redirects=False, verify=connection_tls(cfg), headers=connection_headers(cfg, env))


class PrometheusActivities(HttpActivities):
    """Uses the client it is given (the worker's `prometheus_client`) or builds one from `cfg`
    on first use; a setting that cannot be used is then recorded on every SLI, like an
    unreachable server."""

    def __init__(self, cfg: PrometheusConfig, http: httpx.AsyncClient | None = None) -> None:
        super().__init__(http)
        self.cfg = cfg

    def _new_http(self) -> httpx.AsyncClient:
        return prometheus_client(self.cfg)

    def _redact(self, text: str) -> str:
        """`text` without the credentials the client sends: the Authorization value (and its
        credentials part) and every configured header's value."""
        if self._http is None:
            return text
        secrets: set[str] = set()
        for name in ("authorization", "proxy-authorization", *self.cfg.headers):
            value = self._http.headers.get(name)
            if value:
                secrets.add(value)
                secrets.add(value.partition(" ")[2])
        for secret in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        return text

    def _failed(self, e: Exception) -> str:
        return _line(self._redact(str(e)))

    # -- HTTP --------------------------------------------------------------------------------

    async def _get(self, path: str, params: dict[str, str]) -> Any:
        """The `data` of a successful answer; anything else raises QueryFailed in one line."""
        timeout = self.cfg.timeout_seconds
        # Prometheus' own evaluation limit too, so a slow query is cancelled there, not left running
        params = {**params, "timeout": f"{timeout:g}s"}
        try:
            http = self.http
        except ConfigError as e:
            raise QueryFailed(str(e)) from None
        try:
            async with asyncio.timeout(timeout + 1):
                resp = await http.get(f"{self.cfg.url}{path}", params=params, timeout=timeout)
        except (httpx.TimeoutException, TimeoutError):
            raise QueryFailed(f"timed out after {timeout:g}s") from None
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            # the exception's text, never the URL (it may carry credentials)
            raise QueryFailed(f"Prometheus unreachable: {type(e).__name__}: {_reason(e)}".rstrip(": ")) from None
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            if resp.status_code in (401, 403):  # a proxy's or Mimir's answer ("no org id"), not the API's
                raise QueryFailed(f"HTTP {resp.status_code}: refused: check prometheus.bearer_token_env's "
                                  f"variable and prometheus.headers ({_line(self._redact(resp.text))[:80]})")
            raise QueryFailed(f"HTTP {resp.status_code}: not a Prometheus API answer")
        if body.get("status") != "success":
            kind = body.get("errorType") or f"HTTP {resp.status_code}"
            what = {"bad_data": "bad query", "execution": "query failed", "timeout": "query timed out",
                    "canceled": "query canceled"}.get(kind, "error")
            raise QueryFailed(f"{what} ({kind}): {body.get('error') or resp.reason_phrase}")
        return body.get("data") or {}

    # -- instant -----------------------------------------------------------------------------

    async def _instant(self, sli: Sli, at: datetime) -> SliValue:
        out = SliValue(name=sli.name, query=sli.query, threshold=sli.threshold, comparison=sli.comparison, unit=sli.unit)
        try:
            data = await self._get("/api/v1/query", {"query": sli.query, "time": f"{at.timestamp():.3f}"})
            kind, result = data.get("resultType"), data.get("result")
            if kind == "scalar":
                samples = [_float(result[1])]
            elif kind == "vector":
                if not result:
                    raise QueryFailed("no data: the query returned an empty result")
                samples = [_float(r["value"][1]) for r in result]
            else:
                raise QueryFailed(f"the query gives a {kind}, not an instant value")
        except QueryFailed as e:
            return out.model_copy(update={"error": self._failed(e)})
        except (KeyError, IndexError, TypeError, AttributeError):
            return out.model_copy(update={"error": "not a Prometheus API answer"})
        numbers = [v for v in samples if not math.isnan(v)]
        if not numbers:
            return out.model_copy(update={"error": "NaN: no value (no requests in the window?)"})
        value = worst(numbers, sli.comparison)
        ok = holds(value, sli.comparison, sli.threshold)
        if math.isinf(value):  # JSON has no infinity: keep the verdict, say it in words
            return out.model_copy(update={"ok": ok, "error": f"value is {'+' if value > 0 else '-'}Inf"})
        return out.model_copy(update={"value": value, "ok": ok})

    def _pick(self, names: list[str]) -> tuple[list[Sli], list[str]]:
        if not names:
            return list(self.cfg.slis), []
        known = [self.cfg.sli(n) for n in names]
        return [s for s in known if s is not None], [n for n, s in zip(names, known, strict=True) if s is None]

    @activity.defn
    async def sli_values(self, q: SliQuery) -> SliReport:
        """Each requested SLI (all configured when none named) at `q.at` (now when None), read
        concurrently; never raises for Prometheus' answers."""
        at = parse_time(q.at) if q.at else datetime.now(UTC)
        since = parse_time(q.since) if q.since else at - timedelta(minutes=self.cfg.dashboard_window_minutes)
        dashboards = self.cfg.render_dashboards(q.incident_id, since, at)
        slis, unknown = self._pick(q.names)
        missing = [SliValue(name=n, error="not configured in prometheus.slis") for n in unknown]
        if not self.cfg.url:
            values = [SliValue(name=s.name, query=s.query, threshold=s.threshold, comparison=s.comparison,
                               unit=s.unit, error="skipped: " + UNSET) for s in slis]
            return SliReport(skipped=True, detail=UNSET, at=at.isoformat(), values=values + missing, dashboards=dashboards)
        values = list(await asyncio.gather(*(self._instant(s, at) for s in slis)))
        errors = sum(1 for v in values if v.error and v.ok is None)
        detail = f"{len(values)} SLIs read" + (f", {errors} without a value" if errors else "")
        return SliReport(at=at.isoformat(), detail=detail, values=values + missing, dashboards=dashboards)

    # -- range -------------------------------------------------------------------------------

    async def _range(self, sli: Sli, start: datetime, end: datetime, step: float) -> SliSeries:
        out = SliSeries(name=sli.name, query=sli.query, threshold=sli.threshold, comparison=sli.comparison, unit=sli.unit)
        try:
            data = await self._get("/api/v1/query_range", {
                "query": sli.query, "start": f"{start.timestamp():.3f}", "end": f"{end.timestamp():.3f}",
                "step": f"{step:g}"})
            if data.get("resultType") != "matrix":
                raise QueryFailed(f"the query gives a {data.get('resultType')}, not a range")
            by_ts: dict[float, list[float]] = {}
            for series in data.get("result") or []:
                for ts, raw in series["values"]:
                    by_ts.setdefault(float(ts), []).append(_float(raw))
        except QueryFailed as e:
            return out.model_copy(update={"error": self._failed(e)})
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            return out.model_copy(update={"error": "not a Prometheus API answer"})
        if not by_ts:
            return out.model_copy(update={"error": "no data: the query returned an empty result"})
        points: list[tuple[float, float | None]] = []
        for ts in sorted(by_ts):
            finite = [v for v in by_ts[ts] if math.isfinite(v)]
            points.append((ts, worst(finite, sli.comparison) if finite else None))
        return out.model_copy(update={"points": points})

    @activity.defn
    async def sli_range(self, q: SliRangeQuery) -> SliRangeReport:
        """Each requested SLI from `q.start` to `q.end`: the picture before and after a change.
        The step grows so a series has at most MAX_RANGE_POINTS points (history stays small)."""
        start, end = parse_time(q.start), parse_time(q.end)
        span = (end - start).total_seconds()
        step = max(q.step_seconds, math.ceil(span / MAX_RANGE_POINTS))
        dashboards = self.cfg.render_dashboards(q.incident_id, start, end)
        slis, unknown = self._pick(q.names)
        missing = [SliSeries(name=n, error="not configured in prometheus.slis") for n in unknown]
        common = {"start": start.isoformat(), "end": end.isoformat(), "step_seconds": step, "dashboards": dashboards}
        if not self.cfg.url:
            series = [SliSeries(name=s.name, query=s.query, threshold=s.threshold, comparison=s.comparison,
                                unit=s.unit, error="skipped: " + UNSET) for s in slis]
            return SliRangeReport(skipped=True, detail=UNSET, series=series + missing, **common)
        series = list(await asyncio.gather(*(self._range(s, start, end, step) for s in slis)))
        errors = sum(1 for s in series if s.error)
        detail = f"{len(series)} SLIs over {span:g}s every {step:g}s" + (f", {errors} without data" if errors else "")
        return SliRangeReport(detail=detail, series=series + missing, **common)
