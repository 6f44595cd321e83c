"""Structured logs for production workers: one JSON object per line, with the incident ID
(the workflow ID) on every line that comes from a workflow or an activity, so a log
pipeline can group an incident's lines. Off unless CODEBLUE_LOG_FORMAT=json."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

from temporalio import activity, workflow

_HANDLER_NAME = "codeblue-json"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        wf = getattr(record, "temporal_workflow", None)
        act = getattr(record, "temporal_activity", None)
        if isinstance(wf, dict):
            out.update(incident_id=wf.get("workflow_id"), workflow_type=wf.get("workflow_type"),
                       run_id=wf.get("run_id"), task_queue=wf.get("task_queue"))
        elif isinstance(act, dict):
            out.update(incident_id=act.get("workflow_id"), workflow_type=act.get("workflow_type"),
                       activity_type=act.get("activity_type"), attempt=act.get("attempt"),
                       task_queue=act.get("task_queue"))
        if record.exc_info:
            # the exception's type and first line only: messages may quote request bodies
            exc = record.exc_info[1]
            out["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return json.dumps(out, default=str)


def configure_logging(fmt: str | None = None, level: str | None = None) -> bool:
    """Install the JSON handler on the root logger when the format (default:
    $CODEBLUE_LOG_FORMAT) is `json`; True if it did. Idempotent."""
    fmt = (fmt if fmt is not None else os.environ.get("CODEBLUE_LOG_FORMAT", "")).strip().lower()
    if fmt != "json":
        return False
    root = logging.getLogger()
    if not any(h.get_name() == _HANDLER_NAME for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    root.setLevel((level or os.environ.get("CODEBLUE_LOG_LEVEL") or "INFO").upper())
    # the IDs are fields now; not also a dict appended to every message
    workflow.logger.workflow_info_on_message = False
    activity.logger.activity_info_on_message = False
    return True
