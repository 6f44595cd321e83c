"""The worker's Roles grant exactly what CodeBlue's code calls on the Kubernetes API: the
needed permissions are derived from activities/*.py (the official client's own paths say
which resource and verb each method uses), and enforced on the sandbox API to show they suffice."""

from __future__ import annotations

import kmock
import pytest
import yaml
from temporalio.exceptions import ApplicationError

from activities.kubernetes import KubernetesActivities
from domain.cluster import (
    DbCheckRequest,
    LogsQuery,
    NamespaceQuery,
    RestartRequest,
    RolloutWaitRequest,
    ScaleRequest,
)
from domain.config import CodeBlueConfig
from sandbox.cluster import SandboxCluster
from tests.support.deploy import derived_permissions, manifests, one, role_permissions

NS = "healthcare-prod"
# Optional features, each with its own Role file: what only that feature's code calls.
EXEC = ("", "pods/exec", "create")  # database.check_command run inside a gateway pod
FEATURE_ROLES = {
    "rbac-db-check-exec.yaml": lambda perm, where: perm == EXEC,
    "rbac-db-cutover.yaml": lambda perm, where: where.startswith("db_cutover.py:"),
}
BASE_ROLE = "rbac.yaml"
HELM_ROLE = "rbac-helm.yaml"  # the helm binary's footprint, not derived from Python calls


def _config() -> CodeBlueConfig:
    cm = one("ConfigMap", "codeblue")
    return CodeBlueConfig.model_validate(yaml.safe_load(cm["data"]["codeblue.yaml"]))


def _expected() -> dict[str, set[tuple[str, str, str]]]:
    """Role file -> the permissions its feature's code needs."""
    out: dict[str, set] = {BASE_ROLE: set(), **{f: set() for f in FEATURE_ROLES}}
    for perm, places in derived_permissions().items():
        for where in places:
            target = next((f for f, belongs in FEATURE_ROLES.items() if belongs(perm, where)), BASE_ROLE)
            out[target].add(perm)
    return out


def _role(file: str) -> dict:
    roles = [m for m in manifests(file) if m["kind"] == "Role"]
    assert len(roles) == 1, file
    return roles[0]


def test_the_derivation_sees_the_runbook_calls():
    """Guards the scanner itself: the runbook's kubectl steps must be found."""
    perms = derived_permissions()
    for p in [("", "pods", "list"), ("", "pods/log", "get"), ("", "services", "list"),
              ("apps", "deployments", "patch"), ("apps", "deployments/scale", "patch"),
              ("", "secrets", "get"), ("metrics.k8s.io", "pods", "list"), EXEC]:
        assert p in perms, p
    assert ("", "pods", "delete") not in perms


@pytest.mark.parametrize("file", [BASE_ROLE, *FEATURE_ROLES])
def test_each_role_grants_exactly_what_its_code_calls(file):
    need = _expected()[file]
    granted = set(role_permissions(_role(file)))
    places = derived_permissions()
    missing = {p: places[p] for p in need - granted}
    assert not missing, f"{file} lacks permissions the code uses: {missing}"
    assert not granted - need, f"{file} grants more than the code uses: {sorted(granted - need)}"


def test_roles_live_in_the_target_namespace_bound_to_the_worker_only():
    cfg = _config()
    worker = one("Deployment", "codeblue-worker")
    sa = worker["spec"]["template"]["spec"]["serviceAccountName"]
    sa_ns = worker["metadata"]["namespace"]
    roles = [m for m in manifests() if m["kind"] in ("Role", "ClusterRole")]
    assert {m["kind"] for m in roles} == {"Role"}, "no cluster-wide grants"
    bindings = {m["roleRef"]["name"]: m for m in manifests() if m["kind"] == "RoleBinding"}
    assert not [m for m in manifests() if m["kind"] == "ClusterRoleBinding"]
    for role in roles:
        assert role["metadata"]["namespace"] == cfg.kubernetes.namespace
        b = bindings[role["metadata"]["name"]]
        assert b["metadata"]["namespace"] == cfg.kubernetes.namespace
        assert b["roleRef"]["kind"] == "Role"
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": sa_ns}]
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
    api = one("Deployment", "codeblue-api")["spec"]["template"]["spec"]
    assert api["serviceAccountName"] != sa and api["automountServiceAccountToken"] is False


def test_names_in_the_roles_match_the_config():
    cfg = _config()
    base = role_permissions(_role(BASE_ROLE))
    assert base[("", "secrets", "get")] == {cfg.database.secret_name}
    assert base[("", "namespaces", "get")] == {cfg.kubernetes.namespace}
    known_good = cfg.recovery.known_good_configmap
    assert base[("", "configmaps", "get")] == base[("", "configmaps", "patch")] == {known_good}
    cutover = role_permissions(_role("rbac-db-cutover.yaml"))
    assert cutover[("", "secrets", "patch")] == {cfg.database.secret_name}


