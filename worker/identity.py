"""The trust boundary in Temporal itself: clients sign human commands, workers verify them.

One interceptor, on the client (a client interceptor that is also a worker interceptor is
used by every worker built from that client):

- outbound, it puts a `codeblue-proof` header on every workflow start and on every human
  signal and update, signed with the operator key for the acting principal: the one set by
  `acting_as()` (the API, from the bearer token), else the payload's own `by` when this
  client holds the operator key itself (the CLI and drills: recorded as `<name> (operator key)`);
- inbound, in each workflow, it verifies the header against the worker's keys. A refused
  update is rejected by its validator (the sender sees why; history gets nothing); a refused
  signal is recorded as ignored and changes nothing; a refused start marks the input
  `requested_by="(unverified)"` with the reason, and the workflow ends without acting.
  A verified command's `by` (a start's `requested_by`) is replaced by the proof's actor, so
  no typed name ever counts.

A command's proof is bound to its run (the first run of the target's continue-as-new chain) and
counts once across the chain; an alert delivery carries its proof in its payload. The worker
signs what its workflows send: a child's start, a continue-as-new (over the carried state and
the proofs spent) and `reopen`. Anything else is refused: cron and retry runs, a continued run
or child without its worker's proof, a handler CodeBlue does not have. THREAT-MODEL.md lists
every path with its check and tests.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, NoReturn

from pydantic import BaseModel, ValidationError
from temporalio import client as tclient
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.worker import (
    ContinueAsNewInput,
    ExecuteWorkflowInput,
    HandleSignalInput,
    HandleUpdateInput,
    Interceptor,
    SignalExternalWorkflowInput,
    StartChildWorkflowInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from domain.blast_radius import GUARD_HANDLERS
from domain.config import ConfigError
from domain.identity import (
    HEADER,
    IN_PAYLOAD,
    OPERATOR_VIA,
    UNVERIFIED,
    IdentityKeyError,
    Keyring,
    Principal,
    Proof,
    StartedBy,
    keyring_from_env,
)
from domain.procedures import HUMAN_HANDLERS as PROCEDURES_HUMAN_HANDLERS

# Handlers a person sends: each needs a proof from the API or an operator-key holder, bound
# to the run (the first run of the target's continue-as-new chain) and counted once.
# Each procedure names its own (domain.procedures).
HUMAN_HANDLERS = PROCEDURES_HUMAN_HANDLERS
# Alert delivery: signed by the API for the alerts principal. Under signal-with-start the run
# does not exist yet, so their proof may name none; they decide nothing, and an alert the
# incident already holds is not listed again.
ALERT_HANDLERS = frozenset({"add_alert", "add_alerts"})
# Sent by CodeBlue's own workflows and activities (post-incident -> incident, a step -> the
# blast-radius guard), signed by the worker.
WORKER_HANDLERS = frozenset({"reopen"}) | GUARD_HANDLERS
SIGNED_HANDLERS = HUMAN_HANDLERS | ALERT_HANDLERS | WORKER_HANDLERS
START = "start:"
CHILD = "child:"
CONTINUE = "continue:"
ROLES_FIELD = "by_roles"  # a command's verified roles (set from its proof, like `by`)
USED_HEADER = "codeblue-used"  # the proofs a run spent, carried to its continued run (covered by its proof)
WORKER = Principal(name="codeblue", via="worker")

_acting: ContextVar[Principal | None] = ContextVar("codeblue_acting", default=None)


@contextmanager
def acting_as(who: Principal) -> Iterator[None]:
    """Commands sent inside this block are signed for `who` (the API sets it per request)."""
    token = _acting.set(who)
    try:
        yield
    finally:
        _acting.reset(token)


def proof_payload(proof: Proof) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=proof.model_dump_json().encode())


def read_proof(headers: Mapping[str, Payload]) -> Proof | None:
    p = headers.get(HEADER)
    if p is None:
        return None
    try:
        return Proof.model_validate(json.loads(p.data))
    except (ValueError, ValidationError):
        return None


class IdentityInterceptor(tclient.Interceptor, Interceptor):
    """`keyring` signs (its current key) and verifies (every key). `via`/`roles`: how a
    command without `acting_as` is signed (its payload's `by` as the actor); `via=None`
    never signs without `acting_as` (the API: every command must come from a token)."""

    def __init__(self, keyring: Keyring, via: str | None = OPERATOR_VIA, roles: Sequence[str] = ()) -> None:
        self.keyring = keyring
        self.via = via
        self.roles = list(roles)
        self._workflow_class = _inbound_class(keyring)

    @classmethod
    def from_env(cls, via: str | None = OPERATOR_VIA) -> IdentityInterceptor:
        return cls(keyring_from_env(), via=via)

    # -- client side ------------------------------------------------------------------
    def intercept_client(self, next: tclient.OutboundInterceptor) -> tclient.OutboundInterceptor:
        return _Outbound(next, self)

    def principal_for(self, args: Sequence[Any], field: str) -> Principal | None:
        acting = _acting.get()
        typed = getattr(args[0], field, None) if args else None
        if acting is not None:
            if typed and field == "by" and typed != acting.name:
                raise IdentityKeyError(f"--by {typed} is not the authenticated actor {acting.name}")
            return acting
        if self.via is None or not typed:
            return None
        return Principal(name=typed, roles=self.roles, via=self.via)

    def proof_headers(self, headers: Mapping[str, Payload], workflow_id: str, handler: str,
                      args: Sequence[Any], field: str, run: str = "") -> Mapping[str, Payload]:
        if not self.keyring.can_sign:
            return headers
        who = self.principal_for(args, field)
        if who is None:
            return headers
        proof = self.keyring.sign(workflow_id, handler, args, who, time.time(), run)
        return {**headers, HEADER: proof_payload(proof)}

    def embedded_proof(self, workflow_id: str, handler: str, args: Sequence[Any]) -> list[Any]:
        """An alert delivery's proof goes in its payload (`proof`): a signal-with-start's
        signal carries no header on the test server. It names no run (the run may not exist)."""
        first = args[0] if args else None
        if not self.keyring.can_sign or not isinstance(first, BaseModel) or IN_PAYLOAD not in type(first).model_fields:
            return list(args)
        who = self.principal_for(args, "by")
        if who is None:
            return list(args)
        proof = self.keyring.sign(workflow_id, handler, args, who, time.time())
        return [first.model_copy(update={IN_PAYLOAD: proof}), *args[1:]]

    # -- worker side ------------------------------------------------------------------
    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
        return self._workflow_class


class _Outbound(tclient.OutboundInterceptor):
    def __init__(self, next: tclient.OutboundInterceptor, owner: IdentityInterceptor) -> None:
        super().__init__(next)
        self.owner = owner

    async def start_workflow(self, input: tclient.StartWorkflowInput) -> Any:
        input.headers = self.owner.proof_headers(input.headers, input.id, START + input.workflow, input.args, "requested_by")
        if input.start_signal in ALERT_HANDLERS:
            input.start_signal_args = self.owner.embedded_proof(input.id, input.start_signal, input.start_signal_args)
        return await super().start_workflow(input)

    async def _chain(self, workflow_id: str, run_id: str | None) -> str:
        """The first run of the target's chain: what a command's proof is bound to."""
        try:
            desc = await self.next.describe_workflow(tclient.DescribeWorkflowInput(
                id=workflow_id, run_id=run_id, rpc_metadata={}, rpc_timeout=None))
        except RPCError:
            return ""  # no such workflow: the command fails on its own
        return desc.raw_description.workflow_execution_info.first_run_id

    async def signal_workflow(self, input: tclient.SignalWorkflowInput) -> None:
        if input.signal in ALERT_HANDLERS:
            input.args = self.owner.embedded_proof(input.id, input.signal, input.args)
        elif input.signal in SIGNED_HANDLERS and self.owner.keyring.can_sign:
            run = await self._chain(input.id, input.run_id)
            input.headers = self.owner.proof_headers(input.headers, input.id, input.signal, input.args, "by", run)
        await super().signal_workflow(input)

    async def start_workflow_update(self, input: tclient.StartWorkflowUpdateInput) -> Any:
        if input.update in SIGNED_HANDLERS and self.owner.keyring.can_sign:
            run = await self._chain(input.id, input.run_id)
            input.headers = self.owner.proof_headers(input.headers, input.id, input.update, input.args, "by", run)
        return await super().start_workflow_update(input)


def _with_actor(args: Sequence[Any], field: str, who: Principal) -> list[Any]:
    """The proof's actor in `by`, and in `by_roles` (where the command has it) the actor's roles,
    "admin" among them for an admin: typed values never count."""
    first = args[0]
    if isinstance(first, BaseModel) and field in type(first).model_fields:
        update: dict[str, Any] = {field: who.display}
        if ROLES_FIELD in type(first).model_fields:
            update[ROLES_FIELD] = sorted({*who.roles, *(["admin"] if who.is_admin else [])})
        return [first.model_copy(update=update), *args[1:]]
    return list(args)


def _inbound_class(keyring: Keyring) -> type[WorkflowInboundInterceptor]:
    """A class per keyring: the keys live in this closure, outside every payload."""

    class _Outbound(WorkflowOutboundInterceptor):
        """What the workflow itself sends is signed by the worker: a child's start (bound to
        this run), a continue-as-new (bound to this run, with the proofs it spent) and the
        signals of WORKER_HANDLERS (bound to the target run)."""

        def __init__(self, next: WorkflowOutboundInterceptor, inbound: _Inbound) -> None:
            super().__init__(next)
            self.inbound = inbound

        def _sign(self, workflow_id: str, handler: str, args: Sequence[Any], run: str, who: Principal = WORKER) -> Payload:
            return proof_payload(keyring.sign(workflow_id, handler, args, who, workflow.now().timestamp(), run))

        async def start_child_workflow(self, input: StartChildWorkflowInput) -> workflow.ChildWorkflowHandle[Any, Any]:
            if keyring.can_sign:
                input.headers = {**input.headers, HEADER: self._sign(
                    input.id, CHILD + input.workflow, input.args, workflow.info().run_id)}
            return await super().start_child_workflow(input)

        def continue_as_new(self, input: ContinueAsNewInput) -> NoReturn:
            info = workflow.info()
            if keyring.can_sign:
                used = sorted(self.inbound.used)
                input.headers = {**input.headers, USED_HEADER: _json_payload(used), HEADER: self._sign(
                    info.workflow_id, CONTINUE + info.workflow_type, [*input.args, used], info.run_id)}
            super().continue_as_new(input)

        async def signal_external_workflow(self, input: SignalExternalWorkflowInput) -> None:
            if input.signal in WORKER_HANDLERS and keyring.can_sign:
                input.headers = {**input.headers, HEADER: self._sign(
                    input.workflow_id, input.signal, input.args, input.workflow_run_id or "")}
            await super().signal_external_workflow(input)

    class _Inbound(WorkflowInboundInterceptor):
        def init(self, outbound: WorkflowOutboundInterceptor) -> None:
            super().init(_Outbound(outbound, self))

        def __init__(self, next: WorkflowInboundInterceptor) -> None:
            super().__init__(next)
            # MACs of the commands applied in this chain of runs: a proof counts once
            self.used: dict[str, float] = {}

        def _check(self, headers: Mapping[str, Payload], handler: str, args: Sequence[Any],
                   fresh: bool = False, runs: Sequence[str] | None = None) -> tuple[Proof | None, str | None]:
            proof = read_proof(headers)
            if handler in ALERT_HANDLERS:  # in the payload (a signal-with-start's header is the start's)
                carried = getattr(args[0], IN_PAYLOAD, None) if args else None
                proof = carried if isinstance(carried, Proof) else None
            if proof is None:
                if not keyring.can_sign:
                    return None, "no proof of identity, and this worker has no operator key to check one"
                return None, "no proof of identity: send it through the CodeBlue API or CLI"
            info = workflow.info()
            if runs is None:  # a command: for this run or the first of its chain
                runs = (info.first_execution_run_id, info.run_id)
                if handler in ALERT_HANDLERS | WORKER_HANDLERS:
                    # signal-with-start: the run did not exist yet; a worker's signal to an ID's latest run
                    runs = (*runs, "")
            now = workflow.now().timestamp() if fresh else None
            problem = keyring.problem(proof, info.workflow_id, handler, args, now, keyring.max_age, runs)
            if problem is None and proof.mac in self.used:
                problem = "this proof was already used (a replayed command)"
            return (None, problem) if problem else (proof, None)

        def _spend(self, handler: str, proof: Proof) -> None:
            # alerts are deduplicated by the ledger instead; the blast-radius guard's updates are
            # fresh (an update's proof is at most max_age old) and idempotent by their holder, so
            # the long-lived guard carries no ever-growing list of them across continue-as-new
            if handler not in ALERT_HANDLERS and handler not in GUARD_HANDLERS:
                self.used[proof.mac] = proof.issued_at

        def _admit_start(self, input: ExecuteWorkflowInput) -> tuple[Proof | None, str | None]:
            """Deny by default: a first run needs a person's start proof; a child, its parent's
            (this worker's key, bound to the parent's run); a continued run, the proof its
            previous run made (bound to that run, over its input and the proofs it spent).
            Cron runs, and retry runs (Temporal marks them continued), have neither."""
            info = workflow.info()
            if info.cron_schedule:
                return None, f"cron schedules are refused ({info.cron_schedule!r}): start each run through CodeBlue"
            if info.parent is not None:
                return self._check(input.headers, CHILD + info.workflow_type, input.args, runs=(info.parent.run_id,))
            if info.continued_run_id is not None:
                used = _read_json(input.headers.get(USED_HEADER))
                if not isinstance(used, list) or not all(isinstance(m, str) for m in used):
                    return None, "a continued run without the proof its previous run makes (a retry or a forged carry)"
                proof, problem = self._check(input.headers, CONTINUE + info.workflow_type, [*input.args, used],
                                             runs=(info.continued_run_id,))
                if proof is not None:
                    self.used.update(dict.fromkeys(used, 0.0))
                return proof, problem
            return self._check(input.headers, START + info.workflow_type, input.args, runs=("",))

        async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
            info = workflow.info()
            first = input.args[0] if input.args else None
            if not isinstance(first, StartedBy):
                raise ApplicationError(f"start refused: {info.workflow_type} takes a CodeBlue input", type="StartRefused",
                                       non_retryable=True)
            proof, problem = self._admit_start(input)
            # the workflow object already holds this very input: mutate it in place
            if proof is None:
                first.requested_by = UNVERIFIED
                first.start_refused = problem
            elif proof.handler.startswith(START):  # a person's start; a child or continued run keeps what it was given
                who = proof.principal()
                first.requested_by = who.display
                first.requested_roles = list(who.roles) + (["admin"] if who.is_admin else [])
                first.start_refused = None
                first.start_proof = proof.mac
                first.start_issued_at = proof.issued_at
            return await super().execute_workflow(input)

        async def handle_signal(self, input: HandleSignalInput) -> None:
            if input.signal not in SIGNED_HANDLERS:
                _refused(input.signal, input.args, "this signal is not part of CodeBlue's interface")
                return
            proof, problem = self._check(input.headers, input.signal, input.args)
            if proof is None:
                _refused(input.signal, input.args, problem or "refused")
                return
            self._spend(input.signal, proof)
            input.args = _with_actor(input.args, "by", proof.principal())
            await super().handle_signal(input)

        def handle_update_validator(self, input: HandleUpdateInput) -> None:
            if input.update not in SIGNED_HANDLERS:
                raise ApplicationError("refused: this update is not part of CodeBlue's interface", type="Unauthenticated",
                                       non_retryable=True)
            proof, problem = self._check(input.headers, input.update, input.args, fresh=True)
            if proof is None:
                raise ApplicationError(f"refused: {problem}", type="Unauthenticated", non_retryable=True)
            input.args = _with_actor(input.args, "by", proof.principal())
            super().handle_update_validator(input)

        async def handle_update_handler(self, input: HandleUpdateInput) -> Any:
            # the validator verified it (validators do not run on replay: trust what was accepted)
            proof = read_proof(input.headers)
            if proof is None:
                raise ApplicationError("refused: no proof of identity", type="Unauthenticated", non_retryable=True)
            self._spend(input.update, proof)
            input.args = _with_actor(input.args, "by", proof.principal())
            return await super().handle_update_handler(input)

    return _Inbound


def _json_payload(value: Any) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(value).encode())


def _read_json(p: Payload | None) -> Any:
    if p is None:
        return None
    try:
        return json.loads(p.data)
    except ValueError:
        return None


def _refused(handler: str, args: Sequence[Any], problem: str) -> None:
    """A signal cannot answer its sender: the workflow records it as ignored, if it can."""
    typed = getattr(args[0], "by", None) if args else None
    hook = getattr(workflow.instance(), "refused_command", None)
    if callable(hook):
        hook(handler, typed, problem)
    else:
        workflow.logger.warning("Ignored %s: %s", handler, problem)


def client_interceptors(via: str | None = OPERATOR_VIA) -> list[Any]:
    """Every CodeBlue client's interceptors: identity (and so its workers' verification)."""
    try:
        return [IdentityInterceptor.from_env(via=via)]
    except IdentityKeyError as e:
        raise ConfigError(str(e)) from None
