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

Children and continued runs are trusted (only a workflow on a worker can start them).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from pydantic import BaseModel, ValidationError
from temporalio import client as tclient
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ExecuteWorkflowInput,
    HandleSignalInput,
    HandleUpdateInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from domain.config import ConfigError
from domain.identity import (
    HEADER,
    OPERATOR_VIA,
    UNVERIFIED,
    IdentityKeyError,
    Keyring,
    Principal,
    Proof,
    keyring_from_env,
)

# Handlers a person sends: each needs a proof. add_alert(s) come from the API's alert
# ingestion and reopen from the post-incident workflow; they decide nothing.
HUMAN_HANDLERS = frozenset({
    "approve", "reject", "decide", "decide_many", "resolve", "assign_commander", "escalate", "add_note",
    "cancel_restore", "resolve_memory", "confirm_flush",
    "postmortem_held", "add_action_item", "complete_action_item",
})
START = "start:"

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
                      args: Sequence[Any], field: str) -> Mapping[str, Payload]:
        if not self.keyring.can_sign:
            return headers
        who = self.principal_for(args, field)
        if who is None:
            return headers
        proof = self.keyring.sign(workflow_id, handler, args, who, time.time())
        return {**headers, HEADER: proof_payload(proof)}

    # -- worker side ------------------------------------------------------------------
    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
        return self._workflow_class


class _Outbound(tclient.OutboundInterceptor):
    def __init__(self, next: tclient.OutboundInterceptor, owner: IdentityInterceptor) -> None:
        super().__init__(next)
        self.owner = owner

    async def start_workflow(self, input: tclient.StartWorkflowInput) -> Any:
        input.headers = self.owner.proof_headers(input.headers, input.id, START + input.workflow, input.args, "requested_by")
        return await super().start_workflow(input)

    async def signal_workflow(self, input: tclient.SignalWorkflowInput) -> None:
        if input.signal in HUMAN_HANDLERS:
            input.headers = self.owner.proof_headers(input.headers, input.id, input.signal, input.args, "by")
        await super().signal_workflow(input)

    async def start_workflow_update(self, input: tclient.StartWorkflowUpdateInput) -> Any:
        if input.update in HUMAN_HANDLERS:
            input.headers = self.owner.proof_headers(input.headers, input.id, input.update, input.args, "by")
        return await super().start_workflow_update(input)


def _with_actor(args: Sequence[Any], field: str, who: Principal) -> list[Any]:
    first = args[0]
    if isinstance(first, BaseModel) and field in type(first).model_fields:
        return [first.model_copy(update={field: who.display}), *args[1:]]
    return list(args)


def _inbound_class(keyring: Keyring) -> type[WorkflowInboundInterceptor]:
    """A class per keyring: the keys live in this closure, outside every payload."""

    class _Inbound(WorkflowInboundInterceptor):
        def __init__(self, next: WorkflowInboundInterceptor) -> None:
            super().__init__(next)
            # MACs already applied in this run: a proof counts once (a few hundred bytes per command)
            self._used: dict[str, float] = {}

        def _check(self, headers: Mapping[str, Payload], handler: str, args: Sequence[Any],
                   fresh: bool = False) -> tuple[Proof | None, str | None]:
            proof = read_proof(headers)
            if proof is None:
                if not keyring.can_sign:
                    return None, "no proof of identity, and this worker has no operator key to check one"
                return None, "no proof of identity: send it through the CodeBlue API or CLI"
            now = workflow.now().timestamp() if fresh else None
            problem = keyring.problem(proof, workflow.info().workflow_id, handler, args, now, keyring.max_age)
            if problem is None and proof.mac in self._used:
                problem = "this proof was already used (a replayed command)"
            return (None, problem) if problem else (proof, None)

        def _spend(self, proof: Proof) -> None:
            self._used[proof.mac] = proof.issued_at

        async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
            info = workflow.info()
            first = input.args[0] if input.args else None
            if (info.parent is None and info.continued_run_id is None
                    and isinstance(first, BaseModel) and "requested_by" in type(first).model_fields):
                proof, problem = self._check(input.headers, START + info.workflow_type, input.args)
                # the workflow object already holds this very input: mutate it in place
                # (Any: whichever input model it is, its fields are checked through model_fields)
                model: Any = first
                if proof is None:
                    model.requested_by = UNVERIFIED
                    if "start_refused" in type(model).model_fields:
                        model.start_refused = problem
                else:
                    who = proof.principal()
                    model.requested_by = who.display
                    if "requested_roles" in type(model).model_fields:
                        model.requested_roles = list(who.roles) + (["admin"] if who.is_admin else [])
                    if "start_refused" in type(model).model_fields:
                        model.start_refused = None
            return await super().execute_workflow(input)

        async def handle_signal(self, input: HandleSignalInput) -> None:
            if input.signal in HUMAN_HANDLERS:
                proof, problem = self._check(input.headers, input.signal, input.args)
                if proof is None:
                    _refused(input.signal, input.args, problem or "refused")
                    return
                self._spend(proof)
                input.args = _with_actor(input.args, "by", proof.principal())
            await super().handle_signal(input)

        def handle_update_validator(self, input: HandleUpdateInput) -> None:
            if input.update in HUMAN_HANDLERS:
                proof, problem = self._check(input.headers, input.update, input.args, fresh=True)
                if proof is None:
                    raise ApplicationError(f"refused: {problem}", type="Unauthenticated", non_retryable=True)
                input.args = _with_actor(input.args, "by", proof.principal())
            super().handle_update_validator(input)

        async def handle_update_handler(self, input: HandleUpdateInput) -> Any:
            if input.update in HUMAN_HANDLERS:
                # the validator verified it (validators do not run on replay: trust what was accepted)
                proof = read_proof(input.headers)
                if proof is not None:
                    self._spend(proof)
                    input.args = _with_actor(input.args, "by", proof.principal())
                else:
                    raise ApplicationError("refused: no proof of identity", type="Unauthenticated", non_retryable=True)
            return await super().handle_update_handler(input)

    return _Inbound


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
