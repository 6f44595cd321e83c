"""DbCutoverActivities on the sandbox Kubernetes API and the local PostgreSQL."""

from __future__ import annotations

import base64

import pytest
from temporalio.exceptions import ApplicationError

from activities.db_cutover import DbCutoverActivities, backup_name, with_endpoint
from domain.database_restore import (
    RestoredDbVerifyRequest,
    SecretBackupRequest,
    SecretPointRequest,
    SecretRestoreRequest,
)
from sandbox.cluster import SECRETS

NS, SECRET, KEY = "healthcare-prod", "healthcare-db-secret", "DATABASE_URL"
# odd but valid bytes: restoring must give back exactly these, not a re-encoded URL
OLD = "postgresql://postgres:p%40ss%20w0rd@10.0.0.9:6543/postgres?sslmode=disable&application_name=gw\n"


@pytest.fixture
async def seeded(sandbox_cluster):
    await sandbox_cluster.seed_healthcare_prod(namespace=NS, database_url=OLD)
    return sandbox_cluster


def _raw(cluster, name: str) -> str:
    return cluster.reconciler.get(SECRETS, NS, name).raw["data"][KEY]


def test_with_endpoint_keeps_credentials_database_and_options():
    assert with_endpoint(OLD.strip(), "db.new", 5432) == \
        "postgresql://postgres:p%40ss%20w0rd@db.new:5432/postgres?sslmode=disable&application_name=gw"
    assert with_endpoint("postgres://h/db", "::1", 5) == "postgres://[::1]:5/db"
    with pytest.raises(ValueError):
        with_endpoint("host=a user=b", "x", 1)


async def test_backup_point_restore_gives_back_the_exact_bytes(seeded, sandbox_api):
    acts = DbCutoverActivities(sandbox_api)
    original = _raw(seeded, SECRET)
    req = SecretBackupRequest(incident_id="INC_7", namespace=NS, secret_name=SECRET, secret_key=KEY)
    ref = await acts.db_secret_backup(req)
    assert ref.created and ref.backup_name == backup_name(SECRET, "INC_7") == "healthcare-db-secret-codeblue-backup-inc-7"
    ch = await acts.db_secret_point(SecretPointRequest(backup=ref, host="127.0.0.1", port=5432))
    assert ch.changed and ch.where == "127.0.0.1:5432/postgres"
    assert seeded.secret_value(NS, SECRET, KEY) == "postgresql://postgres:p%40ss%20w0rd@127.0.0.1:5432/postgres?sslmode=disable&application_name=gw"
    assert not (await acts.db_secret_point(SecretPointRequest(backup=ref, host="127.0.0.1", port=5432))).changed
    # a retried backup after the patch keeps the value from before the change
    again = await acts.db_secret_backup(req)
    assert not again.created and again.source_resource_version == ref.source_resource_version
    assert _raw(seeded, again.backup_name) == original
    assert (await acts.db_secret_restore(SecretRestoreRequest(backup=again))).changed
    assert _raw(seeded, SECRET) == original and base64.b64decode(original).decode() == OLD
    assert not (await acts.db_secret_restore(SecretRestoreRequest(backup=again))).changed


async def test_a_backup_secret_that_is_not_this_incidents_is_refused(seeded, sandbox_api):
    acts = DbCutoverActivities(sandbox_api)
    await acts.db_secret_backup(SecretBackupRequest(incident_id="INC-1", namespace=NS, secret_name=SECRET, secret_key=KEY))
    seeded.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": backup_name(SECRET, "inc-2"), "namespace": NS},
                  "data": {KEY: "eA=="}})
    with pytest.raises(ApplicationError) as e:
        await acts.db_secret_backup(SecretBackupRequest(incident_id="inc-2", namespace=NS, secret_name=SECRET, secret_key=KEY))
    assert e.value.type == "InvalidRequest" and e.value.non_retryable


async def test_verify_uses_the_secrets_credentials_at_the_restored_endpoint(seeded, sandbox_api):
    acts = DbCutoverActivities(sandbox_api)
    req = RestoredDbVerifyRequest(namespace=NS, secret_name=SECRET, secret_key=KEY, host="127.0.0.1", port=5432,
                                  sanity_query="SELECT count(*) FROM pg_catalog.pg_namespace")
    ok = await acts.db_verify_restored(req)
    assert ok.ok and ok.select_one and ok.sanity and int(ok.sanity) > 0 and ok.where == "127.0.0.1:5432/postgres"
    bad = await acts.db_verify_restored(req.model_copy(update={"sanity_query": "SELECT count(*) FROM patients_missing"}))
    assert not bad.ok and bad.select_one and "sanity query failed (UndefinedTable)" in bad.detail
    down = await acts.db_verify_restored(req.model_copy(update={"port": 1}))
    assert not down.ok and not down.select_one and "cannot connect to 127.0.0.1:1/postgres" in down.detail
    assert "p%40ss" not in bad.detail + down.detail


async def test_a_secret_changed_by_someone_else_is_neither_pointed_nor_restored(seeded, sandbox_api):
    acts = DbCutoverActivities(sandbox_api)
    ref = await acts.db_secret_backup(SecretBackupRequest(incident_id="INC-9", namespace=NS, secret_name=SECRET, secret_key=KEY))
    assert ref.source_resource_version
    # a responder rotates the password between the backup and the cutover
    rotated = base64.b64encode(b"postgresql://postgres:rotated@10.0.0.9:6543/postgres").decode()
    seeded.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET, "namespace": NS}, "data": {KEY: rotated}})
    with pytest.raises(ApplicationError) as e:
        await acts.db_secret_point(SecretPointRequest(backup=ref, host="127.0.0.1", port=5432,
                                                      expected_resource_version=ref.source_resource_version))
    assert e.value.type == "SecretMoved" and e.value.non_retryable and "nothing was changed" in e.value.message
    assert _raw(seeded, SECRET) == rotated
    # our own cutover, then a change by someone else: the compensation keeps theirs
    now = seeded.reconciler.get(SECRETS, NS, SECRET).raw["metadata"]["resourceVersion"]
    ref2 = ref.model_copy(update={"source_resource_version": now})
    ours = await acts.db_secret_point(SecretPointRequest(backup=ref2, host="127.0.0.1", port=5432,
                                                         expected_resource_version=ref2.source_resource_version))
    assert ours.changed and ours.resource_version
    seeded.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET, "namespace": NS}, "data": {KEY: rotated}})
    with pytest.raises(ApplicationError) as e:
        await acts.db_secret_restore(SecretRestoreRequest(backup=ref2, expected_resource_version=ours.resource_version))
    assert e.value.type == "SecretMoved"
    assert _raw(seeded, SECRET) == rotated
