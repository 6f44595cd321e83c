"""`/codec`: the Temporal codec server, so the Web UI shows decrypted history to a viewer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from google.protobuf import json_format
from pydantic import BaseModel, Field
from temporalio.api.common.v1 import Payloads
from temporalio.client import Client

from domain.incident import INCIDENT_ID_PATTERN
from starters.api.deps import Admin, TemporalClient, Viewer
from starters.api.problems import Problem
from worker.codec import EncryptionCodec

router = APIRouter(tags=["codec"])
INCIDENT_WORKFLOW_ID_PATTERN = INCIDENT_ID_PATTERN  # an incident's ID or one derived from it (same characters)


class PayloadsBody(BaseModel):
    """The Temporal codec server format: payloads in proto3 JSON (base64 metadata and data)."""

    payloads: list[dict[str, Any]] = Field(max_length=1000)


async def _codec(body: PayloadsBody, c: Client, encode: bool, workflow_id: str | None = None) -> dict[str, Any]:
    codec = c.data_converter.payload_codec
    if isinstance(codec, EncryptionCodec):
        # decoding (the UI's): no workflow context, older plaintext shown; encoding: bound to one workflow
        codec = codec.lenient() if not encode else codec.bound_to(workflow_id or "")
    try:
        ps = json_format.ParseDict({"payloads": body.payloads}, Payloads())
    except json_format.ParseError as e:
        raise Problem(422, f"payloads: {e}") from None
    if codec is None:
        return json_format.MessageToDict(ps)
    try:
        out = await (codec.encode(ps.payloads) if encode else codec.decode(ps.payloads))
    except Exception as e:  # noqa: BLE001 - CodecKeyError et al.; never echo payload data
        raise Problem(422, str(e) if type(e).__name__ == "CodecKeyError" else "payload cannot be decoded") from None
    return json_format.MessageToDict(Payloads(payloads=out))


@router.post("/codec/encode")
async def codec_encode(body: PayloadsBody, _: Admin, c: TemporalClient,
                       workflow_id: str = Query(..., pattern=INCIDENT_WORKFLOW_ID_PATTERN,
                                                description="The workflow the payloads are for: they decode nowhere else.")):
    """Admin only: ciphertext a worker accepts, for the one workflow named."""
    return await _codec(body, c, encode=True, workflow_id=workflow_id)


@router.post("/codec/decode")
async def codec_decode(body: PayloadsBody, _: Viewer, c: TemporalClient):
    return await _codec(body, c, encode=False)
