"""The CLI as a client of CodeBlue's HTTP API, the way kubectl talks to its API server.

With `CODEBLUE_API_URL` and `CODEBLUE_TOKEN` set (or a credentials file written by
`codeblue login`), every incident command goes through the API: the API authenticates the
token, applies the roles, and signs the command for the token's principal. The CLI never
holds the operator key on that path, and a `--by` that is not the token's name is an error.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from activities.http_client import tls_context
from domain.incident import DecisionResult, IncidentReport, ResolutionResult
from starters.errors import CodeBlueError

ENV_URL = "CODEBLUE_API_URL"
ENV_TOKEN = "CODEBLUE_TOKEN"
ENV_CREDENTIALS = "CODEBLUE_CREDENTIALS"


def credentials_path() -> Path:
    explicit = os.environ.get(ENV_CREDENTIALS)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "codeblue" / "credentials.json"


@dataclass(frozen=True)
class ApiCredentials:
    url: str
    token: str

    @classmethod
    def find(cls) -> ApiCredentials | None:
        """The environment first, then the file `codeblue login` wrote; None: no API configured."""
        url, token = os.environ.get(ENV_URL, "").strip(), os.environ.get(ENV_TOKEN, "").strip()
        if url:
            if not token:
                saved = cls._saved()
                token = saved.token if saved and saved.url == url else ""
            if not token:
                raise CodeBlueError(f"{ENV_URL} is set but no token: set {ENV_TOKEN} or run `codeblue login --api {url}`")
            return cls(url.rstrip("/"), token)
        return cls._saved()

    @classmethod
    def _saved(cls) -> ApiCredentials | None:
        path = credentials_path()
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise CodeBlueError(f"cannot read credentials {path}: {e}") from None
        if not isinstance(data, dict) or not data.get("url") or not data.get("token"):
            raise CodeBlueError(f"credentials {path}: expected {{\"url\", \"token\"}}; run `codeblue login` again")
        return cls(str(data["url"]).rstrip("/"), str(data["token"]))

    def save(self) -> Path:
        """Owner-only (0600), like kubectl's config: the token is a password."""
        path = credentials_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(fd, "w") as f:
            json.dump({"url": self.url, "token": self.token}, f)
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
        return path


class ApiClient:
    """Synchronous: one command, one or two requests. Errors are one line (problem+json detail)."""

    def __init__(self, creds: ApiCredentials, timeout: float = 70.0) -> None:
        self.creds = creds
        # Plain HTTP has no certificate to check: building the verifying context (reading the CA
        # bundle) would be a sixth of the command's start-up.
        verify = tls_context() if creds.url.lower().startswith("https:") else False
        self._http = httpx.Client(base_url=creds.url, timeout=timeout, verify=verify,
                                  headers={"Authorization": f"Bearer {creds.token}"})

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            r = self._http.request(method, path, json=body)
        except httpx.HTTPError as e:
            raise CodeBlueError(f"cannot reach the CodeBlue API at {self.creds.url} ({type(e).__name__})") from None
        if r.status_code >= 400:
            try:
                p = r.json()
                detail = p.get("detail") or p.get("title") or r.reason_phrase
            except ValueError:
                detail = r.reason_phrase
            raise CodeBlueError(f"{detail} (HTTP {r.status_code})")
        if r.headers.get("content-type", "").startswith("application/json"):
            return r.json()
        return r.text

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._call(method, path, body)

    def whoami(self) -> dict[str, Any]:
        return self._call("GET", "/whoami")

    def actor(self, typed_by: str | None) -> str:
        """The token's principal; a `--by` naming anyone else is refused, never signed."""
        name = str(self.whoami()["name"])
        if typed_by and typed_by != name:
            raise CodeBlueError(f"--by {typed_by} is not you: the token authenticates {name}")
        return name

    def start_incident(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/incidents", body)

    def status(self, incident_id: str) -> IncidentReport:
        return IncidentReport.model_validate(self._call("GET", f"/incidents/{incident_id}"))

    def decide(self, incident_id: str, action_id: str, approve: bool, reason: str | None,
               override: str | None = None) -> DecisionResult:
        body: dict[str, Any] = {"action_id": action_id, "approve": approve, "reason": reason}
        if override is not None:
            body["override"] = override
        return DecisionResult.model_validate(self._call("POST", f"/incidents/{incident_id}/decisions", body))

    def decide_many(self, incident_id: str, decisions: list[tuple[str, bool, str | None]],
                    override: str | None = None) -> list[DecisionResult]:
        body = {"decisions": [{"action_id": a, "approve": ok, "reason": r, **({"override": override} if override else {})}
                              for a, ok, r in decisions]}
        data = self._call("POST", f"/incidents/{incident_id}/decisions/batch", body)
        return [DecisionResult.model_validate(d) for d in data]

    def name_service(self, incident_id: str, service: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/incidents/{incident_id}/service", {"service": service}))

    def resolve(self, incident_id: str, summary: str, force: bool, public_summary: str | None = None) -> ResolutionResult:
        body = {"summary": summary, "force": force, "public_summary": public_summary}
        try:
            data = self._call("POST", f"/incidents/{incident_id}/resolve", body)
        except CodeBlueError as e:
            if "(HTTP 409)" in str(e) and str(e).startswith("not resolved"):
                return ResolutionResult(resolved=False, verified=False, message=str(e).rsplit(" (HTTP", 1)[0])
            raise
        return ResolutionResult.model_validate(data)

    def assign(self, incident_id: str, commander: str) -> None:
        self._call("POST", f"/incidents/{incident_id}/commander", {"commander": commander})

    def escalate(self, incident_id: str, severity: str, reason: str) -> None:
        self._call("POST", f"/incidents/{incident_id}/escalate", {"severity": severity, "reason": reason})

    def note(self, incident_id: str, text: str) -> None:
        self._call("POST", f"/incidents/{incident_id}/notes", {"text": text})

    def list_open(self) -> list[dict[str, str]]:
        return list(self._call("GET", "/incidents"))

    def start_procedure(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", f"/procedures/{kind}", body)

    def command(self, path: str, body: dict[str, Any]) -> str:
        """A command on a running procedure; the workflow's answer as one line."""
        data = self._call("POST", path, body)
        if isinstance(data, dict) and "message" in data:
            return str(data["message"])
        return json.dumps(data) if not isinstance(data, str) else data

    def postmortem(self, incident_id: str) -> str:
        return str(self._call("GET", f"/incidents/{incident_id}/postmortem"))
