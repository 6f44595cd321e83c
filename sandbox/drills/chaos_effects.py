"""What each fault-drill scenario must have done exactly once, counted on the sandbox (sandbox.drills.chaos)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


# ====================================================================== expected side effects
@dataclass
class Effect:
    what: str
    expected: int
    seen: int

    @property
    def ok(self) -> bool:
        return self.seen == self.expected


def _notification_effects(sb: Any, expected_keys: list[tuple[str, str]], steps: Counter, report: Any) -> list[Effect]:
    """Each expected (channel, Idempotency-Key) applied once, nothing else; one Slack proposal
    message per action of the report once its workflow posts proposals (`slack_post_proposals`
    steps; none when it posts none). A key ending in `*` is a prefix (a change event's key ends
    with the time of the change)."""
    from sandbox.effects import deliveries, slack_posts

    d = deliveries(sb.receiver)
    per_key = d["applied_per_key"]

    def matches(expected: tuple[str, str], seen: tuple[str, str]) -> bool:
        (ch, key), (seen_ch, seen_key) = expected, seen
        return ch == seen_ch and (seen_key.startswith(key[:-1]) if key.endswith("*") else seen_key == key)

    out = [Effect(f"{ch} {key}", 1, sum(n for k, n in per_key.items() if matches((ch, key), k)))
           for ch, key in expected_keys]
    others = sum(n for k, n in per_key.items() if not any(matches(e, k) for e in expected_keys))
    out.append(Effect("other notifications applied", 0, others))
    posts = slack_posts(sb.receiver)
    proposals = len(getattr(report, "actions", None) or []) if steps.get("slack_post_proposals", 0) else 0
    out.append(Effect("Slack proposal messages (one per proposal posted)", proposals, sum(posts.values())))
    out.append(Effect("Slack proposal messages posted twice", 0, sum(n - 1 for n in posts.values() if n > 1)))
    return out


def bad_deploy_effects(sb: Any, log: Any, report: Any, steps: Counter) -> list[Effect]:
    """Rollback of release healthcare-platform 12 -> 11, approved by the IC; scale and restart
    rejected. One incident: one page (and its resolve), one change event (the rollback), one
    status page incident (investigating, identified, monitoring, resolved), three stakeholder
    messages, the incident channel opened (in the Slack stand-in: the sandbox has a bot token)
    and closed (the webhook message)."""
    from domain.slack import channel_name
    from sandbox.effects import deployment_changes, helm_revisions, slack_channels
    from sandbox.scenarios import GATEWAY, NAMESPACE, RELEASE

    iid = report.incident_id
    revisions = helm_revisions(sb.cluster, NAMESPACE, RELEASE)
    gw = deployment_changes(log, NAMESPACE, GATEWAY)
    portal = deployment_changes(log, NAMESPACE, "patient-portal")
    channels, bookmarks = slack_channels(sb.receiver, channel_name(iid, sb.config.slack.channel_prefix))
    return [
        Effect("helm revisions 'Rollback to 11'", 1, sum(1 for r in revisions if r.get("description") == "Rollback to 11")),
        Effect("helm revisions created (seeded 10-12)", 1, len(revisions) - 3),
        Effect("api-gateway image changes (the rollback)", 1, gw["image_changes"]),
        Effect("patient-portal image changes (the rollback)", 1, portal["image_changes"]),
        Effect("api-gateway scale patches", 0, gw["scales"]),
        Effect("api-gateway restart patches", 0, gw["restarts"]),
        Effect("status page incidents", 1, len(sb.receiver.incidents)),
        Effect("Slack incident channels created", 1, channels),
        Effect("Slack incident channel bookmarks", 1, bookmarks),
        *_notification_effects(sb, [
            ("pagerduty", f"{iid}:on_call:open"),
            ("pagerduty", f"{iid}:on_call:open:resolve"),  # the page resolved with the incident
            ("pagerduty", f"{iid}:change:rollback:*"),  # the rollback on the service's PagerDuty timeline
            ("statuspage", f"statuspage:{iid}:investigating"),
            ("statuspage", f"statuspage:{iid}:identified"),
            ("statuspage", f"statuspage:{iid}:monitoring"),
            ("statuspage", f"statuspage:{iid}:resolved"),
            ("slack", f"{iid}:stakeholders:initial"),
            ("slack", f"{iid}:stakeholders:final"),
            ("slack", f"{iid}:stakeholders:postincident"),
            ("webhook", f"{iid}:channel_close"),
        ], steps, report),
    ]


def db_outage_effects(sb: Any, log: Any, report: Any, steps: Counter) -> list[Effect]:
    """Restore healthcare-prod-snapshot-latest to healthcare-prod-restored, back up and point
    the database Secret at it, restart api-gateway once; nothing paged or posted, two change
    events (the restore and the cutover)."""
    from domain.database_restore import INCIDENT_TAG
    from sandbox.aws_rds_seed import rds_client
    from sandbox.effects import created, deployment_changes, secret_key_changes
    from sandbox.scenario_database_restore import DB_KEY, DB_SECRET
    from sandbox.scenarios import GATEWAY, NAMESPACE

    iid = report.incident_id
    rds = rds_client(sb.extras["aws"])
    instances = rds.describe_db_instances()["DBInstances"]
    ours = [i for i in instances
            if {"Key": INCIDENT_TAG, "Value": iid} in rds.list_tags_for_resource(ResourceName=i["DBInstanceArn"])["TagList"]]
    gw = deployment_changes(log, NAMESPACE, GATEWAY)
    return [
        Effect("RDS instances restored for the incident", 1, len(ours)),
        Effect("RDS instances besides healthcare-prod", 1, sum(1 for i in instances if i["DBInstanceIdentifier"] != "healthcare-prod")),
        Effect("database Secret backups created", 1, len(created(log, "secrets", NAMESPACE, f"{DB_SECRET}-codeblue-backup-"))),
        Effect(f"{DB_SECRET} {DB_KEY} changes (the cutover)", 1, secret_key_changes(log, NAMESPACE, DB_SECRET, DB_KEY)),
        Effect("api-gateway restart patches", 1, gw["restarts"]),
        Effect("api-gateway scale patches", 0, gw["scales"]),
        Effect("api-gateway image changes", 0, gw["image_changes"]),
        *_notification_effects(sb, [("pagerduty", f"{iid}:change:restore:*"),
                                    ("pagerduty", f"{iid}:change:cutover:*")], steps, report),
    ]


EXPECTED_EFFECTS: dict[str, Callable[[Any, Any, Any, Counter], list[Effect]]] = {
    "bad-deploy": bad_deploy_effects,
    "db-outage": db_outage_effects,
}
# the activity after which a scenario's workflows have nothing left to change
SETTLED_AFTER = {"bad-deploy": "schedule_postmortem", "db-outage": None}
