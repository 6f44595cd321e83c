"""The incident: workflow input, proposals and decisions, and the report contract."""

from __future__ import annotations

import re
from enum import Enum
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, Field

from domain.action_params import (
    ActionParams,
    CacheFlushParams,
    DbCheckParams,
    DbCutoverParams,
    DbRestoreParams,
    HelmRollbackParams,
    HelmUpgradeParams,
    PlaybookParams,
    RolloutRestartParams,
    ScaleUpParams,
)
from domain.bounds import Name, Roles, Text
from domain.identity import StartedBy
from domain.severity import Severity
from domain.slack import SlackChannelRef

INCIDENT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # fullmatch: no trailing newline
# the same rule for pydantic/FastAPI patterns (their regex engine's $ is the very end)
INCIDENT_ID_PATTERN = f"^{INCIDENT_ID_RE.pattern}$"


def _incident_id_ok(v: str) -> str:
    if not INCIDENT_ID_RE.fullmatch(v):
        raise ValueError("incident ID must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return v


# Every workflow input names its incident this way: it becomes part of workflow IDs.
IncidentId = Annotated[str, AfterValidator(_incident_id_ok)]


class Phase(str, Enum):
    OPEN = "open"
    DIAGNOSTICS = "diagnostics"
    ASSESSMENT = "assessment"
    COMMUNICATION = "communication"
    MITIGATION = "mitigation"
    RESOLVING = "resolving"
    RESOLVED = "resolved"


class ActionKind(str, Enum):
    HELM_ROLLBACK = "helm_rollback"
    SCALE_UP = "scale_up"
    ROLLOUT_RESTART = "rollout_restart"
    DB_CHECK = "db_check"
    HELM_UPGRADE = "helm_upgrade"
    CACHE_FLUSH = "cache_flush"
    DB_RESTORE = "db_restore"
    DB_CUTOVER = "db_cutover"
    # start a runbook playbook as a child workflow; its own IC gates decide its steps
    PLAYBOOK = "playbook"


# which params model reads each kind's `Action.params` (domain.action_params)
ACTION_PARAMS: dict[ActionKind, type[ActionParams]] = {
    ActionKind.HELM_ROLLBACK: HelmRollbackParams,
    ActionKind.SCALE_UP: ScaleUpParams,
    ActionKind.ROLLOUT_RESTART: RolloutRestartParams,
    ActionKind.DB_CHECK: DbCheckParams,
    ActionKind.HELM_UPGRADE: HelmUpgradeParams,
    ActionKind.CACHE_FLUSH: CacheFlushParams,
    ActionKind.DB_RESTORE: DbRestoreParams,
    ActionKind.DB_CUTOVER: DbCutoverParams,
    ActionKind.PLAYBOOK: PlaybookParams,
}
P = TypeVar("P", bound=ActionParams)


class ActionState(str, Enum):
    PROPOSED = "proposed"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXECUTED = "executed"
    FAILED = "failed"
    COMPENSATED = "compensated"
    # withdrawn without running: the world moved since the decision (a new proposal names
    # the new facts) or, after another mitigation, the evidence no longer calls for it
    SUPERSEDED = "superseded"


# a mutating step's refusal when the world moved since the IC's decision (activities.preconditions):
# ReleaseMoved (helm), ReplicasMoved (scale), RolloutMoved (restart), SecretMoved (db cutover)
MOVED_TYPES = ("ReleaseMoved", "ReplicasMoved", "RolloutMoved", "SecretMoved")

# The documented bound on the incident report (and on what a continued run carries): alerts
# and notes past their caps are counted, not listed, so no alert volume can push it further.
REPORT_MAX_BYTES = 1024 * 1024


class ProposalWatch(BaseModel):
    """The reminder/EM-page clock of the proposals now waiting, so a continued run keeps
    their original deadlines."""

    round_key: str = ""
    since_seconds: float
    reminded: bool = False


class IncidentCarry(BaseModel):
    """Everything an open incident continues-as-new with (only set by the workflow itself)."""

    runs: int = 1
    started_at: str  # the first run's start: every clock and timeline offset counts from it
    severity: Severity
    phase: Phase
    commander: str | None = None
    sla: list[SlaClock] = []
    timeline: list[TimelineEntry] = []
    actions: list[Action] = []
    proposed_at: dict[str, float] = {}
    assessment: dict[str, Any] | None = None
    status_page_opened: bool = False
    status_page_status: str = ""  # the status page's latest status (investigating ... resolved)
    escalations: list[Escalation] = []
    saga: list[Undo] = []
    watch: ProposalWatch | None = None
    slack: dict[str, dict[str, Any]] = {}  # action ID -> domain.slack.SlackShown
    slack_off: bool = False
    alerts: dict[str, Any] = {}
    notes: dict[str, Any] = {}
    unverified: int = 0  # commands refused for want of a proof so far
    paged: dict[str, str] = {}  # the pages raised (dedup key -> audience), resolved at the end
    slack_channel: SlackChannelRef | None = None  # the incident's own Slack channel, once opened


class IncidentInput(StartedBy):
    incident_id: IncidentId
    title: str = Field(min_length=1, max_length=200)
    severity: Severity
    service: str = "api-gateway"
    commander: str | None = None
    security_incident: bool = False  # pages the security contact
    severity_reasons: list[str] = []
    # what the status page and stakeholders may read (the title stays internal)
    public_summary: str | None = Field(default=None, max_length=500)
    carried: IncidentCarry | None = None  # set by continue-as-new only


class IncidentRef(BaseModel):
    incident_id: str
    run_id: str | None = None  # one run of it (a recurring alert key has several)


class IncidentAuthority(BaseModel):
    """Who decides for an incident, read from its own workflow (never from a starter)."""

    exists: bool
    open: bool = False
    commander: str | None = None
    service: str | None = None  # the service the incident is about: its playbooks act on it


class TimelineKind(str, Enum):
    """What a timeline entry records, for readers that must not parse its words (the
    post-mortem draft, dashboards, tests). `event` is everything else."""

    OPENED = "opened"
    SEVERITY = "severity"  # why the severity is what it is
    ESCALATED = "escalated"
    SLA = "sla"  # a clock met or missed
    STEP = "step"  # a runbook step done (diagnostics, assessment, a playbook's reading)
    PROPOSED = "proposed"
    DECISION = "decision"  # approved or rejected, by a person
    EXECUTING = "executing"
    EXECUTED = "executed"
    FAILED = "failed"
    SUPERSEDED = "superseded"  # withdrawn, or not run because the world moved
    COMPENSATION = "compensation"  # an undo, or the start of undoing
    NOTIFICATION = "notification"  # pages, messages, status page, Slack
    ALERT = "alert"
    NOTE = "note"
    COMMANDER = "commander"
    IGNORED = "ignored"  # a command refused or without effect
    VERIFICATION = "verification"  # health, SLIs, verified or not
    RESOLVED = "resolved"
    CONTINUED = "continued"  # continued as new
    POST_INCIDENT = "post_incident"
    EVENT = "event"


class TimelineEntry(BaseModel):
    at_seconds: float
    actor: str
    event: str
    result: str | None = None
    # An entry made without a kind (or recorded before kinds existed) is filed by its words. A
    # default factory, not a model validator: it runs only when the kind is missing, where a
    # validator cost every decoded entry a Python call (a report holds hundreds of them).
    # what the entry records, named where it is written (workflows.timeline.Timeline.log)
    kind: TimelineKind = TimelineKind.EVENT


class SlaClock(BaseModel):
    name: str
    due_seconds: float
    met: bool | None = None  # None while running
    done_seconds: float | None = None


class Action(BaseModel):
    id: str
    kind: ActionKind
    reason: str
    params: dict[str, Any] = {}
    state: ActionState = ActionState.PROPOSED
    approved_by: str | None = None
    approvals: list[str] = []  # the two-person rule's first approver(s), while it waits for the second
    decided_by: str | None = None
    decided_at_seconds: float | None = None
    rejection_reason: str | None = None
    result: str | None = None
    compensation: str | None = None
    # how well the evidence supports it among this incident's proposals (1: best; 0: unranked)
    rank: int = 0
    recommended: bool = False
    recommendation: str | None = None  # the one-line why, on the recommended proposal
    # the blast-radius policy (domain.blast_radius): an admin's override given with the approval,
    # and the rule that withdrew the step or that the override went past
    override: str | None = None
    override_by: str | None = None
    blast_radius_rule: str | None = None

    def params_as(self, model: type[P]) -> P:
        """`params` read through this kind's model; the dict itself stays as history and the
        report carry it. Another kind's model is a bug, not a missing field: TypeError."""
        if ACTION_PARAMS[self.kind] is not model:
            raise TypeError(f"{self.kind.value} params are {ACTION_PARAMS[self.kind].__name__}, not {model.__name__}")
        return model.model_validate(self.params)


class Undo(BaseModel):
    """A registered compensation as data (one activity call), so a saga survives
    continue-as-new."""

    action_id: str
    activity: str
    arg: dict[str, Any]
    summary: str
    timeout_seconds: int = 120
    heartbeat: bool = False


class Decision(BaseModel):
    """An IC's approve/reject of one proposed action (signals `approve`/`reject`, update `decide`)."""

    action_id: Name
    approve: bool
    by: Name
    reason: str | None = Field(default=None, max_length=4000)
    # an admin's reason to go past the blast-radius policy's hourly rate or replica ceiling
    # (domain.blast_radius): with an approval only, recorded on the action and the timeline
    override: str | None = Field(default=None, min_length=1, max_length=2000)
    by_roles: Roles = []  # the proof's roles (worker.identity): typed values never count


class BatchDecision(BaseModel):
    action_id: Name
    approve: bool
    reason: str | None = Field(default=None, max_length=4000)
    override: str | None = Field(default=None, min_length=1, max_length=2000)


class DecisionBatch(BaseModel):
    """Several decisions by one person in one update (`decide_many`): applied together, so
    approved actions run in the order given and no re-check withdraws one in between."""

    by: Name
    decisions: list[BatchDecision] = Field(min_length=1, max_length=50)
    by_roles: Roles = []

    def as_decisions(self) -> list[Decision]:
        return [Decision(action_id=d.action_id, approve=d.approve, by=self.by, reason=d.reason, override=d.override,
                         by_roles=self.by_roles) for d in self.decisions]


class DecisionResult(BaseModel):
    action_id: str
    state: ActionState
    message: str


class CommanderAssignment(BaseModel):
    commander: Name
    by: Name


class Escalation(BaseModel):
    severity: Severity
    by: Name
    reason: Text = ""


class ServiceNaming(BaseModel):
    """The IC names the catalog service an incident outside the catalog is about (update
    `name_service`): CodeBlue then reads its targets and proposes for it."""

    service: Name = Field(min_length=1)
    by: Name


class Note(BaseModel):
    """A responder's note on the timeline (free text: it stays in the encrypted history, never in logs)."""

    by: Name
    text: str = Field(min_length=1, max_length=4000)


class Resolution(BaseModel):
    by: Name
    summary: str = Field(min_length=1, max_length=2000)
    # Close even when health verification fails (recorded as such).
    force: bool = False
    # the public wording of the resolution (the summary stays internal)
    public_summary: str | None = Field(default=None, max_length=500)


class ResolutionResult(BaseModel):
    resolved: bool
    verified: bool
    message: str


class IncidentReport(BaseModel):
    """The report contract shared by the drill, `--json`, the tests and the API."""

    incident_id: str
    title: str
    severity: Severity
    service: str
    status: str  # open | resolved | resolved_unverified
    phase: Phase
    commander: str | None = None
    started_at: str  # ISO 8601 UTC
    sla: list[SlaClock] = []
    actions: list[Action] = []
    timeline: list[TimelineEntry] = []
    summary: str | None = None
    public_summary: str | None = None  # the IC's words for the status page and stakeholders
    postmortem_workflow_id: str | None = None  # this run's post-incident workflow, once resolved
    verified: bool | None = None
    assessment: dict[str, Any] = {}
    # Alerts that reached this incident (from the API): received, listed on the timeline,
    # unlisted (past the timeline's alert cap), repeats (re-sent, recorded once). {} if none.
    alerts: dict[str, int] = {}
    # Responders' notes: received, listed, unlisted (past the cap), rate_limited. {} if none.
    notes: dict[str, int] = {}
    # commands refused for want of a valid proof (the first ten are on the timeline)
    unverified_commands: int = 0
    # the incident's own Slack channel (ID and name), when the worker has a bot token and Slack
    # created it; None: no channel through the Web API (the webhook message, or it failed)
    slack_channel: SlackChannelRef | None = None


IncidentCarry.model_rebuild()
IncidentInput.model_rebuild()
