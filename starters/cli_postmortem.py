"""`codeblue postmortem ...` and `codeblue action-item ...`: the post-incident commands.

    codeblue postmortem ID                  # the draft in Markdown (pipe it to a file)
    codeblue postmortem start ID            # start post-incident work for a resolved incident
    codeblue postmortem held ID --by NAME   # the post-mortem took place
    codeblue action-item add ID --owner NAME --due YYYY-MM-DD TEXT
    codeblue action-item done ID ITEM [--by NAME] [--defer --reason WHY]
"""

from __future__ import annotations

from datetime import date

import typer

from domain.config import TemporalSettings
from starters.cli_common import (
    acting_client,
    api_client,
    command_cmd,
    fail,
    first_error,
    out,
    run,
    run_sync,
    temporal_client,
)

ACTIONS = ("held", "start")

action_item_app = typer.Typer(help="Post-mortem action items: add, complete or (IC) defer.", no_args_is_help=True)


def postmortem(
    args: list[str] = typer.Argument(..., metavar="ID | held ID | start ID", help="An incident ID, or `held ID`, or `start ID`."),
    by: str | None = typer.Option(None, "--by", help="Who held it (for `held`)."),
    notes: str = typer.Option("", "--notes", help="Notes for `held`."),
    commander: str | None = typer.Option(None, "--commander", help="IC for `start` (default: the incident's)."),
) -> None:
    """Print the post-mortem draft; `held ID --by NAME` marks it held; `start ID` starts tracking."""
    from starters import post_incident as pm

    if args[0] in ACTIONS:
        if len(args) != 2:
            fail(f"usage: codeblue postmortem {args[0]} ID")
        verb, incident_id = args
    elif len(args) == 1:
        verb, incident_id = "draft", args[0]
    else:
        fail("usage: codeblue postmortem ID | held ID --by NAME | start ID")

    if verb == "held":
        from domain.post_incident import PostmortemHeld

        command_cmd("postmortem held",
                    lambda api, _: api.command(f"/incidents/{incident_id}/postmortem/held", {"notes": notes}),
                    lambda c, who: pm.held(c, incident_id, PostmortemHeld(by=who, notes=notes)), by)
        return
    api = api_client()
    if api is not None:
        def via_api() -> None:
            if verb == "draft":
                print(api.postmortem(incident_id))
            else:
                api.actor(by)
                out.print(api.start_procedure("postmortem", {"incident_id": incident_id, "commander": commander})["workflow_id"])

        run_sync(via_api)
        return

    async def go() -> None:
        if verb == "draft":
            print(await pm.draft(await temporal_client(), incident_id))
        else:
            h = await pm.start(await acting_client("postmortem start"), incident_id,
                               TemporalSettings.from_env().task_queue, commander)
            out.print(h.id)

    run(go)


@action_item_app.command("add")
def action_item_add(
    incident_id: str,
    text: list[str] = typer.Argument(..., help="What must be done."),
    owner: str = typer.Option(..., "--owner"),
    due: str = typer.Option(..., "--due", help="YYYY-MM-DD"),
    by: str | None = typer.Option(None, "--by"),
) -> None:
    """Add an action item with an owner and a due date; prints its ID (AI-n)."""
    from domain.post_incident import ActionItem, NewActionItem
    from starters import post_incident as pm

    try:
        due_date = date.fromisoformat(due)
    except ValueError:
        fail(f"--due: {due!r} is not a date (YYYY-MM-DD)")
    try:
        n = NewActionItem(text=" ".join(text), owner=owner, due=due_date, by=by or "api")
    except ValueError as e:
        fail(first_error(e))

    def line(item: ActionItem) -> str:
        return f"{item.id}: {item.owner}, due {item.due.isoformat()}"

    async def direct(c, who: str) -> str:
        return line(await pm.add_item(c, incident_id, n.model_copy(update={"by": who})))

    command_cmd("action-item add", lambda api, _: line(ActionItem.model_validate(api.call(
        "POST", f"/incidents/{incident_id}/action-items", {"text": n.text, "owner": owner, "due": due}))), direct, by)


@action_item_app.command("done")
def action_item_done(
    incident_id: str,
    item: str,
    by: str | None = typer.Option(None, "--by"),
    defer: bool = typer.Option(False, "--defer", help="Defer instead of done (incident commander only)."),
    reason: str | None = typer.Option(None, "--reason", help="Why it is deferred."),
) -> None:
    """Mark an action item done, or (IC) deferred with a reason."""
    from domain.post_incident import ActionItem, CloseActionItem
    from starters import post_incident as pm

    async def direct(c, who: str) -> str:
        it = await pm.close_item(c, incident_id, CloseActionItem(item_id=item, by=who, defer=defer, reason=reason))
        return f"{it.id}: {it.state.value}"

    def via_api(api, _) -> str:
        it = ActionItem.model_validate(api.call("POST", f"/incidents/{incident_id}/action-items/{item}/close",
                                                {"defer": defer, "reason": reason}))
        return f"{it.id}: {it.state.value}"

    command_cmd("action-item done", via_api, direct, by)


def register(app: typer.Typer) -> None:
    app.command("postmortem")(postmortem)
    app.add_typer(action_item_app, name="action-item")
