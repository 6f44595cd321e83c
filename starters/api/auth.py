"""Bearer tokens -> principal and roles. Only sha256 hashes are kept; never logged."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from domain.config import ApiConfig, ConfigError
from domain.identity import Principal as Identity

VIEWER, RESPONDER, COMMANDER, ADMIN, ALERTS = "viewer", "responder", "commander", "admin", "alerts"
# Each role grants itself and everything listed.
IMPLIES: dict[str, set[str]] = {
    VIEWER: {VIEWER},
    RESPONDER: {RESPONDER, VIEWER},
    COMMANDER: {COMMANDER, RESPONDER, VIEWER},
    ADMIN: {ADMIN, COMMANDER, RESPONDER, VIEWER, ALERTS},
    ALERTS: {ALERTS},
}


@dataclass(frozen=True)
class Principal:
    name: str
    roles: frozenset[str]

    def has(self, role: str) -> bool:
        return role in self.roles

    @property
    def identity(self) -> Identity:
        """What the API signs commands as (worker.identity): the token's name and roles."""
        return Identity(name=self.name, roles=sorted(self.roles))


@dataclass(frozen=True)
class _Entry:
    digest: bytes
    principal: Principal


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _expand(roles: list[str], where: str) -> frozenset[str]:
    out: set[str] = set()
    for r in roles:
        if r not in IMPLIES:
            raise ConfigError(f"{where}: unknown role {r!r} (one of {', '.join(IMPLIES)})")
        out |= IMPLIES[r]
    return frozenset(out)


class TokenBook:
    """Looks a presented token up by comparing its sha256 with every entry in constant time."""

    def __init__(self, entries: list[_Entry]) -> None:
        self._entries = entries

    @classmethod
    def from_config(cls, cfg: ApiConfig, env: Mapping[str, str] | None = None) -> TokenBook:
        e = os.environ if env is None else env
        entries = [
            _Entry(bytes.fromhex(t.sha256), Principal(t.name, _expand(t.roles, f"api.tokens.{t.name}")))
            for t in cfg.tokens
        ]
        raw = e.get(cfg.tokens_env)
        if raw:
            try:
                items = json.loads(raw)
                assert isinstance(items, list)
                for it in items:
                    entries.append(
                        _Entry(
                            hashlib.sha256(str(it["token"]).encode()).digest(),
                            Principal(str(it["name"]), _expand(list(it.get("roles", [VIEWER])), cfg.tokens_env)),
                        )
                    )
            except (ValueError, AssertionError, KeyError, TypeError):
                # Never echo the value: it holds tokens.
                raise ConfigError(
                    f"{cfg.tokens_env}: must be JSON [{{\"name\", \"token\", \"roles\"}}, ...]"
                ) from None
        return cls(entries)

    def lookup(self, token: str) -> Principal | None:
        digest = hashlib.sha256(token.encode()).digest()
        found: Principal | None = None
        for entry in self._entries:  # no early exit: timing does not reveal which entry matched
            if hmac.compare_digest(digest, entry.digest):
                found = entry.principal
        return found

    def by_name(self, name: str) -> Principal | None:
        """The principal `name` as the book knows it (the union of its tokens' roles), for a
        caller authenticated some other way (a Slack user mapped in `slack.users`)."""
        roles: set[str] = set()
        found = False
        for entry in self._entries:
            if entry.principal.name == name:
                found = True
                roles |= entry.principal.roles
        return Principal(name, frozenset(roles)) if found else None

    def __len__(self) -> int:
        return len(self._entries)
