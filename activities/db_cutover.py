"""Database cutover activities: verify a restored database, and point the gateway's database
Secret at it with an exact undo.

The old DATABASE_URL never leaves the cluster: `db_secret_backup` copies it into a backup
Secret (labelled with the incident) and returns only a reference; `db_secret_point` and
`db_secret_restore` read it back from there. New URLs are built here from the old one (same
credentials, database and options; new host and port), so no URL or password crosses into
workflow history or logs.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.database_check import check_database
from activities.deferred import deferred
from activities.heartbeat import DEFAULT_INTERVAL_SECONDS, Heartbeater
from activities.kubernetes_calls import api_error, k8s_call
from activities.preconditions import moved
from activities.targets import Targets
from domain.database_restore import (
    RestoredDbVerifyRequest,
    RestoredDbVerifyResult,
    SecretBackupRef,
    SecretBackupRequest,
    SecretChange,
    SecretPointRequest,
    SecretRestoreRequest,
)

# Deferred (activities.deferred): workflows import this module for its typed activity
# references; these clients (~80 MiB) load only where an activity uses them.
if TYPE_CHECKING:
    import kubernetes.client
    import psycopg
    import psycopg.conninfo
    import urllib3.exceptions
else:
    psycopg = deferred("psycopg")  # binds psycopg.conninfo when it loads
    urllib3 = deferred("urllib3")
    kubernetes = deferred("kubernetes")  # its __init__ binds client, stream, utils

T = TypeVar("T")

INCIDENT_ANNOTATION = "codeblue/incident"
SOURCE_ANNOTATION = "codeblue/source-secret"
SOURCE_VERSION_ANNOTATION = "codeblue/source-resource-version"
_URL_SCHEMES = {"postgres", "postgresql"}


def backup_name(secret_name: str, incident_id: str) -> str:
    """A DNS-1123 name for the backup of `secret_name` taken for `incident_id`."""
    suffix = re.sub(r"[^a-z0-9.-]", "-", incident_id.lower()).strip("-.") or "incident"
    return f"{secret_name}-codeblue-backup-{suffix}"[:253].rstrip("-.")


def with_endpoint(url: str, host: str, port: int) -> str:
    """The same PostgreSQL URL (credentials, database, options) at another host and port."""
    parts = urlsplit(url)
    if parts.scheme not in _URL_SCHEMES or not parts.netloc:
        raise ValueError("not a postgresql:// URL")
    userinfo, at, _ = parts.netloc.rpartition("@")
    shown_host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return urlunsplit(parts._replace(netloc=f"{userinfo}{at}{shown_host}:{int(port)}"))


def describe_url(url: str) -> str:
    """host:port/db of a URL, never its credentials."""
    try:
        p = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return "(unparseable URL)"
    return f"{p.get('host') or 'localhost'}:{p.get('port') or 5432}/{p.get('dbname') or p.get('user') or 'postgres'}"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


class DbCutoverActivities:
    """Secret and verification activities on one cluster, through the `ApiClient` given."""

    def __init__(self, api_client: kubernetes.client.ApiClient, *, request_timeout_seconds: float = 10.0,
                 targets: Targets | None = None, heartbeat_seconds: float = DEFAULT_INTERVAL_SECONDS) -> None:
        self._core = kubernetes.client.CoreV1Api(api_client)
        self.request_timeout_seconds = request_timeout_seconds
        self.targets = targets
        self.heartbeat_seconds = heartbeat_seconds

    async def _call(self, action: str, target: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return cast(T, await k8s_call(action, target, fn, *args, timeout=self.request_timeout_seconds, **kwargs))

    async def _read(self, ns: str, name: str) -> kubernetes.client.V1Secret | None:
        try:
            return await asyncio.to_thread(self._core.read_namespaced_secret, name, ns,
                                           _request_timeout=self.request_timeout_seconds)
        except kubernetes.client.ApiException as e:
            if e.status == 404:
                return None
            raise api_error(e, "read", f"secret {ns}/{name}") from None
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise ApplicationError(f"cannot read secret {ns}/{name}: Kubernetes API unreachable ({type(e).__name__})",
                                   type="KubernetesUnavailable") from None

    async def _value(self, ns: str, name: str, key: str) -> tuple[kubernetes.client.V1Secret, str, str]:
        """The secret, the key's base64 value and its decoded text."""
        secret = await self._read(ns, name)
        if secret is None:
            raise ApplicationError(f"secret {ns}/{name} not found", type="NotFound", non_retryable=True)
        encoded = (secret.data or {}).get(key)
        if encoded is None:
            raise ApplicationError(f"secret {ns}/{name} has no key {key}", type="NotFound", non_retryable=True)
        try:
            text = base64.b64decode(encoded, validate=True).decode("utf-8").strip()
        except (binascii.Error, ValueError):
            raise ApplicationError(f"key {key} of secret {ns}/{name} is not base64 UTF-8 text",
                                   type="InvalidRequest", non_retryable=True) from None
        return secret, encoded, text

    async def _backup(self, ref: SecretBackupRef) -> tuple[str, str]:
        _, encoded, text = await self._value(ref.namespace, ref.backup_name, ref.secret_key)
        return encoded, text

    # ------------------------------------------------------------------ activities

    @activity.defn
    async def db_verify_restored(self, req: RestoredDbVerifyRequest) -> RestoredDbVerifyResult:
        """Connect to host:port with the credentials in the database Secret; SELECT 1, then the
        sanity query (its first value, e.g. a row count, is returned). A fresh restore can be
        slow to connect to and the sanity query may scan: heartbeat on a timer meanwhile."""
        if self.targets:
            self.targets.restored_db(req)
        async with Heartbeater(self.heartbeat_seconds):
            return await self._verify_restored(req)

    async def _verify_restored(self, req: RestoredDbVerifyRequest) -> RestoredDbVerifyResult:
        ns = req.namespace
        _, _, url = await self._value(ns, req.secret_name, req.secret_key)
        try:
            target = with_endpoint(url, req.host, req.port)
        except ValueError:
            raise ApplicationError(f"key {req.secret_key} of secret {ns}/{req.secret_name} is not a postgresql:// URL",
                                   type="InvalidRequest", non_retryable=True) from None
        where = describe_url(target)
        first = await check_database(target, req.connect_timeout_seconds,
                                     source=f"the restored endpoint with key {req.secret_key} of secret {ns}/{req.secret_name}")
        if not first.ok:
            return RestoredDbVerifyResult(ok=False, where=where, detail=first.detail)
        if not req.sanity_query:
            return RestoredDbVerifyResult(ok=True, where=where, select_one=True, detail=f"{first.detail}; no sanity query configured")
        timeout = max(2, math.ceil(req.connect_timeout_seconds))
        try:
            async with asyncio.timeout(timeout + 30.0):
                conn = await psycopg.AsyncConnection.connect(target, connect_timeout=timeout, autocommit=True)
                async with conn:
                    cur = await conn.execute(req.sanity_query)  # operator-configured
                    row = await cur.fetchone()
        except TimeoutError:
            return RestoredDbVerifyResult(ok=False, where=where, select_one=True, detail=f"{first.detail}; sanity query timed out")
        except (psycopg.Error, OSError) as e:
            # the class name only: a server message could quote data
            return RestoredDbVerifyResult(ok=False, where=where, select_one=True,
                                          detail=f"{first.detail}; sanity query failed ({type(e).__name__})")
        value = None if row is None or not row else str(row[0])[:100]
        return RestoredDbVerifyResult(ok=True, where=where, select_one=True, sanity=value,
                                      detail=f"{first.detail}; sanity query returned {value}")

    @activity.defn
    async def db_secret_backup(self, req: SecretBackupRequest) -> SecretBackupRef:
        """Copy the key's current value into a backup Secret. A backup this incident already
        took is kept as is (it holds the value from before any change); one that is not this
        incident's fails non-retryably."""
        if self.targets is not None:
            self.targets.secret(req.namespace, req.secret_name, req.secret_key)
        ns = req.namespace
        name = backup_name(req.secret_name, req.incident_id)
        ref = SecretBackupRef(namespace=ns, secret_name=req.secret_name, secret_key=req.secret_key, backup_name=name)
        existing = await self._read(ns, name)
        if existing is not None:
            ann = existing.metadata.annotations or {}
            if ann.get(INCIDENT_ANNOTATION) != req.incident_id or req.secret_key not in (existing.data or {}):
                raise ApplicationError(f"secret {ns}/{name} exists and is not this incident's backup",
                                       type="InvalidRequest", non_retryable=True)
            return ref.model_copy(update={"source_resource_version": ann.get(SOURCE_VERSION_ANNOTATION), "created": False})
        secret, encoded, _ = await self._value(ns, req.secret_name, req.secret_key)
        rv = secret.metadata.resource_version
        body = kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(
                name=name,
                namespace=ns,
                labels={"app.kubernetes.io/managed-by": "codeblue", "codeblue/role": "secret-backup"},
                annotations={INCIDENT_ANNOTATION: req.incident_id, SOURCE_ANNOTATION: req.secret_name,
                             SOURCE_VERSION_ANNOTATION: str(rv or "")},
            ),
            type="Opaque",
            data={req.secret_key: encoded},
        )
        try:
            await asyncio.to_thread(self._core.create_namespaced_secret, ns, body,
                                    _request_timeout=self.request_timeout_seconds)
        except kubernetes.client.ApiException as e:
            if e.status != 409:  # 409: an earlier attempt created it after all; read it back
                raise api_error(e, "create", f"secret {ns}/{name}") from None
            return await self.db_secret_backup(req)
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise ApplicationError(f"cannot create secret {ns}/{name}: Kubernetes API unreachable ({type(e).__name__})",
                                   type="KubernetesUnavailable") from None
        return ref.model_copy(update={"source_resource_version": rv, "created": True})

    async def _set(self, ref: SecretBackupRef, encoded: str, text: str, expected: str | None = None) -> SecretChange:
        """Write the key unless it already holds `encoded` (a retry). With `expected`, only
        while the secret is still at that resourceVersion: a change by anyone else since is
        theirs to keep (SecretMoved, nothing written)."""
        ns, name, key = ref.namespace, ref.secret_name, ref.secret_key
        secret, current, _ = await self._value(ns, name, key)
        rv = secret.metadata.resource_version
        if current == encoded:
            return SecretChange(secret_name=name, changed=False, resource_version=rv, where=describe_url(text))
        if expected is not None and rv != expected:
            raise moved("SecretMoved", f"secret {ns}/{name} moved: resourceVersion {rv}, the change was approved at {expected}",
                        {"current_resource_version": rv, "approved_resource_version": expected})
        patched = await self._call("patch", f"secret {ns}/{name}", self._core.patch_namespaced_secret, name, ns,
                                   {"data": {key: encoded}})
        return SecretChange(secret_name=name, changed=True, resource_version=patched.metadata.resource_version,
                            where=describe_url(text))

    @activity.defn
    async def db_secret_point(self, req: SecretPointRequest) -> SecretChange:
        """Set the key to the backed-up URL at the new host:port (a retry sets the same value)."""
        if self.targets is not None:
            self.targets.secret(req.backup.namespace, req.backup.secret_name, req.backup.secret_key)
            self.targets.restored_endpoint(req.host, req.port)
        _, old = await self._backup(req.backup)
        try:
            new = with_endpoint(old, req.host, req.port)
        except ValueError:
            raise ApplicationError(f"key {req.backup.secret_key} of secret {req.backup.namespace}/{req.backup.secret_name} "
                                   "is not a postgresql:// URL", type="InvalidRequest", non_retryable=True) from None
        return await self._set(req.backup, _b64(new), new, req.expected_resource_version)

    @activity.defn
    async def db_secret_restore(self, req: SecretRestoreRequest) -> SecretChange:
        """Put the key back to exactly the backed-up bytes (idempotent)."""
        if self.targets is not None:
            self.targets.secret(req.backup.namespace, req.backup.secret_name, req.backup.secret_key)
        encoded, old = await self._backup(req.backup)
        return await self._set(req.backup, encoded, old, req.expected_resource_version)
