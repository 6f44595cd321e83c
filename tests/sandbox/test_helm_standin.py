"""The helm stand-in, driven through HelmActivities, against a bare kmock Kubernetes emulator."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.helm import HelmActivities
from domain.cluster import HelmQuery, HelmRollbackRequest
from domain.helm_time import parse_helm_time
from sandbox.helm_cli import replace_image_tag
from tests.support.activity import attempt
from tests.support.helm import CHART, HELM, NS, RELEASE, REPO, ROOT
from tests.support.polling import until


def scenario_revisions() -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        {"revision": 11, "image_tag": "v1.4.1", "updated": now - timedelta(days=3), "app_version": "1.4.1"},
        {"revision": 12, "image_tag": "v1.4.2", "updated": now - timedelta(minutes=12), "app_version": "1.4.2"},
    ]


def test_replace_image_tag_keeps_repository():
    assert replace_image_tag(f"{REPO}:v1.4.2", "v1.4.1") == f"{REPO}:v1.4.1"
    assert replace_image_tag("nginx", "1.27") == "nginx:1.27"
    assert replace_image_tag("localhost:5000/app@sha256:abcd", "v2") == "localhost:5000/app:v2"


async def test_history_of_a_seeded_release(cluster, helm):
    await cluster.seed(scenario_revisions())
    history = await ActivityEnvironment().run(helm.helm_history, HelmQuery(release=RELEASE, namespace=NS))
    assert history.release == RELEASE
    assert [(r.revision, r.status, r.chart, r.app_version) for r in history.revisions] == [
        (11, "superseded", CHART, "1.4.1"),
        (12, "deployed", CHART, "1.4.2"),
    ]
    assert history.current is not None and history.current.revision == 12
    first, last = parse_helm_time(history.revisions[0].updated), parse_helm_time(history.revisions[-1].updated)
    assert first is not None and last is not None
    age = datetime.now(UTC) - last
    assert timedelta(minutes=11) < age < timedelta(minutes=13)
    assert datetime.now(UTC) - first > timedelta(days=2)


async def test_rollback_patches_image_and_is_idempotent(cluster, helm):
    cluster.add_deployment("api-gateway", f"{REPO}:v1.4.2")
    cluster.add_deployment("billing", "registry.example.com/billing:v9", release="other-release")
    await cluster.seed(scenario_revisions())

    req = HelmRollbackRequest(release=RELEASE, namespace=NS, from_revision=12, to_revision=11, timeout_seconds=20)
    result = await ActivityEnvironment().run(helm.helm_rollback, req)
    assert (result.from_revision, result.to_revision, result.new_revision, result.already_done) == (12, 11, 13, False)

    assert cluster.image("api-gateway") == f"{REPO}:v1.4.1"
    assert cluster.deployment("api-gateway")["spec"]["template"]["spec"]["containers"][0]["resources"] == {
        "limits": {"memory": "512Mi"}
    }
    assert cluster.deployment("api-gateway")["metadata"]["generation"] == 2  # as an API server would
    assert cluster.image("billing") == "registry.example.com/billing:v9"  # not this release

    history = await helm.helm_history(HelmQuery(release=RELEASE, namespace=NS))
    assert [(r.revision, r.status, r.description) for r in history.revisions] == [
        (11, "superseded", "Install complete"),
        (12, "superseded", "Upgrade complete"),
        (13, "deployed", "Rollback to 11"),
    ]
    assert cluster.stored_history()[-1]["image_tag"] == "v1.4.1"

    # Temporal retries the activity (e.g. the worker died after helm finished): nothing new.
    again = await attempt(2).run(helm.helm_rollback, req)
    assert again.already_done and again.new_revision == 13
    assert len(cluster.stored_history()) == 3

    # Compensation: roll back to where it was (12), from the new revision.
    undo = await helm.helm_rollback(
        HelmRollbackRequest(release=RELEASE, namespace=NS, from_revision=13, to_revision=12, timeout_seconds=20)
    )
    assert (undo.new_revision, undo.already_done) == (14, False)
    assert cluster.image("api-gateway") == f"{REPO}:v1.4.2"


async def test_upgrade_then_status_and_history(cluster, helm):
    cluster.add_deployment("api-gateway", f"{REPO}:v1.4.1")
    await cluster.seed([{"revision": 1, "image_tag": "v1.4.1"}])

    rc, out, err = await cluster.helm(
        "upgrade", RELEASE, "./infra/helm/healthcare-platform", "-n", NS, "--set", "image.tag=v1.5.0", "--wait", "--timeout", "10s"
    )
    assert rc == 0, err
    assert "has been upgraded" in out
    assert cluster.image("api-gateway") == f"{REPO}:v1.5.0"

    history = await helm.helm_history(HelmQuery(release=RELEASE, namespace=NS))
    assert [(r.revision, r.status, r.description, r.chart) for r in history.revisions] == [
        (1, "superseded", "Install complete", CHART),
        (2, "deployed", "Upgrade complete", CHART),
    ]

    rc, out, err = await cluster.helm("status", RELEASE, "-n", NS, "-o", "json")
    assert rc == 0, err
    status = json.loads(out)
    assert (status["name"], status["namespace"], status["version"], status["info"]["status"]) == (
        RELEASE, NS, 2, "deployed"
    )

    # Without --wait, no status check at all (helm would not wait either).
    rc, _, err = await cluster.helm("rollback", RELEASE, "-n", NS)
    assert rc == 0, err
    assert cluster.image("api-gateway") == f"{REPO}:v1.4.1"
    assert cluster.stored_history()[-1]["description"] == "Rollback to 1"


async def test_rollback_waits_for_the_rollout(cluster, helm):
    cluster.controller = False
    cluster.add_deployment("api-gateway", f"{REPO}:v1.4.2", ready=False)
    await cluster.seed(scenario_revisions())
    req = HelmRollbackRequest(release=RELEASE, namespace=NS, from_revision=12, to_revision=11, timeout_seconds=20)
    task = asyncio.create_task(helm.helm_rollback(req))

    # Play the Deployment controller: once the new spec is there, report it rolled out.
    await until(lambda: cluster.image("api-gateway").endswith(":v1.4.1")
                and cluster.deployment("api-gateway")["metadata"]["generation"] == 2,
                what="the rollback to patch the deployment", timeout=10)
    await asyncio.sleep(0.6)
    assert not task.done(), "returned before the deployment was ready"
    assert cluster.stored_history()[-1]["status"] == "pending-rollback"
    cluster.mark_rolled_out("api-gateway")

    result = await asyncio.wait_for(task, timeout=20)
    assert result.new_revision == 13 and not result.already_done
    assert cluster.stored_history()[-1]["status"] == "deployed"


async def test_rollback_wait_timeout_fails_the_revision(cluster, helm):
    cluster.controller = False  # nothing ever rolls the new spec out
    cluster.add_deployment("api-gateway", f"{REPO}:v1.4.2")
    await cluster.seed(scenario_revisions())
    req = HelmRollbackRequest(release=RELEASE, namespace=NS, from_revision=12, to_revision=11, timeout_seconds=1)
    with pytest.raises(ApplicationError) as ei:
        await helm.helm_rollback(req)
    assert ei.value.type == "RolloutTimeout"
    assert ei.value.message == "helm rollback failed: Error: timed out waiting for the condition"
    history = await helm.helm_history(HelmQuery(release=RELEASE, namespace=NS))
    assert [(r.revision, r.status) for r in history.revisions] == [(11, "superseded"), (12, "superseded"), (13, "failed")]
    assert history.revisions[-1].description == 'Rollback "healthcare-platform" failed: timed out waiting for the condition'


async def test_unknown_release_is_not_found_and_not_retryable(cluster, helm):
    with pytest.raises(ApplicationError) as ei:
        await helm.helm_history(HelmQuery(release="nope", namespace=NS))
    assert ei.value.type == "NotFound" and ei.value.non_retryable
    assert ei.value.message == "helm history failed: Error: release: not found"

    with pytest.raises(ApplicationError) as ei:
        await helm.helm_rollback(HelmRollbackRequest(release="nope", namespace=NS, from_revision=2, to_revision=1))
    assert ei.value.type == "NotFound" and ei.value.non_retryable

    rc, out, err = await cluster.helm("rollback", "nope", "1", "-n", NS, "--wait", "--timeout", "5s")
    assert (rc, out, err) == (1, "", "Error: release: not found\n")


async def test_rollback_to_a_missing_revision_is_not_retryable(cluster, helm):
    await cluster.seed(scenario_revisions())
    with pytest.raises(ApplicationError) as ei:
        await helm.helm_rollback(HelmRollbackRequest(release=RELEASE, namespace=NS, from_revision=12, to_revision=3))
    assert ei.value.type == "InvalidRevision" and ei.value.non_retryable
    assert len(cluster.stored_history()) == 2


async def test_missing_helm_binary_is_not_retryable():
    acts = HelmActivities(["/nonexistent/bin/helm"])
    with pytest.raises(ApplicationError) as ei:
        await acts.helm_history(HelmQuery(release=RELEASE, namespace=NS))
    assert ei.value.type == "HelmNotFound" and ei.value.non_retryable


async def test_unreachable_cluster_is_retryable_with_one_line_error(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:9\n"
        "users:\n- name: u\n  user: {}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n"
    )
    acts = HelmActivities(HELM, env={"KUBECONFIG": str(kubeconfig), "PYTHONPATH": str(ROOT)})
    with pytest.raises(ApplicationError) as ei:
        await acts.helm_history(HelmQuery(release=RELEASE, namespace=NS))
    assert not ei.value.non_retryable and ei.value.type == "HelmError"
    assert "\n" not in ei.value.message
    assert ei.value.message.startswith("helm history failed: Error: Kubernetes cluster unreachable: ")
    assert "Connection refused" in ei.value.message


def test_the_standin_reconnects_when_the_cluster_drops_a_kept_alive_connection():
    """The API server may close an idle kept-alive connection without saying so; the next call
    goes out again on a new one instead of failing the helm command."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from sandbox.helm_cli import KubeApiError, KubeRest

    class Once(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive unless told otherwise

        def do_GET(self) -> None:
            if self.path == "/missing":
                self.send_error(404, "Not Found")
                return
            body = json.dumps({"path": self.path}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True  # dropped silently: no "Connection: close" was sent

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Once)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api = KubeRest(f"http://127.0.0.1:{server.server_port}")
        assert api.call("GET", "/a") == {"path": "/a"}
        assert api.call("GET", "/b") == {"path": "/b"}  # the first connection is gone by now
        with pytest.raises(KubeApiError) as e:
            api.call("GET", "/missing")
        assert e.value.status == 404
        api.close()
    finally:
        server.shutdown()
