"""`Action.params` stays a dict on the wire; the per-kind models must read every dict a
builder writes and every one a committed history carries (a replaying workflow validates it)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from domain.action_params import (
    CacheFlushParams,
    DbCutoverParams,
    PlaybookParams,
    RolloutRestartParams,
    ScaleUpParams,
)
from domain.incident import ACTION_PARAMS, Action, ActionKind
from tests.support.paths import HISTORIES


def _payload_values(node: Any) -> Iterator[Any]:
    """Every JSON payload in a history, decoded."""
    if isinstance(node, dict):
        enc = (node.get("metadata") or {}).get("encoding")
        if enc and base64.b64decode(enc) == b"json/plain" and "data" in node:
            yield json.loads(base64.b64decode(node["data"]))
        for v in node.values():
            yield from _payload_values(v)
    elif isinstance(node, list):
        for v in node:
            yield from _payload_values(v)


def _actions(node: Any) -> Iterator[dict[str, Any]]:
    kinds = {k.value for k in ActionKind}
    if isinstance(node, dict):
        if node.get("kind") in kinds and isinstance(node.get("params"), dict) and "id" in node:
            yield node
        for v in node.values():
            yield from _actions(v)
    elif isinstance(node, list):
        for v in node:
            yield from _actions(v)


def test_every_kind_has_a_model() -> None:
    assert set(ACTION_PARAMS) == set(ActionKind)


def test_histories_params_validate() -> None:
    seen = 0
    for path in sorted(HISTORIES.glob("*/*.json")):
        for value in _payload_values(json.loads(path.read_text())):
            for raw in _actions(value):
                act = Action.model_validate(raw)
                act.params_as(ACTION_PARAMS[act.kind])
                seen += 1
    assert seen > 0, "no action found in the committed histories: the walk above is wrong"


def test_builders_dicts_validate() -> None:
    # the shapes the playbooks write (workflows/*.py, domain/assessment.py)
    restart = Action(id="restart", kind=ActionKind.ROLLOUT_RESTART, reason="r",
                     params={"deployment": "gw", "connection_errors": 3, "pool_exhausted": None})
    assert restart.params_as(RolloutRestartParams).namespace is None
    flush = Action(id="flushall", kind=ActionKind.CACHE_FLUSH, reason="r", params={"cluster": "c", "async": True})
    f = flush.params_as(CacheFlushParams)
    assert f.use_async and f.pattern is None
    cut = Action(id="cutover", kind=ActionKind.DB_CUTOVER, reason="r",
                 params={"endpoint": "h:5432", "connect_to": "h:5432", "verification": "ok", "sanity": None})
    assert cut.params_as(DbCutoverParams).connect_to == "h:5432"
    pb = Action(id="restore", kind=ActionKind.PLAYBOOK, reason="r",
                params={"workflow": "DatabaseRestoreWorkflow", "workflow_id": "x", "source": "db", "snapshot": "s"})
    assert pb.params_as(PlaybookParams).workflow == "DatabaseRestoreWorkflow"
    # older proposals had no from_replicas; unknown keys are kept, never an error
    scale = Action(id="scale", kind=ActionKind.SCALE_UP, reason="r",
                   params={"namespace": "n", "deployment": "gw", "replicas": 4, "later_field": 1})
    s = scale.params_as(ScaleUpParams)
    assert (s.replicas, s.from_replicas) == (4, None)
    assert scale.params == {"namespace": "n", "deployment": "gw", "replicas": 4, "later_field": 1}


def test_another_kinds_model_is_a_bug() -> None:
    act = Action(id="scale", kind=ActionKind.SCALE_UP, reason="r",
                 params={"namespace": "n", "deployment": "gw", "replicas": 4})
    with pytest.raises(TypeError):
        act.params_as(RolloutRestartParams)