def test_helm_role_is_separate_and_bound_to_the_worker():
    role = _role(HELM_ROLE)
    assert ("", "secrets", "list") in role_permissions(role)  # helm's release records
    assert role["metadata"]["name"] != _role(BASE_ROLE)["metadata"]["name"]


# ---------------------------------------------------------------- enforced on the sandbox API


def _enforce(cluster: SandboxCluster, roles: list[dict]) -> list[str]:
    """Make the sandbox API answer 403 to anything the Roles do not grant (names included)."""
    grants: list[tuple[str, str, str, frozenset[str] | None, str]] = []
    for role in roles:
        for (g, r, v), names in role_permissions(role).items():
            grants.append((g, r, v, names, role["metadata"]["namespace"]))
    denied: list[str] = []

    def check(verb, group, plural, sub, namespace, name):
        resource = f"{plural}/{sub}" if sub else plural
        ns = name if plural == "namespaces" and not sub else namespace  # a namespace is in itself
        for g, r, v, names, role_ns in grants:
            if (g, r, v) == (group, resource, verb) and ns == role_ns and (names is None or name in names):
                return
        denied.append(f"{verb} {resource}.{group} {name or ''} in {ns}")
        raise kmock.KubernetesError(status=403, reason="Forbidden", message=f"cannot {verb} {resource}",
                                    details={"status": 403})

    cluster.emulator._check_forbidden = check  # type: ignore[method-assign]  # an instance attribute: this cluster only
    return denied


async def _run_runbook(k8s: KubernetesActivities, cfg: CodeBlueConfig) -> None:
    ns, gw = cfg.kubernetes.namespace, cfg.kubernetes.gateway_deployment
    assert (await k8s.pod_status(NamespaceQuery(namespace=ns))).pods
    assert (await k8s.service_status(NamespaceQuery(namespace=ns))).services
    assert (await k8s.deployment_status(NamespaceQuery(namespace=ns))).deployments
    await k8s.gateway_logs(LogsQuery(namespace=ns, deployment=gw, tail_lines=50, patterns={"error": "error"}))
    await k8s.pod_metrics(NamespaceQuery(namespace=ns))
    await k8s.db_check(DbCheckRequest(namespace=ns, secret_name=cfg.database.secret_name,
                                      secret_key=cfg.database.secret_key, deployment=gw))
    await k8s.scale_deployment(ScaleRequest(namespace=ns, deployment=gw, replicas=cfg.mitigation.scale_replicas))
    await k8s.rollout_restart(RestartRequest(namespace=ns, deployment=gw, restarted_at="2026-01-01T00:00:00Z"))
    await k8s.wait_rollout(RolloutWaitRequest(namespace=ns, deployment=gw, timeout_seconds=30, poll_seconds=0.1))


async def test_the_base_role_suffices_for_the_runbook_on_the_sandbox_api():
    cfg = _config()
    async with SandboxCluster() as cluster:
        await cluster.seed_healthcare_prod(namespace=cfg.kubernetes.namespace)
        denied = _enforce(cluster, [_role(BASE_ROLE)])
        api = cluster.api_client()
        try:
            await _run_runbook(KubernetesActivities(api, request_timeout_seconds=5.0), cfg)
            assert not denied, denied
            # and it is enforcement, not a no-op: another secret is out of reach
            other = DbCheckRequest(namespace=cfg.kubernetes.namespace, secret_name="payments-secret",
                                   secret_key="URL", deployment="api-gateway")
            with pytest.raises(ApplicationError) as e:
                await KubernetesActivities(api).db_check(other)
            assert e.value.type == "Forbidden"
        finally:
            api.close()


async def test_a_role_missing_a_verb_fails_the_runbook_step():
    cfg = _config()
    role = _role(BASE_ROLE)
    role = {**role, "rules": [r for r in role["rules"] if r["resources"] != ["deployments/scale"]]}
    async with SandboxCluster() as cluster:
        await cluster.seed_healthcare_prod(namespace=cfg.kubernetes.namespace)
        _enforce(cluster, [role])
        api = cluster.api_client()
        try:
            with pytest.raises(ApplicationError) as e:
                await KubernetesActivities(api).scale_deployment(
                    ScaleRequest(namespace=cfg.kubernetes.namespace, deployment="api-gateway", replicas=5))
            assert e.value.type == "Forbidden" and e.value.non_retryable
        finally:
            api.close()
