"""A sandbox stand-in for the `helm` binary: the subset of its CLI that CodeBlue uses.

Run as ``python -m sandbox.helm_cli ARGS...`` with the same arguments, output and exit codes
as helm 3. It needs no chart and no helm storage: a release's history lives in the cluster,
in a ConfigMap ``sandbox-helm-<release>`` in the release's namespace, data key ``history``
(a JSON list of revisions ``{revision, updated, status, chart, app_version, description,
image_tag}``). Upgrading or rolling back sets the image tag of every Deployment labelled
``app.kubernetes.io/instance=<release>`` in the namespace, which is what the real chart
would change.

Supported::

    history RELEASE [-n NS] [-o json|yaml|table] [--max N]
    status RELEASE [-n NS] [-o json|yaml|table] [--revision N]
    rollback RELEASE [REVISION] [-n NS] [--wait] [--timeout DUR]
    upgrade RELEASE CHART [-n NS] [--set k=v[,k=v]]... [-i|--install] [--version V]
            [--description TEXT] [--wait] [--timeout DUR] [-o json|yaml|table]

Global flags (anywhere): ``-n/--namespace``, ``--kubeconfig``, ``--kube-context``.
The cluster comes from ``--kubeconfig`` or ``$KUBECONFIG`` (else ``~/.kube/config``).

``seed_release()`` writes a history so that a scenario can start from one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any, NoReturn

CONFIGMAP_PREFIX = "sandbox-helm-"
HISTORY_KEY = "history"
INSTANCE_LABEL = "app.kubernetes.io/instance"
STATUSES = {
    "deployed",
    "superseded",
    "failed",
    "pending-install",
    "pending-upgrade",
    "pending-rollback",
    "uninstalled",
    "uninstalling",
    "unknown",
}
WAIT_POLL_SECONDS = 0.25
DEFAULT_TIMEOUT = "5m0s"
DEFAULT_MAX_HISTORY = 256

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_CHART_VERSION = re.compile(r"^(?P<name>.+?)-(?P<version>v?\d+(?:\.\d+)*(?:[-+].*)?)$")


class HelmError(Exception):
    """Printed as ``Error: <message>`` on stderr; the process exits 1 (as helm does)."""


# --------------------------------------------------------------------------------------------
# Small pure helpers


def configmap_name(release: str) -> str:
    return f"{CONFIGMAP_PREFIX}{release}"


def format_time(dt: datetime) -> str:
    """RFC 3339 in UTC, e.g. ``2024-05-01T10:00:00Z``."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_rfc3339() -> str:
    return format_time(datetime.now(UTC))


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration (``300s``, ``5m0s``, ``1h30m``), in seconds."""
    s = text.strip()
    if s in ("0", "+0", "-0"):
        return 0.0
    sign = 1.0
    if s[:1] in "+-" and s:
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    pos, total = 0, 0.0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if not s or pos != len(s):
        if s and re.fullmatch(r"[\d.]+", s):
            raise ValueError(f'time: missing unit in duration "{text}"')
        raise ValueError(f'time: invalid duration "{text}"')
    return sign * total


def replace_image_tag(image: str, tag: str) -> str:
    """Keep the repository (and registry port), replace only the tag; a digest is dropped."""
    repo = image.split("@", 1)[0]
    last_slash = repo.rfind("/")
    colon = repo.rfind(":")
    if colon > last_slash:
        repo = repo[:colon]
    return f"{repo}:{tag}"


def split_chart(chart: str) -> tuple[str, str]:
    m = _CHART_VERSION.match(chart)
    return (m.group("name"), m.group("version")) if m else (chart, "")


def normalise_revisions(chart: str, revisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fill defaults and check a seeded history; sorted by revision."""
    if not revisions:
        raise ValueError("a release needs at least one revision")
    ordered = sorted(revisions, key=lambda r: int(r["revision"]))
    numbers = [int(r["revision"]) for r in ordered]
    if len(set(numbers)) != len(numbers) or numbers[0] < 1:
        raise ValueError(f"revisions must be unique positive integers, got {numbers}")
    out: list[dict[str, Any]] = []
    for i, rev in enumerate(ordered):
        unknown = set(rev) - {"revision", "updated", "status", "chart", "app_version", "description", "image_tag"}
        if unknown:
            raise ValueError(f"revision {rev['revision']}: unknown keys {sorted(unknown)}")
        last = i == len(ordered) - 1
        updated = rev.get("updated")
        if isinstance(updated, datetime):
            updated = format_time(updated)
        status = rev.get("status") or ("deployed" if last else "superseded")
        if status not in STATUSES:
            raise ValueError(f"revision {rev['revision']}: unknown status {status!r}")
        out.append(
            {
                "revision": int(rev["revision"]),
                "updated": updated or now_rfc3339(),
                "status": status,
                "chart": rev.get("chart") or chart,
                "app_version": rev.get("app_version") or "",
                "description": rev.get("description") or ("Install complete" if i == 0 else "Upgrade complete"),
                "image_tag": rev.get("image_tag"),
            }
        )
    return out


