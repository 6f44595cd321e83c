"""Fixtures for tests of the helm stand-in and the helm activities: a kmock cluster with a
stand-in Deployment controller, and HelmActivities pointed at it (registered in conftest)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kmock
import pytest

from activities.helm import HelmActivities
from sandbox.helm_cli import KubeRest, configmap_name, seed_release
from tests.support.paths import ROOT

NS = "healthcare-prod"
RELEASE = "healthcare-platform"
CHART = "healthcare-platform-1.4.2"
REPO = "registry.example.com:5000/healthcare/api-gateway"
HELM = [sys.executable, "-m", "sandbox.helm_cli"]
DEPLOYMENTS = "apps/v1/deployments"


@dataclass
class Cluster:
    emulator: kmock.KubernetesEmulator
    kubeconfig: Path
    env: dict[str, str]
    # The bare emulator has no controllers; when True, a stand-in Deployment controller
    # reports every Deployment whose generation moved on as rolled out.
    controller: bool = True

    async def run_controller(self) -> None:
        while True:
            if self.controller:
                for (resource, _ns, name), obj in list(self.emulator.objects.items()):
                    if resource.plural != "deployments" or obj.deleted:
                        continue
                    gen = (obj.raw.get("metadata") or {}).get("generation") or 0
                    if ((obj.raw.get("status") or {}).get("observedGeneration") or 0) < gen:
                        self.mark_rolled_out(name)
            await asyncio.sleep(0.05)

    def add_deployment(self, name: str, image: str, *, release: str | None = RELEASE, ready: bool = True, replicas: int = 2) -> None:
        labels = {"app": name}
        if release:
            labels["app.kubernetes.io/instance"] = release
        self.emulator.objects[DEPLOYMENTS, NS, name] = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": NS, "labels": labels, "generation": 1},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "containers": [
                            {"name": name, "image": image, "resources": {"limits": {"memory": "512Mi"}}},
                        ]
                    },
                },
            },
            "status": {
                "replicas": replicas,
                "readyReplicas": replicas if ready else 0,
                "observedGeneration": 1,
            },
        }

    def deployment(self, name: str) -> dict[str, Any]:
        return self.emulator.objects[DEPLOYMENTS, NS, name].raw

    def image(self, name: str) -> str:
        return self.deployment(name)["spec"]["template"]["spec"]["containers"][0]["image"]

    def mark_rolled_out(self, name: str) -> None:
        dep = self.deployment(name)
        replicas = dep["spec"]["replicas"]
        self.emulator.objects[DEPLOYMENTS, NS, name].patch(
            {"status": {"readyReplicas": replicas, "observedGeneration": dep["metadata"]["generation"]}}
        )

    def stored_history(self) -> list[dict[str, Any]]:
        cm = self.emulator.objects["v1/configmaps", NS, configmap_name(RELEASE)].raw
        return json.loads(cm["data"]["history"])

    async def seed(self, revisions: list[dict[str, Any]], release: str = RELEASE) -> None:
        api = KubeRest.from_kubeconfig(str(self.kubeconfig))
        try:
            # seed_release blocks; the emulator is served by this very event loop.
            await asyncio.to_thread(seed_release, api, NS, release, CHART, revisions)
        finally:
            api.close()

    async def helm(self, *args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *HELM, *args, env=self.env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
        assert proc.returncode is not None  # it exited
        return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def cluster(tmp_path):
    emulator = kmock.KubernetesEmulator()
    emulator.resources.load_bundled()
    async with emulator, kmock.Server(emulator) as server:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: kmock\n  cluster:\n    server: http://127.0.0.1:{server.port}\n"
            "users:\n- name: drill\n  user:\n    token: not-a-secret\n"
            "contexts:\n- name: kmock\n  context:\n    cluster: kmock\n    user: drill\n"
            "current-context: kmock\n"
        )
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONPATH": str(ROOT)}
        cluster = Cluster(emulator=emulator, kubeconfig=kubeconfig, env=env)
        controller = asyncio.create_task(cluster.run_controller())
        try:
            yield cluster
        finally:
            controller.cancel()
            await asyncio.gather(controller, return_exceptions=True)


@pytest.fixture
def helm(cluster) -> HelmActivities:
    return HelmActivities(HELM, env={"KUBECONFIG": str(cluster.kubeconfig), "PYTHONPATH": str(ROOT)})

