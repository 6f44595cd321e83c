"""`codeblue postmortem ...` and `codeblue action-item ...`: the post-incident commands.

    codeblue postmortem ID                  # the draft in Markdown (pipe it to a file)
    codeblue postmortem start ID            # start post-incident work for a resolved incident
    codeblue postmortem held ID --by NAME   # the post-mortem took place
    codeblue action-item add ID --owner NAME --due YYYY-MM-DD TEXT
    codeblue action-item done ID ITEM [--by NAME] [--defer --reason WHY]
"""

from __future__ import annotations

import os
from datetime import date
from typing import List, Optional

import typer

from domain.config import TemporalSettings

ACTIONS = ("held", "start")

action_item_app = typer.Typer(help="Post-mortem action items: add, complete or (IC) defer.", no_args_is_help=True)


def postmortem(
    args: List[str] = typer.Argument(..., metavar="ID | held ID | start ID", help="An incident ID, or `held ID`, or `start ID`."),
    by: Optional[str] = typer.Option(None, "--by", help="Who held it (for `held`)."),
    notes: str = typer.Option("", "--notes", help="Notes for `held`."),
    commander: Optional[str] = typer.Option(None, "--commander", help="IC for `start` (default: the incident's)."),
) -> None:
    """Print the post-mortem draft; `held ID --by NAME` marks it held; `start ID` starts tracking."""
    from starters import service_postmortem as pm
    from starters.cli import _acting_client, _api, _client, fail, out, run

    if args[0] in ACTIONS:
        if len(args) != 2:
            fail(f"usage: codeblue postmortem {args[0]} ID")
        verb, incident_id = args
    elif len(args) == 1:
        verb, incident_id = "draft", args[0]
    else:
        fail("usage: codeblue postmortem ID | held ID --by NAME | start ID")

    async def go() -> None:
        api = _api() if verb == "draft" else None
        if api is not None:
            print(api.postmortem(incident_id))
            return
        client = await (_client() if verb == "draft" else _acting_client(f"postmortem {verb}"))
        if verb == "draft":
            print(await pm.draft(client, incident_id))
        elif verb == "held":
            from domain.postincident import PostmortemHeld

            if not by:
                fail("--by NAME is required: who held the post-mortem")
            out.print(await pm.held(client, incident_id, PostmortemHeld(by=by, notes=notes)))
        else:
            h = await pm.start(client, incident_id, TemporalSettings.from_env().task_queue, commander)
            out.print(h.id)

    run(go)


@action_item_app.command("add")
def action_item_add(
    incident_id: str,
    text: List[str] = typer.Argument(..., help="What must be done."),
    owner: str = typer.Option(..., "--owner"),
    due: str = typer.Option(..., "--due", help="YYYY-MM-DD"),
    by: str = typer.Option(os.environ.get("USER", "oncall"), "--by"),
) -> None:
    """Add an action item with an owner and a due date; prints its ID (AI-n)."""
    from domain.postincident import NewActionItem
    from starters import service_postmortem as pm
    from starters.cli import _acting_client, _first_error, fail, out, run

    try:
        due_date = date.fromisoformat(due)
    except ValueError:
        fail(f"--due: {due!r} is not a date (YYYY-MM-DD)")
    try:
        n = NewActionItem(text=" ".join(text), owner=owner, due=due_date, by=by)
    except ValueError as e:
        fail(_first_error(e))

    async def go() -> None:
        item = await pm.add_item(await _acting_client("action-item add"), incident_id, n)
        out.print(f"{item.id}: {item.owner}, due {item.due.isoformat()}")

    run(go)


@action_item_app.command("done")
def action_item_done(
    incident_id: str,
    item: str,
    by: str = typer.Option(os.environ.get("USER", "oncall"), "--by"),
    defer: bool = typer.Option(False, "--defer", help="Defer instead of done (incident commander only)."),
    reason: Optional[str] = typer.Option(None, "--reason", help="Why it is deferred."),
) -> None:
    """Mark an action item done, or (IC) deferred with a reason."""
    from domain.postincident import CloseActionItem
    from starters import service_postmortem as pm
    from starters.cli import _acting_client, out, run

    async def go() -> None:
        it = await pm.close_item(await _acting_client("action-item done"), incident_id, CloseActionItem(item_id=item, by=by, defer=defer, reason=reason))
        out.print(f"{it.id}: {it.state.value}")

    run(go)


def register(app: typer.Typer) -> None:
    app.command("postmortem")(postmortem)
    app.add_typer(action_item_app, name="action-item")
