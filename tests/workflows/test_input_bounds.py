"""Every field of every signal and update a CodeBlue workflow accepts has a length limit: an
oversized command fails to decode and is dropped (signal) or rejected (update), never
written into the incident's state."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from workflows.registry import WORKFLOWS


def _bounded(info: FieldInfo) -> bool:
    return any(getattr(m, "max_length", None) is not None for m in info.metadata)


def _unbounded(model: type[BaseModel], seen: set[type], where: str) -> list[str]:
    if model in seen:
        return []
    seen.add(model)
    out: list[str] = []
    for name, info in model.model_fields.items():
        out += _check(info.annotation, info, seen, f"{where}.{name}")
    return out


def _check(tp: Any, info: FieldInfo | None, seen: set[type], where: str) -> list[str]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return [p for a in typing.get_args(tp) if a is not type(None) for p in _check(a, info, seen, where)]
    if origin is typing.Annotated:
        return _check(typing.get_args(tp)[0], info, seen, where)
    if tp is str or origin in (list, dict, set, tuple):
        problems = [] if info is not None and _bounded(info) else [where]
        for a in typing.get_args(tp):
            if isinstance(a, type) and issubclass(a, BaseModel):
                problems += _unbounded(a, seen, f"{where}[]")
            elif a is str and origin is list:
                problems.append(f"{where}[] (its items)")
        return problems
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return _unbounded(tp, seen, where)
    return []


def _handler_models() -> dict[str, type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    for w in WORKFLOWS:
        defn = getattr(w, "__temporal_workflow_definition")
        for kind, handlers in (("signal", defn.signals), ("update", defn.updates)):
            for name, h in handlers.items():
                for t in h.arg_types or []:
                    if isinstance(t, type) and issubclass(t, BaseModel):
                        found[f"{w.__name__}.{kind} {name}"] = t
    return found


def test_every_signal_and_update_field_has_a_length_limit():
    models = _handler_models()
    assert len(models) >= 20, sorted(models)  # the walk found the handlers
    problems = sorted({p for where, m in models.items() for p in _unbounded(m, set(), m.__name__)})
    assert problems == [], problems
