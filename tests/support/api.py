"""The API in process (httpx ASGITransport) on the real dev server, with one token per role."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from temporalio.client import Client
from temporalio.worker import Worker

from domain.config import ApiConfig, ApiToken, CodeBlueConfig, TemporalSettings
from domain.identity import keyring_from_env
from sandbox.memory_world import World, incident_worker
from starters.api.app import ApiSettings, create_app
from starters.api.auth import sha256_hex
from tests.support.polling import until
from worker.identity import IdentityInterceptor

# principal -> (token, roles). alice is the IC of the incidents the tests start.
PEOPLE: dict[str, tuple[str, list[str]]] = {
    "vic": ("tok-viewer-" + "v" * 24, ["viewer"]),
    "bob": ("tok-responder-" + "b" * 24, ["responder"]),
    "alice": ("tok-commander-" + "a" * 24, ["commander"]),
    "carol": ("tok-commander2-" + "c" * 24, ["commander"]),
    "root": ("tok-admin-" + "r" * 24, ["admin"]),
    "am": ("tok-alerts-" + "m" * 24, ["alerts"]),
}


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {PEOPLE[name][0]}"}


async def wait_report(http: httpx.AsyncClient, iid: str, pred, what: str, timeout: float = 30) -> dict:
    """The incident's report as a viewer reads it over HTTP, once `pred` holds of it."""
    async def report() -> dict:
        r = await http.get(f"/incidents/{iid}", headers=auth("vic"))
        assert r.status_code == 200, r.text
        return r.json()

    return await until(report, pred, what, timeout=timeout)


def api_config(**api) -> CodeBlueConfig:
    tokens = [ApiToken(name=n, sha256=sha256_hex(t), roles=r) for n, (t, r) in PEOPLE.items()]
    return CodeBlueConfig(api=ApiConfig(tokens=tokens, **api))


@asynccontextmanager
async def api_on(client: Client, cfg: CodeBlueConfig | None = None, world: World | None = None
                 ) -> AsyncIterator[tuple[httpx.AsyncClient, World, str]]:
    """The app plus a worker (scripted world) on a fresh task queue."""
    world = world or World()
    tq = f"api-{uuid.uuid4().hex[:6]}"

    # the API's own client signs only for a token's principal (never a typed name), as deployed
    api_client = await Client.connect(client.service_client.config.target_host, namespace=client.namespace,
                                      data_converter=client.data_converter,
                                      interceptors=[IdentityInterceptor(keyring_from_env(), via=None)])

    async def factory() -> Client:
        return api_client

    settings = ApiSettings(config=cfg or api_config(), temporal=TemporalSettings(task_queue=tq))
    app = create_app(factory, settings)
    async with Worker(client, task_queue=tq, **incident_worker(world)), app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
            try:
                yield http, world, tq
            finally:
                for iid in world.handles:
                    try:
                        await client.get_workflow_handle(iid).terminate("test done")
                    except Exception:  # noqa: BLE001 - already closed
                        pass