def public_revision(rev: dict[str, Any]) -> dict[str, Any]:
    """The shape `helm history -o json` prints."""
    return {
        "revision": rev["revision"],
        "updated": rev["updated"],
        "status": rev["status"],
        "chart": rev["chart"],
        "app_version": rev.get("app_version") or "",
        "description": rev.get("description") or "",
    }


def deployment_ready(dep: dict[str, Any]) -> bool:
    spec = dep.get("spec") or {}
    status = dep.get("status") or {}
    meta = dep.get("metadata") or {}
    replicas = spec.get("replicas", 1)
    if replicas is None:
        replicas = 1
    ready = status.get("readyReplicas") or 0
    observed = status.get("observedGeneration") or 0
    generation = meta.get("generation") or 0
    return ready == replicas and observed >= generation


# --------------------------------------------------------------------------------------------
# Cluster access: a few REST calls, synchronous: http.client for plain HTTP, urllib3 for HTTPS.
#
# Not the official kubernetes client, on purpose: importing it costs about half a second of CPU
# (it loads every API model), paid again on every helm call, and a drill makes dozens of
# them. The stand-in needs five calls on two resources; the kubeconfig fields it reads are the
# ones a sandbox or a test cluster writes.


class KubeApiError(Exception):
    """An answer other than 2xx from the API server (as kubernetes' ApiException: status, reason)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}".strip())
        self.status = status
        self.reason = reason


class KubeRest:
    def __init__(self, server: str, *, token: str | None = None, ca_file: str | None = None,
                 cert_file: str | None = None, key_file: str | None = None, verify: bool = True) -> None:
        self.server = server.rstrip("/")
        self._headers = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._http: Any = None
        self._plain: Any = None
        if self.server.startswith("https:"):
            import urllib3

            tls: dict[str, Any] = {"cert_reqs": "CERT_REQUIRED" if verify else "CERT_NONE", "ca_certs": ca_file,
                                   "cert_file": cert_file, "key_file": key_file}
            if not verify:
                urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            self._http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5, read=30), **tls)
        else:
            # Plain HTTP (a sandbox or test cluster): the standard library's client, a third of
            # urllib3's import time, which every helm call would pay.
            from http.client import HTTPConnection
            from urllib.parse import urlsplit

            u = urlsplit(self.server)
            self._prefix = u.path
            self._plain = HTTPConnection(u.hostname or "127.0.0.1", u.port or 80, timeout=30)

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, context: str | None = None) -> KubeRest:
        """`path`: else $KUBECONFIG (its first file), else ~/.kube/config, as kubectl reads it."""
        import yaml

        path = path or (os.environ.get("KUBECONFIG") or "").split(os.pathsep)[0] or os.path.expanduser("~/.kube/config")
        try:
            with open(path) as f:
                doc = yaml.safe_load(f) or {}
        except OSError as e:
            raise HelmError(f"Kubernetes cluster unreachable: {path}: {e.strerror}") from None
        except yaml.YAMLError:
            raise HelmError(f"Kubernetes cluster unreachable: {path} is not valid YAML") from None

        def named(kind: str, name: str | None) -> dict[str, Any]:
            for item in doc.get(kind) or []:
                if item.get("name") == name:
                    return item.get(kind[:-1]) or {}
            raise HelmError(f'Kubernetes cluster unreachable: {kind[:-1]} "{name}" not found in {path}')

        ctx = named("contexts", context or doc.get("current-context"))
        cluster, user = named("clusters", ctx.get("cluster")), named("users", ctx.get("user"))
        unsupported = [k for k in ("certificate-authority-data", "client-certificate-data", "client-key-data", "exec",
                                   "auth-provider") if k in cluster or k in user]
        if unsupported:
            raise HelmError(f"Kubernetes cluster unreachable: the sandbox helm reads no {', '.join(unsupported)} (use file paths)")
        if not cluster.get("server"):
            raise HelmError(f"Kubernetes cluster unreachable: no server for context in {path}")
        return cls(cluster["server"], token=user.get("token"), ca_file=cluster.get("certificate-authority"),
                   cert_file=user.get("client-certificate"), key_file=user.get("client-key"),
                   verify=not cluster.get("insecure-skip-tls-verify", False))

    def call(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        headers = dict(self._headers)
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode()
        if self._plain is not None:
            status, reason, raw = self._plain_call(method, self._prefix + path, data, headers)
        else:
            r = self._http.request(method, self.server + path, body=data, headers=headers)
            status, reason, raw = r.status, r.reason, r.data
        if not 200 <= status < 300:
            raise KubeApiError(status, reason or "")
        return json.loads(raw) if raw else None

    def _plain_call(self, method: str, path: str, data: bytes | None, headers: dict[str, str]) -> tuple[int, str, bytes]:
        from http.client import RemoteDisconnected

        def once() -> tuple[int, str, bytes]:
            self._plain.request(method, path, body=data, headers=headers)
            resp = self._plain.getresponse()
            return resp.status, resp.reason, resp.read()

        reused = self._plain.sock is not None
        try:
            return once()
        except (RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            # the server closed a kept-alive connection before reading this request: once more on
            # a new one (as urllib3 does for a dropped pooled connection)
            self._plain.close()
            if not reused:
                raise
        return once()

    def close(self) -> None:
        if self._plain is not None:
            self._plain.close()
        else:
            self._http.clear()


def _configmap_path(namespace: str, name: str | None = None) -> str:
    return f"/api/v1/namespaces/{namespace}/configmaps" + (f"/{name}" if name else "")


def _deployment_path(namespace: str, name: str | None = None) -> str:
    return f"/apis/apps/v1/namespaces/{namespace}/deployments" + (f"/{name}" if name else "")


def _read_history(api: KubeRest, namespace: str, release: str) -> list[dict[str, Any]] | None:
    try:
        cm = api.call("GET", _configmap_path(namespace, configmap_name(release)))
    except KubeApiError as e:
        if e.status == 404:
            return None
        raise
    raw = (cm.get("data") or {}).get(HISTORY_KEY)
    if not raw:
        return None
    try:
        history = json.loads(raw)
    except ValueError:
        raise HelmError(f"release {release}: stored history is not valid JSON") from None
    if not isinstance(history, list) or not history:
        return None
    return sorted(history, key=lambda r: int(r["revision"]))


def _write_history(api: KubeRest, namespace: str, release: str, history: list[dict[str, Any]]) -> None:
    name = configmap_name(release)
    data = {HISTORY_KEY: json.dumps(sorted(history, key=lambda r: r["revision"]), indent=1)}
    try:
        api.call("GET", _configmap_path(namespace, name))
    except KubeApiError as e:
        if e.status != 404:
            raise
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {"owner": "sandbox-helm", "name": release},
            },
            "data": data,
        }
        try:
            api.call("POST", _configmap_path(namespace), body)
            return
        except KubeApiError as e2:
            if e2.status != 409:
                raise
    api.call("PATCH", _configmap_path(namespace, name), {"data": data}, "application/merge-patch+json")


def seed_release(
    api: KubeRest, namespace: str, release: str, chart: str, revisions: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Write a release history into the cluster so a scenario starts from it.

    `api` is a `KubeRest` (``KubeRest.from_kubeconfig(path)``); this call blocks (run it in a thread
    when the API server is served by the same event loop). Each revision is a dict with
    ``revision`` (required), ``image_tag``, and optionally ``updated`` (RFC 3339 text or a
    datetime; default now), ``status`` (default: the newest ``deployed``, the others
    ``superseded``), ``chart`` (default `chart`, e.g. ``healthcare-platform-1.4.2``),
    ``app_version`` and ``description``. Deployments are not touched. Returns what was written.
    """
    history = normalise_revisions(chart, revisions)
    _write_history(api, namespace, release, history)
    return history


