"""Who sent a command, proved: an HMAC made by the component that authenticated the person.

The API (which checked a bearer token) or an operator holding the operator key signs each
human command: (workflow ID, handler, canonical payload, actor, roles, issued-at). Workers
verify with the same key; the key never enters a payload, a history or a log. Standard
library only (hmac, hashlib), so the check runs inside the workflow sandbox unchanged.

Keys come from the environment, never from the config file:
- `CODEBLUE_OPERATOR_KEY`: the current key (any secret of 16+ characters), optionally `KEYID:secret`;
- `CODEBLUE_OPERATOR_OLD_KEYS`: comma-separated older keys, still accepted after a rotation
  (keep them while incidents whose signals they signed are open: signals are re-verified on replay);
- `CODEBLUE_OPERATOR_KEY_FILE`: one key per line, first line current.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from domain.bounds import Digest, Name

ENV_KEY = "CODEBLUE_OPERATOR_KEY"
ENV_OLD_KEYS = "CODEBLUE_OPERATOR_OLD_KEYS"
ENV_KEY_FILE = "CODEBLUE_OPERATOR_KEY_FILE"
HEADER = "codeblue-proof"
ENV_MAX_AGE = "CODEBLUE_PROOF_MAX_AGE_SECONDS"
# how old a proof may be when an update's validator sees it (clock skew + a slow request);
# the sender is waiting, so an older one is a replay. Set 0 to switch the check off.
MAX_AGE_SECONDS = 300
OPERATOR_VIA = "operator key"
UNVERIFIED = "(unverified)"


class IdentityKeyError(Exception):
    """A missing or malformed operator key; the message never contains key material."""


class Principal(BaseModel):
    """An authenticated person: a token's name and roles, or an operator-key holder."""

    name: str = Field(min_length=1, max_length=120)
    roles: list[str] = []
    via: str = ""  # "" for the API (a token), OPERATOR_VIA for the operator key

    @property
    def display(self) -> str:
        return f"{self.name} ({self.via})" if self.via else self.name

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles or self.via == OPERATOR_VIA


class Proof(BaseModel):
    """What travels in the `codeblue-proof` header of a start, signal or update."""

    kid: Digest
    workflow_id: Name
    handler: Name
    digest: Digest  # sha256 of the canonical payload
    actor: Name
    roles: list[Name] = Field(default=[], max_length=20)
    via: Name = ""
    issued_at: float  # seconds since the epoch, by the signer's clock
    # the run it is for: a command's, the first run of the target's chain (continue-as-new
    # keeps it); a continued run's or a child's, the run that made it; a start's, none
    run: Name = ""
    mac: Digest

    def principal(self) -> Principal:
        return Principal(name=self.actor, roles=list(self.roles), via=self.via)


def person(by: str | None) -> str:
    """The name an authority check compares: `alice (operator key)` is alice."""
    if not by:
        return ""
    name, sep, rest = by.rpartition(" (")
    return name if sep and rest.endswith(")") and name else by


# Fields added to a signed model after commands were first signed with it: left out of the
# canonical form while at their default, so every proof signed before they existed (in running
# incidents and in committed histories, re-verified on replay) still holds. A field added to a
# signed payload (a workflow input, Decision, Note, Resolution, ...) must be listed here.
ADDED_AFTER_SIGNING = frozenset({"carried", "report_ref", "start_proof", "start_issued_at"})


# A proof carried in the payload it proves (alert deliveries) is never part of what it signs.
IN_PAYLOAD = "proof"


def _signed_form(m: BaseModel) -> dict[str, Any]:
    d = m.model_dump(mode="json")
    d.pop(IN_PAYLOAD, None)
    for name in ADDED_AFTER_SIGNING & set(type(m).model_fields):
        field = type(m).model_fields[name]
        if getattr(m, name) == field.get_default(call_default_factory=True):
            d.pop(name, None)
    return d


def canonical(args: Sequence[Any]) -> bytes:
    """The payload as the signer and the verifier both see it (pydantic JSON, sorted keys)."""
    out = []
    for a in args:
        if isinstance(a, BaseModel):
            out.append(_signed_form(a))
        else:
            out.append(a)
    return json.dumps(out, sort_keys=True, separators=(",", ":"), default=str).encode()


def _message(p: Mapping[str, Any]) -> bytes:
    fields = [p["kid"], p["workflow_id"], p["handler"], p["digest"], p["actor"],
              ",".join(sorted(p["roles"])), p["via"], repr(float(p["issued_at"])), p.get("run", "")]
    return "\n".join(fields).encode()


