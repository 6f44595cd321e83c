"""One params model per `ActionKind`, so a step reads `params.replicas`, not `p["replicas"]`.

`Action.params` stays a plain dict on the wire (history, continue-as-new inputs, the report
JSON). These models only read it: each field is typed as the code that builds the dict writes
it, optional where one builder leaves it out or an older history lacks it, and unknown keys
are kept, so a history recorded before a field existed still validates on replay.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ActionParams(BaseModel):
    # extra keys are an older or newer builder's, never an error in a replaying workflow
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class HelmRollbackParams(ActionParams):
    release: str
    namespace: str
    # the revision the IC saw as current; the step refuses if the release moved since
    from_revision: int
    to_revision: int


class ScaleUpParams(ActionParams):
    namespace: str
    deployment: str
    replicas: int
    # the count the IC saw (incident proposals since preconditions); None: read it first
    from_replicas: int | None = None


class RolloutRestartParams(ActionParams):
    deployment: str
    # absent in the database-connection playbook's proposal (it restarts in its own namespace)
    namespace: str | None = None
    # the pod template revision the IC saw (incident proposals since preconditions)
    revision: str | None = None
    # evidence the database-connection playbook shows with its proposal
    connection_errors: int | None = None
    pool_exhausted: int | None = None


class DbCheckParams(ActionParams):
    namespace: str
    deployment: str


class HelmUpgradeParams(ActionParams):
    release: str
    namespace: str
    chart: str
    from_revision: int | None = None
    from_tag: str | None = None
    to_tag: str


class CacheFlushParams(ActionParams):
    cluster: str
    pattern: str | None = None  # None: FLUSHALL
    use_async: bool = Field(default=False, alias="async")


class DbRestoreParams(ActionParams):
    source: str
    snapshot: str
    target: str


class DbCutoverParams(ActionParams):
    endpoint: str
    connect_to: str
    verification: str
    sanity: str | None = None


class PlaybookParams(ActionParams):
    workflow: str  # the playbook's workflow type, e.g. "HighMemoryPlaybook"
    workflow_id: str | None = None
    source: str | None = None
    snapshot: str | None = None
