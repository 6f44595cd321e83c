"""Encrypted history: no plaintext secret in raw histories, the codec server, key rotation."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from temporalio.api.common.v1 import Payload, WorkflowExecution
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryRequest
from temporalio.client import Client

from tests.support.api import api_on, auth
from tests.support.polling import until
from worker.codec import REFUSED, CodecKeyError, EncryptionCodec, codec_from_env, new_key, parse_key
from worker.temporal import data_converter, replayer
from workflows.incident_response import IncidentResponseWorkflow

SECRET = "patient-MRN-" + uuid.uuid4().hex[:10]


async def test_codec_round_trips_and_rotation_keeps_old_payloads_readable():
    old, new = parse_key("k1:" + new_key()), parse_key(new_key())
    p = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps({"note": SECRET}).encode())
    [enc] = await EncryptionCodec([old]).encode([p])
    assert SECRET.encode() not in enc.SerializeToString()
    assert enc.metadata["encryption-key-id"] == b"k1"
    rotated = EncryptionCodec([new, old])
    assert (await rotated.decode([enc]))[0] == p
    [enc2] = await rotated.encode([p])
    assert enc2.metadata["encryption-key-id"] == new[0].encode()
    with pytest.raises(CodecKeyError, match="unknown key ID 'k1'"):
        await EncryptionCodec([new]).decode([enc])
    tampered = Payload(metadata=enc.metadata, data=enc.data[:-1] + bytes([enc.data[-1] ^ 1]))
    with pytest.raises(CodecKeyError, match="does not decrypt"):
        await rotated.decode([tampered])
    with pytest.raises(CodecKeyError, match="unencrypted payload refused"):  # a raw client's plaintext
        await rotated.decode([p])
    assert (await rotated.lenient().decode([p]))[0] == p  # the codec server shows older plaintext


async def test_ciphertext_is_bound_to_its_workflow(monkeypatch):
    from temporalio.converter import WorkflowSerializationContext

    codec = EncryptionCodec([parse_key(new_key())])
    p = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps({"approve": True}).encode())
    [enc] = await codec.with_context(WorkflowSerializationContext(namespace="default", workflow_id="INC-A")).encode([p])
    assert enc.metadata["encryption-workflow-id"] == b"INC-A"
    in_a = codec.with_context(WorkflowSerializationContext(namespace="default", workflow_id="INC-A"))
    in_b = codec.with_context(WorkflowSerializationContext(namespace="default", workflow_id="INC-B"))
    assert (await in_a.decode([enc]))[0] == p
    # in a workflow a refused payload decodes to a marker no converter reads: only its own
    # signal or update fails, never the workflow task (with the others in it)
    [refused] = await in_b.decode([enc])
    assert refused.metadata["encoding"] == REFUSED and b"belongs to workflow 'INC-A', not 'INC-B'" in refused.data
    relabelled = Payload(metadata={**enc.metadata, "encryption-workflow-id": b"INC-B"}, data=enc.data)
    [refused] = await in_b.decode([relabelled])
    assert b"does not decrypt" in refused.data  # the binding is authenticated
    [unbound] = await codec.encode([p])  # made with no workflow named
    assert b"bound to no workflow" in (await in_b.decode([unbound]))[0].data
    [plain] = await in_b.decode([p])
    assert plain.metadata["encoding"] == REFUSED and b"unencrypted payload refused" in plain.data
    with pytest.raises(CodecKeyError, match="unknown key ID"):  # outside a workflow (a client reading): raised
        await EncryptionCodec([parse_key(new_key())]).decode([enc])
    assert (await codec.lenient().decode([enc]))[0] == p  # the UI's codec server has no workflow context
    monkeypatch.setenv("CODEBLUE_CODEC_ALLOW_PLAINTEXT", "1")
    assert (await in_b.decode([p]))[0] == p  # migration window for histories from before encryption


def test_keys_from_env_and_file(tmp_path):
    assert codec_from_env({}) is None
    k_old, k_new = new_key(), new_key()
    f = tmp_path / "keys"
    f.write_text(f"# current first\nnew:{k_new}\nold:{k_old}\n")
    c = codec_from_env({"CODEBLUE_CODEC_KEY_FILE": str(f)})
    assert c is not None
    assert c.current_id == "new" and c.key_ids == ["new", "old"]
    c = codec_from_env({"CODEBLUE_CODEC_KEY": k_new, "CODEBLUE_CODEC_OLD_KEYS": f"old:{k_old}"})
    assert c is not None
    assert c.key_ids[1] == "old"
    with pytest.raises(CodecKeyError, match="32 bytes"):
        codec_from_env({"CODEBLUE_CODEC_KEY": base64.b64encode(b"short").decode()})
    with pytest.raises(CodecKeyError, match="base64") as e:
        codec_from_env({"CODEBLUE_CODEC_KEY": "not base64 !!"})
    assert "not base64" not in str(e.value)


async def _raw_history(client: Client, iid: str) -> bytes:
    out, token = b"", b""
    while True:
        resp = await client.workflow_service.get_workflow_execution_history(
            GetWorkflowExecutionHistoryRequest(namespace=client.namespace, execution=WorkflowExecution(workflow_id=iid),
                                               next_page_token=token)
        )
        out += resp.history.SerializeToString()
        token = resp.next_page_token
        if not token:
            return out


async def test_raw_history_holds_no_plaintext_and_the_codec_server_decodes_it(dev_env, monkeypatch):
    old_key = "old:" + new_key()
    monkeypatch.setenv("CODEBLUE_CODEC_KEY", old_key)
    conv = data_converter()
    assert conv.payload_codec is not None
    client = await Client.connect(dev_env.client.service_client.config.target_host, data_converter=conv)
    async with api_on(client) as (http, world, _):
        iid = f"INC-ENC-{uuid.uuid4().hex[:6]}"
        r = await http.post("/incidents", headers=auth("bob"), json={
            "title": f"gateway down for {SECRET}", "outage": True, "commander": "alice", "incident_id": iid})
        assert r.status_code == 201, r.text
        world.handles.append(iid)
        h = client.get_workflow_handle(iid)
        async def report() -> dict:
            return (await http.get(f"/incidents/{iid}", headers=auth("vic"))).json()

        rep = await until(report, lambda r: bool(r["actions"]), "proposals", timeout=30)
        ids = [a["id"] for a in rep["actions"]]
        r = await http.post(f"/incidents/{iid}/notes", headers=auth("bob"), json={"text": f"bed 4 monitor blank, {SECRET}"})
        assert r.status_code == 202, r.text
        url = f"/incidents/{iid}/decisions"
        assert (await http.post(url, headers=auth("alice"), json={"action_id": ids[0], "approve": True, "reason": f"ok {SECRET}"})).status_code == 200
        # a refusal's reason reaches the caller decoded
        r = await http.post(url, headers=auth("carol"), json={"action_id": ids[1], "approve": False, "reason": "x"})
        assert r.status_code == 403 and "carol is not the incident commander" in r.json()["detail"]
        for a in ids[1:]:
            await http.post(url, headers=auth("alice"), json={"action_id": a, "approve": False, "reason": f"no {SECRET}"})
        r = await http.post(f"/incidents/{iid}/resolve", headers=auth("alice"), json={"summary": f"fixed for {SECRET}"})
        assert r.status_code == 200, r.text
        assert SECRET in (await h.result())["summary"]

        raw = await _raw_history(client, iid)
        assert b"api-gateway" in raw or b"CodeBlue" in raw  # search attributes stay readable
        assert SECRET.encode() not in raw
        assert b"gateway down" not in raw  # the title, everywhere (input, summary, timeline)
        assert b"monitor blank" not in raw  # a responder's note

        # the codec server shows an authorized viewer what the UI would show
        hist = await h.fetch_history()
        started = hist.events[0].workflow_execution_started_event_attributes.input
        body = {"payloads": [{"metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                              "data": base64.b64encode(p.data).decode()} for p in started.payloads]}
        r = await http.post("/codec/decode", headers=auth("vic"), json=body)
        assert r.status_code == 200, r.text
        assert SECRET in base64.b64decode(r.json()["payloads"][0]["data"]).decode()
        assert (await http.post("/codec/decode", headers=auth("am"), json=body)).status_code == 403
        # ... and encode round-trips
        plain = {"payloads": [{"metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                               "data": base64.b64encode(json.dumps(SECRET).encode()).decode()}]}
        assert (await http.post(f"/codec/encode?workflow_id={iid}", headers=auth("bob"), json=plain)).status_code == 403
        enc = (await http.post(f"/codec/encode?workflow_id={iid}", headers=auth("root"), json=plain)).json()
        assert base64.b64decode(enc["payloads"][0]["metadata"]["encryption-workflow-id"]).decode() == iid
        assert SECRET not in json.dumps(enc)
        dec = (await http.post("/codec/decode", headers=auth("vic"), json=enc)).json()
        assert dec == plain
        r = await http.options("/codec/decode", headers={"Origin": "http://localhost:8233", "Access-Control-Request-Method": "POST",
                                                          "Access-Control-Request-Headers": "authorization,content-type"})
        assert r.headers.get("access-control-allow-origin") == "http://localhost:8233"
        r = await http.options("/codec/decode", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in r.headers

    # after a rotation the old history still replays (decrypts) with the old key kept as old
    monkeypatch.setenv("CODEBLUE_CODEC_KEY", new_key())
    monkeypatch.setenv("CODEBLUE_CODEC_OLD_KEYS", old_key)
    await replayer([IncidentResponseWorkflow]).replay_workflow(hist)
    monkeypatch.delenv("CODEBLUE_CODEC_OLD_KEYS")
    with pytest.raises(RuntimeError, match="ValueError"):  # the start input no longer decodes (payload refused)
        await replayer([IncidentResponseWorkflow]).replay_workflow(hist)
