"""The refusal every mutating activity gives when production is no longer what the IC
approved acting on: non-retryable, "nothing was changed", and the facts as they are now
(details[0]) for the workflow to propose the step again."""

from __future__ import annotations

from typing import Any

from temporalio.exceptions import ApplicationError

from domain.incident import MOVED_TYPES


def moved(kind: str, what: str, facts: dict[str, Any]) -> ApplicationError:
    assert kind in MOVED_TYPES, kind
    return ApplicationError(f"{what}; nothing was changed", facts, type=kind, non_retryable=True)
