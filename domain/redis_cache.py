"""The Redis cache playbook: cluster description, Redis stats, guarded flushes."""

from __future__ import annotations

import re

from pydantic import BaseModel, field_validator

from domain.bounds import Name
from domain.identity import StartedBy
from domain.incident import IncidentId
from domain.severity import Severity

# a SCAN MATCH glob; '*' alone is FLUSHALL's job, not a pattern flush
_PATTERN_RE = re.compile(r"^[A-Za-z0-9_:.\-{}\[\]*?]{1,200}$")


class CacheInput(StartedBy):
    incident_id: IncidentId
    commander: str | None = None  # None: the requester
    severity: Severity = Severity.P1
    # offer a pattern-scoped flush (SCAN MATCH + UNLINK) of these keys, e.g. "session:*"
    pattern: str | None = None
    # connect here instead of the cluster's endpoint (a tunnel); refused unless it matches
    redis_address: str | None = None

    @field_validator("pattern")
    @classmethod
    def _pattern_ok(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not _PATTERN_RE.match(v) or set(v) <= {"*", "?"}:
            raise ValueError("pattern must be a key glob like 'session:*' (use the full flush for everything)")
        return v


def cache_workflow_id(incident_id: str) -> str:
    return f"{incident_id}-cache"


class CacheClusterQuery(BaseModel):
    cluster_id: str


class CacheNode(BaseModel):
    node_id: str
    status: str
    endpoint: str | None = None  # host:port


class CacheCluster(BaseModel):
    cluster_id: str
    status: str
    engine: str
    engine_version: str | None = None
    nodes: list[CacheNode] = []
    endpoint: str | None = None  # configuration or first node endpoint, host:port


class RedisTarget(BaseModel):
    cluster_id: str
    cluster_endpoint: str | None  # as ElastiCache described it
    address: str  # where to connect; must be the cluster's (or the configured override)


class RedisStats(BaseModel):
    address: str
    ping: bool
    used_memory_human: str | None = None
    used_memory_bytes: int | None = None
    maxmemory_bytes: int | None = None
    evicted_keys: int = 0
    connected_clients: int = 0
    keyspace_hits: int = 0
    keyspace_misses: int = 0
    keys: int = 0  # DBSIZE of the configured db
    keyspace: dict[str, int] = {}  # db -> keys

    @property
    def hit_ratio(self) -> float | None:
        total = self.keyspace_hits + self.keyspace_misses
        return None if total == 0 else self.keyspace_hits / total

    def summary(self) -> str:
        ratio = self.hit_ratio
        return (
            f"PING {'PONG' if self.ping else 'failed'}; used memory {self.used_memory_human or '?'}; "
            f"evictions {self.evicted_keys}; clients {self.connected_clients}; "
            f"hit ratio {'n/a' if ratio is None else f'{ratio:.1%}'}; keys {self.keys}; keyspace {self.keyspace}"
        )


class FlushRequest(BaseModel):
    target: RedisTarget
    # None: FLUSHDB of the configured db (everything); else SCAN MATCH pattern + UNLINK
    pattern: str | None = None
    # the cluster name as the IC typed it; must equal target.cluster_id for a full flush
    confirmation: str | None = None
    use_async: bool = True


class FlushResult(BaseModel):
    mode: str  # "flush-async" | "flush" | "pattern"
    keys_before: int
    keys_after: int
    deleted: int  # keys removed (pattern) or keys_before - keys_after
    detail: str


class FlushConfirmation(BaseModel):
    """The IC types the cluster's name to allow a full flush (update `confirm_flush`)."""

    by: Name
    cluster_name: Name
