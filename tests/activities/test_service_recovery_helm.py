"""helm_upgrade / helm_preflight / helm_revision_values through the helm stand-in, and the
last-known-good rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from temporalio.exceptions import ApplicationError

from activities.helm import HelmActivities
from domain.cluster import HelmRevision
from domain.service_recovery import (
    HelmPreflightRequest,
    HelmUpgradeRequest,
    HelmValuesQuery,
    choose_fallback_revision,
)
from tests.support.helm import HELM, NS, RELEASE, REPO, ROOT

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def rev(n: int, ago: timedelta, status: str = "superseded", desc: str = "Upgrade complete") -> HelmRevision:
    return HelmRevision(revision=n, updated=(NOW - ago).strftime("%Y-%m-%dT%H:%M:%SZ"), status=status,
                        chart="healthcare-platform-1.4.2", description=desc)


def test_known_good_skips_a_revision_rolled_back_within_the_window():
    history = [
        rev(10, 200 * HOUR),
        rev(11, 2 * HOUR),  # rolled back 10 minutes later
        rev(12, 2 * HOUR - timedelta(minutes=10), "deployed", "Rollback to 10"),
    ]
    c = choose_fallback_revision(history, NOW, HOUR)
    assert c.revision == 12
    # a rollback that came only minutes ago: 12 is not proven yet, 11 was rolled back
    history[1:] = [rev(11, timedelta(minutes=20)), rev(12, timedelta(minutes=5), "deployed", "Rollback to 10")]
    c = choose_fallback_revision(history, NOW, HOUR)
    assert c.revision == 10
    assert [r.split(",")[0] for r in c.reasons] == ["revision 12: skipped", "revision 11: skipped", "revision 10: chosen"]
    assert "rolled back by revision 12 after 15m (window 1h00m)" in c.reasons[1]
    # rolled back only after the window: 11 had proven itself (the window is configurable)
    history[1:] = [rev(11, 5 * HOUR), rev(12, timedelta(minutes=5), "deployed", "Rollback to 10")]
    assert choose_fallback_revision(history, NOW, HOUR).revision == 11
    assert choose_fallback_revision(history, NOW, 6 * HOUR).revision == 10


def test_known_good_skips_failed_and_reports_none():
    c = choose_fallback_revision([rev(1, 3 * HOUR, "failed"), rev(2, timedelta(minutes=1), "deployed")], NOW, HOUR)
    assert c.revision is None and c.reasons[-1] == "no revision qualifies"


@pytest.fixture
def chart(tmp_path):
    d = tmp_path / "healthcare-platform"
    d.mkdir()
    (d / "Chart.yaml").write_text("apiVersion: v2\nname: healthcare-platform\nversion: 1.4.2\n")
    return str(d)


async def test_preflight_upgrade_is_idempotent_and_tags_are_read_back(cluster, helm, chart):
    cluster.add_deployment("api-gateway", f"{REPO}:v1.4.1")
    await cluster.seed([{"revision": 1, "image_tag": "v1.4.1"}])
    pre = await helm.helm_preflight(HelmPreflightRequest(release=RELEASE, namespace=NS, chart=chart))
    assert (pre.current_revision, pre.current_tag, pre.current_status) == (1, "v1.4.1", "deployed")
    assert "Chart.yaml present" in pre.chart_detail

    req = HelmUpgradeRequest(release=RELEASE, namespace=NS, chart=chart, image_tag="v1.5.1", from_revision=1,
                             marker="codeblue INC-1: upgrade to v1.5.1", timeout_seconds=20)
    res = await helm.helm_upgrade(req)
    assert (res.new_revision, res.already_done) == (2, False)
    assert cluster.image("api-gateway") == f"{REPO}:v1.5.1"
    again = await helm.helm_upgrade(req)  # a retry after the worker died: not repeated
    assert (again.new_revision, again.already_done) == (2, True)
    assert len(cluster.stored_history()) == 2
    vals = await helm.helm_revision_values(HelmValuesQuery(release=RELEASE, namespace=NS, revision=1))
    assert (vals.revision, vals.image_tag) == (1, "v1.4.1")


async def test_preflight_errors_are_clear_and_not_retryable(cluster, helm, chart, tmp_path):
    with pytest.raises(ApplicationError) as ei:
        await helm.helm_preflight(HelmPreflightRequest(release="nope", namespace=NS, chart=chart))
    assert ei.value.type == "NotFound" and ei.value.non_retryable
    assert ei.value.message == "release nope not found in namespace healthcare-prod (helm history failed: Error: release: not found)"

    with pytest.raises(ApplicationError) as ei:
        await helm.helm_preflight(HelmPreflightRequest(release=RELEASE, namespace=NS, chart=str(tmp_path / "missing")))
    assert ei.value.type == "ChartNotFound" and ei.value.non_retryable

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:9\n"
        "users:\n- name: u\n  user: {}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n"
    )
    down = HelmActivities(HELM, env={"KUBECONFIG": str(kubeconfig), "PYTHONPATH": str(ROOT)})
    with pytest.raises(ApplicationError) as ei:
        await down.helm_preflight(HelmPreflightRequest(release=RELEASE, namespace=NS, chart=chart))
    assert ei.value.type == "ClusterUnreachable" and ei.value.non_retryable
    assert "Kubernetes cluster unreachable" in ei.value.message


async def test_upgrade_that_never_becomes_ready_times_out(cluster, helm, chart):
    cluster.controller = False
    cluster.add_deployment("api-gateway", f"{REPO}:v1.4.1")
    await cluster.seed([{"revision": 1, "image_tag": "v1.4.1"}])
    with pytest.raises(ApplicationError) as ei:
        await helm.helm_upgrade(HelmUpgradeRequest(release=RELEASE, namespace=NS, chart=chart, image_tag="v9",
                                                   from_revision=1, marker="m", timeout_seconds=1))
    assert ei.value.type == "RolloutTimeout"
    assert cluster.stored_history()[-1]["status"] == "failed"


def test_tag_cannot_smuggle_extra_values():
    with pytest.raises(ValueError):
        HelmUpgradeRequest(release=RELEASE, namespace=NS, chart="c", image_tag="v1,image.repository=evil",
                           from_revision=1, marker="m")
