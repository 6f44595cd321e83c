"""`/codec`: the Temporal codec server, so the Web UI shows decrypted history to a viewer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from google.protobuf import json_format
from pydantic import BaseModel, Field
from temporalio.api.common.v1 import Payloads
from temporalio.client import Client

from starters.api.deps import Responder, TemporalClient, Viewer
from starters.api.problems import Problem
from worker.codec import EncryptionCodec

router = APIRouter(tags=["codec"])


class PayloadsBody(BaseModel):
    """The Temporal codec server format: payloads in proto3 JSON (base64 metadata and data)."""

    payloads: list[dict[str, Any]] = Field(max_length=1000)


async def _codec(body: PayloadsBody, c: Client, encode: bool) -> dict[str, Any]:
    codec = c.data_converter.payload_codec
    if isinstance(codec, EncryptionCodec):
        codec = codec.lenient()  # the UI's decoding: no workflow context, older plaintext shown
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
async def codec_encode(body: PayloadsBody, _: Responder, c: TemporalClient):
    return await _codec(body, c, encode=True)


@router.post("/codec/decode")
async def codec_decode(body: PayloadsBody, _: Viewer, c: TemporalClient):
    return await _codec(body, c, encode=False)
