"""The real `kubectl` binary against the sandbox API: what a responder types during a drill.

Each test seeds `healthcare-prod` (sandbox.cluster.SandboxCluster) and runs kubectl with the
cluster's kubeconfig, as `codeblue dev --sandbox` leaves it in `.codeblue/dev.env`. `$KUBECTL`
picks another binary (e.g. an older kubectl) than the one on PATH.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import yaml

from sandbox.cluster import SandboxCluster
from tests.support.cli import stop
from tests.support.polling import until

KUBECTL = os.environ.get("KUBECTL") or shutil.which("kubectl")
NS = "healthcare-prod"
GW = "api-gateway"

pytestmark = pytest.mark.skipif(
    KUBECTL is None,
    reason="kubectl is not installed: scripts/ensure-services.sh installs Debian's kubernetes-client "
           "where a package provides it; nothing is downloaded at test time",
)


class Kubectl:
    def __init__(self, cluster: SandboxCluster, cache_dir: Path) -> None:
        self.cluster = cluster
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        self.env.update(KUBECONFIG=str(cluster.kubeconfig_path), HOME=str(cache_dir))
        self.cache_dir = cache_dir

    async def run(self, *args: str, ok: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """kubectl ARGS in a thread: the sandbox API answers on this test's event loop."""
        argv = [str(KUBECTL), f"--cache-dir={self.cache_dir / 'cache'}", *args]
        proc = await asyncio.to_thread(
            subprocess.run, argv, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if ok:
            assert proc.returncode == 0, f"{argv[2:]} exited {proc.returncode}:\n{proc.stderr}\n{proc.stdout}"
        return proc

    async def out(self, *args: str) -> str:
        return (await self.run(*args)).stdout


@pytest_asyncio.fixture
async def cluster() -> AsyncIterator[SandboxCluster]:
    async with SandboxCluster() as c:
        await c.seed_healthcare_prod(namespace=NS, gateway=GW, tag="v1.4.2")
        yield c


@pytest_asyncio.fixture
async def bad_cluster() -> AsyncIterator[SandboxCluster]:
    """The drill's trouble: the gateway at a crash-looping tag."""
    async with SandboxCluster() as c:
        await c.seed_healthcare_prod(namespace=NS, gateway=GW, tag="v1.5.0", bad_tags={"v1.5.0"})
        yield c


@pytest.fixture
def kubectl(cluster: SandboxCluster, tmp_path: Path) -> Kubectl:
    return Kubectl(cluster, tmp_path)


@pytest.fixture
def bad_kubectl(bad_cluster: SandboxCluster, tmp_path: Path) -> Kubectl:
    return Kubectl(bad_cluster, tmp_path)


def table(text: str) -> tuple[list[str], list[list[str]]]:
    """kubectl's human table: header words and rows split on its column gaps."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    split = [[cell for cell in ln.split("  ") if cell.strip()] for ln in lines]
    return [c.strip() for c in split[0]], [[c.strip() for c in row] for row in split[1:]]


# ---------------------------------------------------------------------------- discovery


async def test_discovery_lists_what_a_responder_uses(kubectl):
    core = json.loads(await kubectl.out("get", "--raw", "/api/v1"))
    assert core["kind"] == "APIResourceList" and core["groupVersion"] == "v1"
    by_name = {r["name"]: r for r in core["resources"]}
    for name in ("pods", "pods/log", "services", "secrets", "events", "namespaces", "endpoints", "configmaps"):
        assert name in by_name, name
    assert by_name["pods/log"]["verbs"] == ["get"] and "shortNames" not in by_name["pods/log"]
    assert by_name["pods"]["shortNames"] == ["po"]

    apps = json.loads(await kubectl.out("get", "--raw", "/apis/apps/v1"))
    assert apps["groupVersion"] == "apps/v1"
    apps_by_name = {r["name"]: r for r in apps["resources"]}
    assert {"deployments", "deployments/scale", "replicasets", "controllerrevisions"} <= set(apps_by_name)
    scale = apps_by_name["deployments/scale"]
    assert (scale["kind"], scale["group"], scale["version"]) == ("Scale", "autoscaling", "v1")

    groups = json.loads(await kubectl.out("get", "--raw", "/apis"))
    preferred = {g["name"]: g["preferredVersion"]["version"] for g in groups["groups"]}
    assert preferred["apps"] == "v1" and preferred["metrics.k8s.io"] == "v1beta1"
    assert preferred["autoscaling"] == "v2"  # GA v2 over v1, as a real server prefers
    metrics = json.loads(await kubectl.out("get", "--raw", "/apis/metrics.k8s.io/v1beta1"))
    assert {r["name"] for r in metrics["resources"]} == {"pods", "nodes"}

    resources = await kubectl.out("api-resources")
    for line in ("pods ", "services ", "deployments ", "secrets ", "events "):
        assert any(ln.startswith(line) for ln in resources.splitlines()), line
    version = await kubectl.run("version", "-o", "json", ok=False)  # skew warnings may make it non-zero
    assert json.loads(version.stdout)["serverVersion"]["gitVersion"] == "v1.33.0"


# ---------------------------------------------------------------------------- kubectl get


async def test_get_pods_prints_the_api_servers_columns(bad_kubectl, bad_cluster):
    header, rows = table(await bad_kubectl.out("get", "pods", "-n", NS))
    assert header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    names = [r[0] for r in rows]
    gateway = [p["metadata"]["name"] for p in bad_cluster.pods(NS, GW)]
    assert len(gateway) == 3 and set(gateway) <= set(names)
    assert names == sorted(names)
    for row in rows:
        if row[0] in gateway:
            assert row[1] == "0/1" and row[2] == "CrashLoopBackOff", row
            assert row[3].split()[0].isdigit() and row[3].split()[0] != "0", row
        else:
            assert row[0].startswith("patient-portal-") and row[1:3] == ["1/1", "Running"], row

    _, wide = table(await bad_kubectl.out("get", "pods", "-n", NS, "-o", "wide"))
    assert all(r[6] == "sandbox-node-1" and r[5].startswith("10.42.") for r in wide)


async def test_get_services_deployments_secrets_and_all_three_at_once(kubectl, cluster):
    header, rows = table(await kubectl.out("get", "services", "-n", NS))
    assert header == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    svc = {r[0]: r for r in rows}
    assert svc[GW][1] == "ClusterIP" and svc[GW][2].startswith("10.43.") and svc[GW][4] == "80/TCP"

    await until(lambda: _ready(kubectl, "3/3"), what="api-gateway 3/3", poll=0.2)  # a kubectl process per look
    header, rows = table(await kubectl.out("get", "deployments", "-n", NS))
    assert header == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    deps = {r[0]: r for r in rows}
    assert deps[GW][1:4] == ["3/3", "3", "3"] and deps["patient-portal"][1] == "2/2"

    header, rows = table(await kubectl.out("get", "secret", "-n", NS))
    assert header == ["NAME", "TYPE", "DATA", "AGE"]
    assert rows[0][:3] == ["healthcare-db-secret", "Opaque", "1"]

    combined = await kubectl.out("get", "pods,svc,deploy", "-n", NS)
    for expected in ("pod/api-gateway-", "service/api-gateway", "service/patient-portal",
                     "deployment.apps/api-gateway", "deployment.apps/patient-portal"):
        assert expected in combined, combined
    assert combined.count("NAME ") == 3  # one table per kind


async def _ready(kubectl: Kubectl, want: str) -> bool:
    out = await kubectl.out("get", "deployment", GW, "-n", NS)
    return table(out)[1][0][1] == want


async def test_get_events_shows_the_controllers_and_the_kubelet(bad_kubectl, bad_cluster):
    async def backoff() -> bool:
        return "BackOff" in await bad_kubectl.out("get", "events", "-n", NS)

    header, rows = table(await bad_kubectl.out("get", "events", "-n", NS))
    assert header == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    reasons = {(r[2], r[3].split("/")[0]) for r in rows}
    assert {("ScalingReplicaSet", "deployment"), ("SuccessfulCreate", "replicaset"), ("Scheduled", "pod"),
            ("Started", "pod")} <= reasons
    assert any(r[3] == f"deployment/{GW}" and "Scaled up replica set api-gateway-" in r[4] for r in rows)
    await until(backoff, what="a BackOff event", poll=0.2)

    only = await bad_kubectl.out("get", "events", "-n", NS, "--field-selector", "involvedObject.kind=Deployment")
    assert {r[3].split("/")[0] for r in table(only)[1]} == {"deployment"}


async def test_get_o_yaml_is_the_stored_object(kubectl, cluster):
    dep = yaml.safe_load(await kubectl.out("get", "deployment", GW, "-n", NS, "-o", "yaml"))
    assert (dep["apiVersion"], dep["kind"], dep["metadata"]["name"]) == ("apps/v1", "Deployment", GW)
    assert dep["spec"]["replicas"] == 3
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v1.4.2")

    pods = yaml.safe_load(await kubectl.out("get", "pods", "-n", NS, "-l", f"app={GW}", "-o", "yaml"))
    assert pods["kind"] == "List" and len(pods["items"]) == 3
    assert all(p["kind"] == "Pod" and p["metadata"]["labels"]["app"] == GW for p in pods["items"])

    secret = json.loads(await kubectl.out("get", "secret", "healthcare-db-secret", "-n", NS, "-o", "json"))
    assert secret["kind"] == "Secret" and "DATABASE_URL" in secret["data"]


# ---------------------------------------------------------------------------- describe, logs, top


async def test_describe_pod_shows_its_owner_containers_and_events(bad_kubectl, bad_cluster):
    pod = bad_cluster.pods(NS, GW)[0]["metadata"]["name"]
    text = await bad_kubectl.out("describe", "pod", pod, "-n", NS)
    assert f"Name:         {pod}" in text
    assert "Controlled By:  ReplicaSet/api-gateway-" in text
    assert "Image:          registry.local/api-gateway:v1.5.0" in text
    assert "CrashLoopBackOff" in text
    events = text.split("Events:", 1)[1]
    assert "Scheduled" in events and f"Successfully assigned {NS}/{pod} to sandbox-node-1" in events
    other = bad_cluster.pods(NS, GW)[1]["metadata"]["name"]
    assert other not in events  # the field selector picks this pod's events only

    deployment = await bad_kubectl.out("describe", "deployment", GW, "-n", NS)
    assert "NewReplicaSet:   api-gateway-" in deployment and "ScalingReplicaSet" in deployment


async def test_logs_and_top(bad_kubectl, bad_cluster):
    logs = await bad_kubectl.out("logs", f"deployment/{GW}", "-n", NS, "--tail=20")
    assert "connection refused to database" in logs and len(logs.splitlines()) == 20
    pod = bad_cluster.pods(NS, GW)[0]["metadata"]["name"]
    one = await bad_kubectl.out("logs", pod, "-n", NS, "--tail=3")
    assert len(one.splitlines()) == 3

    header, rows = table(await bad_kubectl.out("top", "pods", "-n", NS))
    assert header == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    top = {r[0]: r for r in rows}
    assert pod in top and top[pod][2].endswith("Mi")


# ---------------------------------------------------------------------------- rollouts


async def test_scale_is_visible_afterwards(kubectl, cluster):
    out = await kubectl.out("scale", f"deployment/{GW}", "-n", NS, "--replicas=5")
    assert f"deployment.apps/{GW} scaled" in out
    assert cluster.deployment(NS, GW)["spec"]["replicas"] == 5
    await until(lambda: _ready(kubectl, "5/5"), what="api-gateway 5/5", poll=0.2)
    assert len(cluster.pods(NS, GW)) == 5
    events = await kubectl.out("get", "events", "-n", NS, "--field-selector", f"involvedObject.name={GW}")
    assert "from 3 to 5" in events


async def test_rollout_restart_then_status_and_history(kubectl, cluster):
    status = await kubectl.out("rollout", "status", f"deployment/{GW}", "-n", NS, "--timeout=30s")
    assert f'deployment "{GW}" successfully rolled out' in status
    before = {p["metadata"]["name"] for p in cluster.pods(NS, GW)}

    assert f"deployment.apps/{GW} restarted" in await kubectl.out("rollout", "restart", f"deployment/{GW}", "-n", NS)
    status = await kubectl.out("rollout", "status", f"deployment/{GW}", "-n", NS, "--timeout=30s")
    assert status.strip().splitlines()[-1] == f'deployment "{GW}" successfully rolled out'
    after = {p["metadata"]["name"] for p in cluster.pods(NS, GW)}
    assert len(after) == 3 and not (before & after)

    header, rows = table((await kubectl.out("rollout", "history", f"deployment/{GW}", "-n", NS)).split("\n", 1)[1])
    assert header == ["REVISION", "CHANGE-CAUSE"] and [r[0] for r in rows] == ["1", "2"]
    rev2 = await kubectl.out("rollout", "history", f"deployment/{GW}", "-n", NS, "--revision=2")
    assert "kubectl.kubernetes.io/restartedAt" in rev2


async def test_history_of_an_image_change_and_undo(kubectl, cluster):
    cluster.set_image(NS, GW, "registry.local/api-gateway:v1.4.3")
    await cluster.reconcile()
    _, rows = table((await kubectl.out("rollout", "history", f"deployment/{GW}", "-n", NS)).split("\n", 1)[1])
    assert [r[0] for r in rows] == ["1", "2"]
    assert "registry.local/api-gateway:v1.4.3" in await kubectl.out(
        "rollout", "history", f"deployment/{GW}", "-n", NS, "--revision=2")

    assert "rolled back" in await kubectl.out("rollout", "undo", f"deployment/{GW}", "-n", NS)
    await cluster.reconcile()
    image = await kubectl.out("get", "deployment", GW, "-n", NS, "-o", "jsonpath={.spec.template.spec.containers[0].image}")
    assert image == "registry.local/api-gateway:v1.4.2"
    # revision 1's template came back as revision 3, as the Deployment controller numbers it
    _, rows = table((await kubectl.out("rollout", "history", f"deployment/{GW}", "-n", NS)).split("\n", 1)[1])
    assert [r[0] for r in rows] == ["2", "3"]


async def test_rollout_status_waits_on_a_crash_looping_rollout(bad_kubectl):
    proc = await bad_kubectl.run("rollout", "status", f"deployment/{GW}", "-n", NS, "--timeout=2s", ok=False)
    assert proc.returncode != 0
    assert "Waiting for deployment" in proc.stdout and "0 of 3 updated replicas are available" in proc.stdout


# ---------------------------------------------------------------------------- writes


async def test_apply_patch_and_delete(kubectl, cluster, tmp_path):
    manifest = tmp_path / "cm.yaml"
    manifest.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap",
                                        "metadata": {"name": "probe", "namespace": NS}, "data": {"a": "1"}}))
    assert "configmap/probe created" in await kubectl.out("apply", "-f", str(manifest))
    manifest.write_text(manifest.read_text().replace("'1'", "'2'"))
    assert "configmap/probe configured" in await kubectl.out("apply", "-f", str(manifest))
    assert await kubectl.out("get", "configmap", "probe", "-n", NS, "-o", "jsonpath={.data.a}") == "2"

    await kubectl.out("patch", "deployment", GW, "-n", NS, "-p", '{"spec":{"replicas":4}}')
    assert cluster.deployment(NS, GW)["spec"]["replicas"] == 4

    assert 'configmap "probe" deleted' in await kubectl.out("delete", "configmap", "probe", "-n", NS)
    missing = await kubectl.run("get", "configmap", "probe", "-n", NS, ok=False)
    assert missing.returncode == 1 and 'configmaps "probe" not found' in missing.stderr


# ---------------------------------------------------------------------------- codeblue dev --sandbox


async def test_codeblue_dev_sandbox_hands_kubectl_its_kubeconfig(tmp_path: Path):
    """`codeblue dev --sandbox bad-deploy` prints KUBECONFIG and writes it to .codeblue/dev.env;
    with it, kubectl in the second terminal sees the drill's crash-looping gateway."""
    from starters.ports import free_port

    base = {k: v for k, v in os.environ.items() if not k.startswith(("CODEBLUE_", "KUBE"))}
    ports = ["--port", str(free_port()), "--ui-port", str(free_port()), "--api-port", str(free_port())]
    log = (tmp_path / "dev.log").open("w+")
    dev = await asyncio.create_subprocess_exec(
        str(shutil.which("codeblue")), "dev", "--sandbox", "bad-deploy", *ports, cwd=tmp_path, env=base,
        stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log)
    dev_env = tmp_path / ".codeblue" / "dev.env"
    try:
        await until(lambda: (tmp_path / "dev.log").read_text(),
                    lambda text: "Ctrl-C stops everything" in text or dev.returncode is not None,
                    "`codeblue dev` ready (or gone)", timeout=60, poll=0.25)
        printed = (tmp_path / "dev.log").read_text()
        assert dev_env.exists(), printed[-2000:]
        exported = dict(line.removeprefix("export ").split("=", 1) for line in dev_env.read_text().splitlines())
        kubeconfig = exported["KUBECONFIG"].strip("'")
        assert Path(kubeconfig).is_file() and f"KUBECONFIG={kubeconfig}" in printed, printed
        assert "kubectl get pods -n healthcare-prod" in printed

        env = {**base, "KUBECONFIG": kubeconfig, "HOME": str(tmp_path)}
        proc = await asyncio.to_thread(
            subprocess.run, [str(KUBECTL), f"--cache-dir={tmp_path / 'cache'}", "get", "pods", "-n", NS],
            env=env, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
        header, rows = table(proc.stdout)
        assert header[:3] == ["NAME", "READY", "STATUS"]
        gateway = [r for r in rows if r[0].startswith(f"{GW}-")]
        assert len(gateway) == 3 and all(r[2] == "CrashLoopBackOff" for r in gateway), proc.stdout
    finally:
        await stop(dev)
        log.close()