class Keyring:
    """The current signing key and every key still accepted."""

    def __init__(self, keys: Sequence[tuple[str, bytes]], max_age: float | None = MAX_AGE_SECONDS) -> None:
        self.keys = list(keys)
        self._by_id = dict(self.keys)
        self.max_age = max_age

    @property
    def can_sign(self) -> bool:
        return bool(self.keys)

    def sign(self, workflow_id: str, handler: str, args: Sequence[Any], who: Principal, now: float,
             run: str = "") -> Proof:
        if not self.keys:
            raise IdentityKeyError(f"no operator key: set {ENV_KEY}")
        kid, key = self.keys[0]
        fields: dict[str, Any] = {
            "kid": kid, "workflow_id": workflow_id, "handler": handler,
            "digest": hashlib.sha256(canonical(args)).hexdigest(),
            "actor": who.name, "roles": sorted(who.roles), "via": who.via, "issued_at": float(now), "run": run,
        }
        mac = hmac.new(key, _message(fields), hashlib.sha256).hexdigest()
        return Proof(mac=mac, **fields)

    def problem(self, proof: Proof, workflow_id: str, handler: str, args: Sequence[Any],
                now: float | None = None, max_age: float | None = MAX_AGE_SECONDS,
                runs: Sequence[str] = ("",)) -> str | None:
        """Why the proof does not hold for this command, or None when it does. `runs`: the run
        IDs it may be bound to. `now` None (or `max_age` None): no freshness check (a signal
        may wait in history while workers are down)."""
        key = self._by_id.get(proof.kid)
        if key is None:
            return "the proof's key is unknown to this worker (rotated out, or made elsewhere)"
        expected = hmac.new(key, _message(proof.model_dump()), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, proof.mac):
            return "the proof does not verify (altered, or signed with another key)"
        if proof.workflow_id != workflow_id:
            return f"the proof was made for {proof.workflow_id}, not {workflow_id}"
        if proof.handler != handler:
            return f"the proof was made for {proof.handler}, not {handler}"
        if proof.run not in runs:
            return f"the proof was made for run {proof.run or '(none)'} of {workflow_id}, not this one"
        if not hmac.compare_digest(proof.digest, hashlib.sha256(canonical(args)).hexdigest()):
            return "the payload differs from the one that was signed"
        if now is not None and max_age is not None:
            age = now - proof.issued_at
            if abs(age) > max_age:
                return f"the proof is {int(abs(age))} s {'old' if age > 0 else 'in the future'} (limit {max_age:g} s)"
        return None


def parse_key(text: str) -> tuple[str, bytes]:
    """`secret` or `KEYID:secret` -> (key ID, key bytes)."""
    text = text.strip()
    kid, sep, secret = text.partition(":")
    if not sep:
        kid, secret = "", text
    if len(secret) < 16:
        raise IdentityKeyError("an operator key must be at least 16 characters")
    key = secret.encode()
    return (kid or hashlib.sha256(key).hexdigest()[:12]), key


def keyring_from(lines: Iterable[str]) -> Keyring:
    keys = [parse_key(x) for x in lines if x.strip()]
    return Keyring(keys)


def keyring_from_env(env: Mapping[str, str] | None = None) -> Keyring:
    e = os.environ if env is None else env
    lines: list[str] = []
    path = e.get(ENV_KEY_FILE)
    if path:
        try:
            lines += Path(path).read_text().splitlines()
        except OSError as err:
            raise IdentityKeyError(f"{ENV_KEY_FILE}: cannot read {path}: {err.strerror}") from None
    if e.get(ENV_KEY):
        lines.insert(0, e[ENV_KEY])
    lines += (e.get(ENV_OLD_KEYS) or "").split(",")
    ring = keyring_from(lines)
    raw = (e.get(ENV_MAX_AGE) or "").strip()
    if raw:
        try:
            age = float(raw)
        except ValueError:
            raise IdentityKeyError(f"{ENV_MAX_AGE}={raw}: expected seconds") from None
        ring.max_age = age if age > 0 else None
    return ring


def new_key() -> str:
    """A fresh operator key (for `codeblue dev`, drills and `.env`)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


class StartedBy(BaseModel):
    """What every workflow input a person starts carries about who started it. The worker
    overwrites all three from the start's proof (worker.identity): typed values never count."""

    requested_by: str = "unknown"
    requested_roles: list[str] = []
    start_refused: str | None = None  # why the start's proof did not hold; the workflow then does nothing
    # the verified start proof (its MAC), which the workflow checks no earlier run of its ID used
    start_proof: str | None = None
    start_issued_at: float | None = None