def _list_release_deployments(api: KubeRest, namespace: str, release: str) -> list[dict[str, Any]]:
    from urllib.parse import quote

    listing = api.call("GET", _deployment_path(namespace) + "?labelSelector=" + quote(f"{INSTANCE_LABEL}={release}"))
    items = (listing or {}).get("items") or []
    # Filter here too: not every API emulator honours label selectors.
    return [
        d
        for d in items
        if ((d.get("metadata") or {}).get("labels") or {}).get(INSTANCE_LABEL) == release
        and (d.get("metadata") or {}).get("namespace", namespace) == namespace
    ]


def _set_image_tag(api: KubeRest, namespace: str, release: str, tag: str) -> list[str]:
    """Patch every container image of the release's Deployments to `tag`; names changed."""
    changed: list[str] = []
    deployments = _list_release_deployments(api, namespace, release)
    if not deployments:
        print(
            f"WARNING: no Deployment labelled {INSTANCE_LABEL}={release} in namespace {namespace}",
            file=sys.stderr,
        )
    for dep in deployments:
        name = dep["metadata"]["name"]
        containers = ((dep.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []
        new_containers = []
        differs = False
        for c in containers:
            c2 = dict(c)
            if c.get("image"):
                c2["image"] = replace_image_tag(c["image"], tag)
                differs = differs or c2["image"] != c["image"]
            new_containers.append(c2)
        if not differs:
            continue
        generation = (dep.get("metadata") or {}).get("generation") or 0
        # Full container entries: a strategic merge (real API server) merges them by name,
        # a plain JSON merge (simple emulators) replaces the list; both end up the same.
        patch = {"spec": {"template": {"spec": {"containers": new_containers}}}}
        api.call("PATCH", _deployment_path(namespace, name), patch, "application/strategic-merge-patch+json")
        # A real API server bumps metadata.generation on every spec change. An emulator that
        # does not would make --wait meaningless (observedGeneration already "caught up"),
        # so do what the API server would have done.
        after = api.call("GET", _deployment_path(namespace, name))
        after_gen = ((after or {}).get("metadata") or {}).get("generation") or 0
        if after_gen <= generation:
            api.call("PATCH", _deployment_path(namespace, name), {"metadata": {"generation": generation + 1}},
                     "application/merge-patch+json")
        changed.append(name)
    return changed


def _wait_ready(api: KubeRest, namespace: str, release: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        deployments = _list_release_deployments(api, namespace, release)
        if all(deployment_ready(d) for d in deployments):
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise HelmError("timed out waiting for the condition")
        time.sleep(min(WAIT_POLL_SECONDS, remaining))


# --------------------------------------------------------------------------------------------
# Commands


def _require_history(api: KubeRest, namespace: str, release: str) -> list[dict[str, Any]]:
    history = _read_history(api, namespace, release)
    if history is None:
        raise HelmError("release: not found")
    return history


def _status_doc(release: str, namespace: str, history: list[dict[str, Any]], revision: int | None) -> dict[str, Any]:
    if revision is not None:
        matches = [r for r in history if r["revision"] == revision]
        if not matches:
            raise HelmError("release: not found")
        rev = matches[0]
    else:
        rev = history[-1]
    name, version = split_chart(rev["chart"])
    return {
        "name": release,
        "info": {
            "first_deployed": history[0]["updated"],
            "last_deployed": rev["updated"],
            "deleted": "",
            "description": rev.get("description") or "",
            "status": rev["status"],
        },
        "chart": {"metadata": {"name": name, "version": version, "appVersion": rev.get("app_version") or ""}},
        "config": {"image": {"tag": rev.get("image_tag")}} if rev.get("image_tag") else {},
        "version": rev["revision"],
        "namespace": namespace,
    }


def _print_doc(doc: Any, output: str) -> None:
    if output == "json":
        print(json.dumps(doc))
    elif output == "yaml":
        import yaml

        print(yaml.safe_dump(doc, sort_keys=False), end="")
    else:
        raise AssertionError(output)


def _print_status_table(doc: dict[str, Any]) -> None:
    print(f"NAME: {doc['name']}")
    print(f"LAST DEPLOYED: {doc['info']['last_deployed']}")
    print(f"NAMESPACE: {doc['namespace']}")
    print(f"STATUS: {doc['info']['status']}")
    print(f"REVISION: {doc['version']}")


def cmd_history(api: KubeRest, args: argparse.Namespace) -> None:
    history = _require_history(api, args.namespace, args.release)
    shown = [public_revision(r) for r in history[-args.max :]] if args.max > 0 else [public_revision(r) for r in history]
    if args.output == "table":
        cols = ["REVISION", "UPDATED", "STATUS", "CHART", "APP VERSION", "DESCRIPTION"]
        rows = [[str(r["revision"]), r["updated"], r["status"], r["chart"], r["app_version"], r["description"]] for r in shown]
        widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
        for row in [cols, *rows]:
            print("\t".join(v.ljust(widths[i]) for i, v in enumerate(row)).rstrip())
    else:
        _print_doc(shown, args.output)


def cmd_status(api: KubeRest, args: argparse.Namespace) -> None:
    history = _require_history(api, args.namespace, args.release)
    doc = _status_doc(args.release, args.namespace, history, args.revision)
    if args.output == "table":
        _print_status_table(doc)
    else:
        _print_doc(doc, args.output)


def _apply_revision(
    api: KubeRest,
    args: argparse.Namespace,
    history: list[dict[str, Any]],
    new: dict[str, Any],
    *,
    pending_status: str,
    failed_description: str,
    supersede_on_failure: bool,
) -> dict[str, Any]:
    """Record `new` as pending, change the deployments, wait, then settle the statuses."""
    final_description = new["description"]
    new["status"] = pending_status
    _write_history(api, args.namespace, args.release, history + [new])
    try:
        if new.get("image_tag"):
            _set_image_tag(api, args.namespace, args.release, new["image_tag"])
        if args.wait:
            _wait_ready(api, args.namespace, args.release, args.timeout_seconds)
    except HelmError as e:
        new["status"] = "failed"
        new["description"] = failed_description.format(reason=str(e))
        new["updated"] = now_rfc3339()
        if supersede_on_failure:
            for r in history:
                if r["status"] == "deployed":
                    r["status"] = "superseded"
        _write_history(api, args.namespace, args.release, history + [new])
        raise
    for r in history:
        if r["status"] == "deployed":
            r["status"] = "superseded"
    new["status"] = "deployed"
    new["description"] = final_description
    new["updated"] = now_rfc3339()
    _write_history(api, args.namespace, args.release, history + [new])
    return new


def _require_idle(history: list[dict[str, Any]]) -> None:
    """As real helm: one operation at a time per release."""
    if history and str(history[-1].get("status", "")).startswith("pending-"):
        raise HelmError("another operation (install/upgrade/rollback) is in progress")


def cmd_rollback(api: KubeRest, args: argparse.Namespace) -> None:
    history = _require_history(api, args.namespace, args.release)
    _require_idle(history)
    current = history[-1]
    target_number = args.revision if args.revision else current["revision"] - 1
    if target_number < 1:
        raise HelmError(f"release has no {target_number} version")
    targets = [r for r in history if r["revision"] == target_number]
    if not targets:
        raise HelmError(f"release has no {target_number} version")
    target = targets[0]
    new = {
        "revision": current["revision"] + 1,
        "updated": now_rfc3339(),
        "status": "pending-rollback",
        "chart": target["chart"],
        "app_version": target.get("app_version") or "",
        "description": f"Rollback to {target_number}",
        "image_tag": target.get("image_tag"),
    }
    _apply_revision(
        api,
        args,
        history,
        new,
        pending_status="pending-rollback",
        failed_description=f'Rollback "{args.release}" failed: {{reason}}',
        supersede_on_failure=True,
    )
    print("Rollback was a success! Happy Helming!")


def _parse_sets(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        for part in value.split(","):
            if not part:
                continue
            if "=" not in part:
                raise HelmError(f'failed parsing --set data: key "{part}" has no value')
            k, v = part.split("=", 1)
            out[k.strip()] = v
    return out


def cmd_upgrade(api: KubeRest, args: argparse.Namespace) -> None:
    sets = _parse_sets(args.set)
    history = _read_history(api, args.namespace, args.release) or []
    deployed = [r for r in history if r["status"] == "deployed"]
    if not history and not args.install:
        raise HelmError(f'UPGRADE FAILED: "{args.release}" has no deployed releases')
    _require_idle(history)
    previous = deployed[-1] if deployed else (history[-1] if history else None)
    chart_name = args.chart.rstrip("/").rsplit("/", 1)[-1]
    if args.version:
        chart = f"{chart_name}-{args.version}"
    elif previous and split_chart(previous["chart"])[0] == chart_name:
        chart = previous["chart"]
    else:
        chart = f"{chart_name}-0.1.0"
    image_tag = sets.get("image.tag") or (previous.get("image_tag") if previous else None)
    installing = not history
    new: dict[str, Any] = {
        "revision": (history[-1]["revision"] + 1) if history else 1,
        "updated": now_rfc3339(),
        "status": "pending-install" if installing else "pending-upgrade",
        "chart": chart,
        "app_version": (previous or {}).get("app_version") or "",
        "description": args.description or ("Install complete" if installing else "Upgrade complete"),
        "image_tag": image_tag,
    }
    new = _apply_revision(
        api,
        args,
        history,
        new,
        pending_status=new["status"],
        failed_description=f'{"Release" if installing else "Upgrade"} "{args.release}" failed: {{reason}}',
        supersede_on_failure=False,
    )
    doc = _status_doc(args.release, args.namespace, history + [new], None)
    if args.output == "table":
        if installing:
            print(f'Release "{args.release}" does not exist. Installing it now.')
        else:
            print(f'Release "{args.release}" has been upgraded. Happy Helming!')
        _print_status_table(doc)
    else:
        _print_doc(doc, args.output)


# --------------------------------------------------------------------------------------------
# Argument parsing and entry point


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # helm: "Error: ..." and exit 1
        raise HelmError(message)


def _global_flags() -> _Parser:
    p = _Parser(add_help=False)
    p.add_argument("-n", "--namespace", default=argparse.SUPPRESS)
    p.add_argument("--kubeconfig", default=argparse.SUPPRESS)
    p.add_argument("--kube-context", dest="kube_context", default=argparse.SUPPRESS)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    return p


def _output_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", default="table", choices=["table", "json", "yaml"])


def _wait_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", action="store_true")
    p.add_argument("--timeout", default=DEFAULT_TIMEOUT)


def build_parser() -> argparse.ArgumentParser:
    common = _global_flags()
    parser = _Parser(prog="helm", parents=[common])
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    p = sub.add_parser("history", parents=[common], aliases=["hist"])
    p.add_argument("release")
    p.add_argument("--max", type=int, default=DEFAULT_MAX_HISTORY)
    _output_flag(p)

    p = sub.add_parser("status", parents=[common])
    p.add_argument("release")
    p.add_argument("--revision", type=int, default=None)
    _output_flag(p)

    p = sub.add_parser("rollback", parents=[common])
    p.add_argument("release")
    p.add_argument("revision", nargs="?", type=int, default=0)
    _wait_flags(p)

    p = sub.add_parser("upgrade", parents=[common])
    p.add_argument("release")
    p.add_argument("chart")
    p.add_argument("--set", action="append", default=[])
    p.add_argument("-i", "--install", action="store_true")
    p.add_argument("--version", default=None)
    p.add_argument("--description", default=None)
    _output_flag(p)
    _wait_flags(p)
    return parser


COMMANDS = {
    "history": cmd_history,
    "hist": cmd_history,
    "status": cmd_status,
    "rollback": cmd_rollback,
    "upgrade": cmd_upgrade,
}


def _api_client(args: argparse.Namespace) -> KubeRest:
    return KubeRest.from_kubeconfig(args.kubeconfig, args.kube_context)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        for key, default in (("namespace", "default"), ("kubeconfig", None), ("kube_context", None), ("debug", False)):
            if not hasattr(args, key):
                setattr(args, key, default)
        if not args.command:
            raise HelmError("a subcommand is required (history, status, rollback, upgrade)")
        if hasattr(args, "timeout"):
            try:
                args.timeout_seconds = parse_duration(args.timeout)
            except ValueError as e:
                raise HelmError(f'invalid argument "{args.timeout}" for "--timeout" flag: {e}') from None
        api = _api_client(args)
        try:
            COMMANDS[args.command](api, args)
        finally:
            api.close()
        return 0
    except HelmError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    except KubeApiError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - a connection failure (urllib3's, with retries off), one line
        text = " ".join(str(e).split()) or type(e).__name__
        print(f"Error: Kubernetes cluster unreachable: {text}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
