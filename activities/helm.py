"""Helm activities: read a release's history, roll it back, upgrade it (idempotently), and
the preflight of a complete service recovery.

helm runs as an argument list (never a shell string); the command comes from the config, so
the drill points it at the sandbox stand-in (``[python, -m, sandbox.helm_cli]``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import DEFAULT_INTERVAL_SECONDS, Heartbeater
from activities.preconditions import moved
from activities.targets import Targets
from domain.cluster import HelmHistory, HelmQuery, HelmRevision, HelmRollbackRequest, HelmRollbackResult
from domain.service_recovery import (
    HelmPreflight,
    HelmPreflightRequest,
    HelmRevisionValues,
    HelmUpgradeRequest,
    HelmUpgradeResult,
    HelmValuesQuery,
)

_NOT_FOUND = ("release: not found", "has no deployed releases")
_NO_VERSION = re.compile(r"release has no -?\d+ version")
_WAIT_TIMEOUT = "timed out waiting for the condition"
MAX_ERROR_CHARS = 300


def _one_line(text: str) -> str:
    """The line that says what went wrong (helm's `Error: ...`), whitespace collapsed, trimmed."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error:")]
    line = errors[-1] if errors else (lines[-1] if lines else "")
    line = " ".join(line.split())
    if len(line) > MAX_ERROR_CHARS:
        line = line[: MAX_ERROR_CHARS - 3] + "..."
    return line


class HelmActivities:
    """`command` is how helm is run, e.g. ``["helm"]``; `env` is added to the worker's env."""

    def __init__(
        self,
        command: list[str],
        env: dict[str, str] | None = None,
        *,
        read_timeout_seconds: float = 60.0,
        heartbeat_seconds: float = DEFAULT_INTERVAL_SECONDS,
        retry_grace_seconds: float = 5.0,
        targets: Targets | None = None,
    ) -> None:
        self.targets = targets
        if not command:
            raise ValueError("helm command must not be empty")
        self.command = list(command)
        self.env = dict(env or {})
        self.read_timeout_seconds = read_timeout_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.retry_grace_seconds = retry_grace_seconds

    async def _settled_for_attempt(self, req: HelmRollbackRequest | HelmUpgradeRequest, marker: str,
                                   what: str) -> HelmHistory:
        """The history a decision may rest on. A retry whose history shows no trace of an earlier
        attempt waits a moment and reads again: that attempt's helm may have outlived its worker
        and be about to record its pending revision (two helms at once would both act)."""
        hist = await self._settled_history(req, marker, what)
        newest = hist.revisions[-1] if hist.revisions else None
        retry = activity.in_activity() and activity.info().attempt > 1
        if retry and self.retry_grace_seconds > 0 and not (newest is not None and newest.description == marker):
            await asyncio.sleep(self.retry_grace_seconds)
            hist = await self._settled_history(req, marker, what)
        return hist

    # ----------------------------------------------------------------------------------------

    async def _run(self, args: list[str], timeout: float) -> str:
        """Run helm with `args`; stdout on success, ApplicationError otherwise. Heartbeats on a
        timer while helm runs (`--wait` can take minutes without a word)."""
        what = f"helm {args[0]}"
        env = {**os.environ, **self.env} if self.env else None
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.command,
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
            )
        except (FileNotFoundError, PermissionError, NotADirectoryError) as e:
            raise ApplicationError(
                f"helm command not runnable: {self.command[0]} ({e.strerror or type(e).__name__})",
                type="HelmNotFound",
                non_retryable=True,
            ) from None

        communicate = asyncio.ensure_future(proc.communicate())
        try:
            async with Heartbeater(self.heartbeat_seconds, what):
                done, _ = await asyncio.wait({communicate}, timeout=timeout)
            if not done:
                raise TimeoutError
            stdout, stderr = communicate.result()
        except TimeoutError:
            await self._kill(proc, communicate)
            raise ApplicationError(f"{what} timed out after {timeout:g}s", type="HelmTimeout") from None
        except BaseException:  # cancelled: do not leave helm running
            await self._kill(proc, communicate)
            raise

        if proc.returncode != 0:
            raise self._error(what, proc.returncode, stderr.decode("utf-8", "replace"))
        return stdout.decode("utf-8", "replace")

    @staticmethod
    async def _kill(proc: asyncio.subprocess.Process, communicate: asyncio.Future[Any]) -> None:
        if proc.returncode is None:
            try:
                proc.kill()
            except ProcessLookupError:
                pass
        try:
            await asyncio.wait_for(asyncio.shield(communicate), timeout=5)
        except BaseException:  # noqa: BLE001 - best effort reaping
            communicate.cancel()

    @staticmethod
    def _error(what: str, returncode: int | None, stderr: str) -> ApplicationError:
        line = _one_line(stderr) or f"exit status {returncode}"
        message = f"{what} failed: {line}"
        low = line.lower()
        if any(s in low for s in _NOT_FOUND):
            return ApplicationError(message, type="NotFound", non_retryable=True)
        if _NO_VERSION.search(low):
            return ApplicationError(message, type="InvalidRevision", non_retryable=True)
        if _WAIT_TIMEOUT in low:
            return ApplicationError(message, type="RolloutTimeout")
        return ApplicationError(message, type="HelmError")

    async def _history(self, release: str, namespace: str) -> HelmHistory:
        out = await self._run(
            ["history", release, "-n", namespace, "-o", "json"], self.read_timeout_seconds
        )
        try:
            raw = json.loads(out)
            if not isinstance(raw, list):
                raise ValueError("not a list")
            revisions = [HelmRevision.model_validate(r) for r in raw]
        except ValueError as e:  # includes pydantic's ValidationError
            raise ApplicationError(
                f"helm history: unexpected output ({type(e).__name__})",
                type="HelmOutputInvalid",
                non_retryable=True,
            ) from None
        revisions.sort(key=lambda r: r.revision)
        return HelmHistory(release=release, revisions=revisions)

    # ----------------------------------------------------------------------------------------

    @activity.defn
    async def helm_history(self, query: HelmQuery) -> HelmHistory:
        return await self._history(query.release, query.namespace)

    async def _settled_history(
        self, req: HelmRollbackRequest | HelmUpgradeRequest, marker: str, what: str = "helm rollback"
    ) -> HelmHistory:
        """History once no operation is pending. A pending operation carrying our marker is
        an earlier attempt of ours (its worker died mid-way): wait for it rather than repeat it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + req.timeout_seconds + 60
        while True:
            hist = await self._history(req.release, req.namespace)
            newest = hist.revisions[-1] if hist.revisions else None
            if newest is None or not newest.status.startswith("pending-"):
                return hist
            if newest.description != marker:
                raise ApplicationError(
                    f"{what}: another operation is in progress on {req.release} "
                    f"(revision {newest.revision}: {newest.status})",
                    type="HelmBusy",
                )
            if loop.time() > deadline:
                raise ApplicationError(
                    f"{what}: revision {newest.revision} stayed {newest.status}", type="HelmBusy"
                )
            if activity.in_activity():
                activity.heartbeat(f"waiting for revision {newest.revision} ({newest.status})")
            await asyncio.sleep(1.0)

    @activity.defn
    async def helm_rollback(self, req: HelmRollbackRequest) -> HelmRollbackResult:
        if self.targets is not None:
            self.targets.release(req.namespace, req.release)
        marker = f"Rollback to {req.to_revision}"
        before = await self._settled_for_attempt(req, marker, "helm rollback")
        current = before.current
        newest = before.revisions[-1] if before.revisions else None
        # only a retry can find its own rollback: helm writes the same "Rollback to N" for anyone's,
        # and on a first attempt such a revision is another's (then the release moved)
        retry = activity.in_activity() and activity.info().attempt > 1
        if (
            retry
            and current is not None
            and newest is not None
            and current.revision != req.from_revision
            and newest.description == marker
            and newest.status != "failed"
        ):
            if activity.in_activity():
                activity.logger.info(
                    "helm rollback of %s to %s already done (revision %s)",
                    req.release,
                    req.to_revision,
                    newest.revision,
                )
            return HelmRollbackResult(
                release=req.release,
                from_revision=req.from_revision,
                to_revision=req.to_revision,
                new_revision=newest.revision,
                already_done=True,
            )
        if req.from_revision and current is not None and current.revision != req.from_revision:
            # the IC approved rolling back *from* from_revision: a hotfix since then is not ours to undo
            raise release_moved(req.release, current.revision, req.from_revision, "rollback")

        await self._run(
            [
                "rollback",
                req.release,
                str(req.to_revision),
                "-n",
                req.namespace,
                "--wait",
                "--timeout",
                f"{req.timeout_seconds}s",
            ],
            # helm enforces --timeout itself; ours only catches a hung process.
            req.timeout_seconds + 60,
        )
        after = await self._history(req.release, req.namespace)
        ours = [r for r in after.revisions if r.description == marker and r.revision > (newest.revision if newest else 0)]
        new_revision = ours[-1].revision if ours else (after.current.revision if after.current else 0)
        return HelmRollbackResult(
            release=req.release,
            from_revision=req.from_revision,
            to_revision=req.to_revision,
            new_revision=new_revision,
        )

    # ---------------------------------------------------------------- complete service recovery

    async def _status_doc(self, release: str, namespace: str, revision: int | None) -> dict[str, Any]:
        args = ["status", release, "-n", namespace, "-o", "json"]
        if revision is not None:
            args += ["--revision", str(revision)]
        out = await self._run(args, self.read_timeout_seconds)
        try:
            doc = json.loads(out)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
        except ValueError as e:
            raise ApplicationError(
                f"helm status: unexpected output ({type(e).__name__})", type="HelmOutputInvalid", non_retryable=True
            ) from None
        return doc

    @staticmethod
    def _image_tag(doc: dict[str, Any]) -> str | None:
        """`image.tag` of the values the revision was installed with (helm's `config`)."""
        image = (doc.get("config") or {}).get("image") or {}
        tag = image.get("tag") if isinstance(image, dict) else None
        return str(tag) if tag not in (None, "") else None

    @activity.defn
    async def helm_revision_values(self, q: HelmValuesQuery) -> HelmRevisionValues:
        doc = await self._status_doc(q.release, q.namespace, q.revision)
        return HelmRevisionValues(
            revision=int(doc.get("version") or q.revision),
            status=str((doc.get("info") or {}).get("status") or "unknown"),
            image_tag=self._image_tag(doc),
        )

    @activity.defn
    async def helm_preflight(self, req: HelmPreflightRequest) -> HelmPreflight:
        """History, current revision and tag, chart present. Everything that cannot heal by
        retrying (no release, no chart, no cluster) fails non-retryable with helm's words."""
        chart_detail = _check_chart(req.chart)
        try:
            hist = await self._history(req.release, req.namespace)
            current = hist.current
            if current is None:
                raise ApplicationError(f"release {req.release} has no revisions", type="NotFound", non_retryable=True)
            doc = await self._status_doc(req.release, req.namespace, current.revision)
        except ApplicationError as e:
            if "cluster unreachable" in e.message.lower():
                raise ApplicationError(e.message, type="ClusterUnreachable", non_retryable=True) from None
            if e.type == "NotFound":
                raise ApplicationError(
                    f"release {req.release} not found in namespace {req.namespace} ({e.message})",
                    type="NotFound",
                    non_retryable=True,
                ) from None
            raise
        return HelmPreflight(
            release=req.release,
            revisions=hist.revisions,
            current_revision=current.revision,
            current_status=current.status,
            current_tag=self._image_tag(doc),
            chart=req.chart,
            chart_detail=chart_detail,
        )

    @activity.defn
    async def helm_upgrade(self, req: HelmUpgradeRequest) -> HelmUpgradeResult:
        """`helm upgrade RELEASE CHART -n NS --set image.tag=TAG --wait --timeout ...`; a retry
        that finds its own upgrade (by the marker description) done does not repeat it."""
        if self.targets is not None:
            self.targets.release(req.namespace, req.release, req.chart)
        before = await self._settled_for_attempt(req, req.marker, "helm upgrade")
        newest = before.revisions[-1] if before.revisions else None
        if newest is not None and newest.revision > req.from_revision and newest.description == req.marker:
            if newest.status == "deployed":
                return HelmUpgradeResult(
                    release=req.release,
                    from_revision=req.from_revision,
                    new_revision=newest.revision,
                    image_tag=req.image_tag,
                    already_done=True,
                )
        current = before.current
        if req.from_revision and current is not None and current.revision != req.from_revision:
            raise release_moved(req.release, current.revision, req.from_revision, "upgrade")
        out = await self._run(
            [
                "upgrade",
                req.release,
                req.chart,
                "-n",
                req.namespace,
                "--set",
                f"image.tag={req.image_tag}",
                "--description",
                req.marker,
                "--wait",
                "--timeout",
                f"{req.timeout_seconds}s",
                "-o",
                "json",
            ],
            req.timeout_seconds + 60,
        )
        try:
            new_revision = int(json.loads(out).get("version"))
        except (ValueError, TypeError, AttributeError):
            after = await self._history(req.release, req.namespace)
            new_revision = after.current.revision if after.current else 0
        return HelmUpgradeResult(
            release=req.release, from_revision=req.from_revision, new_revision=new_revision, image_tag=req.image_tag
        )


def release_moved(release: str, current: int, approved: int, what: str) -> ApplicationError:
    """The release is not at the revision the IC approved acting on."""
    return moved("ReleaseMoved", f"release {release} moved: revision {current} is current, the {what} was approved "
                 f"from revision {approved}", {"current_revision": current, "approved_revision": approved})


def _check_chart(chart: str) -> str:
    """A local chart (a path) must exist with a Chart.yaml, or be a packaged .tgz; a
    repository or OCI reference (`repo/chart`, `oci://...`) is helm's to resolve."""
    local = chart.startswith(("/", "./", "../", "~")) or chart.endswith(".tgz") or os.path.isdir(chart)
    if not local:
        return f"repository reference {chart}"
    path = os.path.expanduser(chart)
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "Chart.yaml")):
        return f"local chart {chart} (Chart.yaml present)"
    if os.path.isfile(path) and path.endswith(".tgz"):
        return f"packaged chart {chart}"
    raise ApplicationError(
        f"chart {chart} not found on the worker (no Chart.yaml at {os.path.abspath(path)})",
        type="ChartNotFound",
        non_retryable=True,
    )
