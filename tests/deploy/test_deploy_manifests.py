"""deploy/kubernetes/*.yaml: valid against the Kubernetes OpenAPI schema, accepted by the
sandbox API through the official client, and consistent with what CodeBlue reads."""

from __future__ import annotations

import asyncio

import kubernetes.client
import kubernetes.utils
import kubernetes_validate
import pytest
import yaml

from domain.config import CodeBlueConfig
from sandbox.cluster import SandboxCluster
from tests.support.deploy import MANIFESTS, manifests, one

# the oldest and newest Kubernetes minor versions the manifests are checked against
VERSIONS = ["1.30.0", "1.37.0"]
TEMPORAL_ENV = {"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_TASK_QUEUE", "CODEBLUE_CONFIG"}


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_against_the_openapi_schema(version):
    objs = manifests()
    assert len(objs) >= 10
    for obj in objs:
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_validator_rejects_a_wrong_field():
    bad = one("Deployment", "codeblue-worker")
    bad = {**bad, "spec": {**bad["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, VERSIONS[-1], strict=True)


def test_the_configmap_holds_a_valid_codeblue_config_and_the_temporal_settings():
    cm = one("ConfigMap", "codeblue")
    cfg = CodeBlueConfig.model_validate(yaml.safe_load(cm["data"]["codeblue.yaml"]))
    assert cfg.kubernetes.kubeconfig is None  # in-cluster service account
    assert TEMPORAL_ENV <= set(cm["data"])
    assert cm["data"]["CODEBLUE_CONFIG"] == "/etc/codeblue/codeblue.yaml"


@pytest.mark.parametrize("name, command", [("codeblue-worker", "worker"), ("codeblue-api", "api")])
def test_pods_run_codeblue_non_root_read_only_with_config_and_secrets_from_the_cluster(name, command):
    dep = one("Deployment", name)
    spec = dep["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    (c,) = spec["containers"]
    assert c["args"][0] == command
    image, _, tag = c["image"].rpartition(":")
    assert image and tag and tag != "latest"
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}}
    sources = {(k, v["name"]) for e in c["envFrom"] for k, v in e.items()}
    assert sources == {("configMapRef", "codeblue"), ("secretRef", "codeblue-secrets")}
    assert not [e for e in c.get("env", []) if "KEY" in e["name"] or "TOKEN" in e["name"]], "secrets come from the Secret"
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert "/etc/codeblue" in mounts and "/tmp" in mounts
    assert "resources" in c and "limits" in c["resources"]


def test_two_workers_serve_metrics():
    dep = one("Deployment", "codeblue-worker")
    assert dep["spec"]["replicas"] >= 2
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    port = int(env["CODEBLUE_METRICS_BIND"].rsplit(":", 1)[1])
    assert {"name": "metrics", "containerPort": port} in c["ports"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/metrics"


async def test_the_manifests_apply_to_the_sandbox_api_with_the_official_client():
    async with SandboxCluster() as cluster:
        await cluster.seed_healthcare_prod()
        api = cluster.api_client()
        try:
            # the client is synchronous and the sandbox serves on this loop: run it in a thread
            await asyncio.to_thread(_apply_and_check, api)
        finally:
            api.close()


def _apply_and_check(api: kubernetes.client.ApiClient) -> None:
    # in file order (00-namespace first), as `kubectl apply -f deploy/kubernetes/` does
    for f in sorted(MANIFESTS.glob("*.yaml")):
        kubernetes.utils.create_from_yaml(api, str(f))
    apps = kubernetes.client.AppsV1Api(api)
    core = kubernetes.client.CoreV1Api(api)
    rbac = kubernetes.client.RbacAuthorizationV1Api(api)
    worker = apps.read_namespaced_deployment("codeblue-worker", "codeblue")
    assert worker.spec.replicas == 2 and worker.spec.template.spec.service_account_name == "codeblue-worker"
    assert core.read_namespaced_service_account("codeblue-worker", "codeblue").metadata.name
    assert core.read_namespaced_service("codeblue-api", "codeblue").spec.ports[0].port == 80
    role = rbac.read_namespaced_role("codeblue-runbook", "healthcare-prod")
    assert any(r.resources == ["deployments/scale"] and r.verbs == ["get", "patch"] for r in role.rules)
    binding = rbac.read_namespaced_role_binding("codeblue-runbook", "healthcare-prod")
    assert binding.subjects[0].name == "codeblue-worker"
    cm = core.read_namespaced_config_map("codeblue", "codeblue")
    CodeBlueConfig.model_validate(yaml.safe_load(cm.data["codeblue.yaml"]))
