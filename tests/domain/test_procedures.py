"""One descriptor per procedure (domain.procedures): every registry that names procedures
is read from it, or agrees with it here, so adding one is its own modules and one entry."""

from __future__ import annotations

import typing

from domain.blast_radius import GUARD_HANDLERS, GUARD_WORKFLOW
from domain.procedures import BY_WORKFLOW, DECISIONS, HUMAN_HANDLERS, PROCEDURES
from sandbox.drills.runner import DRIVERS
from sandbox.scenarios import SCENARIOS
from starters.api.incidents import reserved_id
from starters.api.procedures import Kind
from starters.cli_playbook import playbook_app
from workflows.registry import WORKFLOWS
from workflows.versioned import VERSIONED


def _handlers(cls: type) -> set[str]:
    defn = getattr(cls, "__temporal_workflow_definition")
    return {n for n in (*defn.signals, *defn.updates) if n}


def test_every_procedure_has_its_workflow_and_every_workflow_a_procedure():
    # besides the procedures, the blast-radius guard (no person starts it or sends it anything)
    assert {w.__name__ for w in WORKFLOWS} == {*BY_WORKFLOW, GUARD_WORKFLOW} == {w.__name__ for w in VERSIONED}
    for w in WORKFLOWS:
        if w.__name__ == GUARD_WORKFLOW:
            assert _handlers(w) == GUARD_HANDLERS
            continue
        p = BY_WORKFLOW[w.__name__]
        run_input = typing.get_type_hints(w.run)["inp"]
        assert run_input is p.input, (p.key, run_input)
        # the commands a person sends it are the ones it has (alert and worker signals aside)
        assert p.handlers <= _handlers(w), (p.key, p.handlers - _handlers(w))
        assert _handlers(w) - p.handlers <= {"add_alert", "add_alerts", "reopen"}, (p.key, _handlers(w) - p.handlers)


def test_the_identity_interceptor_checks_every_procedures_commands():
    from worker.identity import SIGNED_HANDLERS

    assert HUMAN_HANDLERS <= SIGNED_HANDLERS and DECISIONS <= HUMAN_HANDLERS


def test_workflow_ids_derive_from_the_incident_and_no_incident_may_take_one():
    for p in PROCEDURES.values():
        wid = p.workflow_id("INC-7")
        assert wid == f"INC-7{p.suffix}"
        if p.suffix:
            assert reserved_id(wid) and reserved_id(f"{wid}-2"), p.key
    assert not reserved_id("INC-7")


def test_the_api_cli_and_drills_name_the_same_procedures():
    keys = set(PROCEDURES) - {"incident"}
    assert set(typing.get_args(Kind)) == keys
    playbooks = {c.name for c in playbook_app.registered_commands}
    assert {"cache", "memory", "db-connections"} <= playbooks
    for p in PROCEDURES.values():
        if p.scenario is not None:
            assert p.scenario in SCENARIOS, p.key
            assert SCENARIOS[p.scenario].driver in DRIVERS, p.key
