"""AES-GCM payload codec: workflow history (an audit record) never holds plaintext payloads.

Keys come from the environment, never from the config file:
- `CODEBLUE_CODEC_KEY`: the current key, base64 of 32 bytes, optionally `KEYID:base64`;
- `CODEBLUE_CODEC_OLD_KEYS`: comma-separated older keys (same format), only for decrypting
  history written before a rotation;
- `CODEBLUE_CODEC_KEY_FILE`: a file with one key per line (same format), first line current.
A key without an explicit ID gets the first 12 hex digits of its sha256 as ID. The key ID is
stored in each payload's metadata, so decryption picks the right key after a rotation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID_META = "encryption-key-id"
ENV_KEY = "CODEBLUE_CODEC_KEY"
ENV_OLD_KEYS = "CODEBLUE_CODEC_OLD_KEYS"
ENV_KEY_FILE = "CODEBLUE_CODEC_KEY_FILE"


class CodecKeyError(Exception):
    """A missing, malformed or unknown key; the message never contains key material."""


def parse_key(text: str) -> tuple[str, bytes]:
    """`base64` or `KEYID:base64` -> (key ID, 32-byte key)."""
    text = text.strip()
    kid, sep, b64 = text.rpartition(":")
    if not sep:
        kid, b64 = "", text
    try:
        key = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise CodecKeyError("codec key is not valid base64") from None
    if len(key) != 32:
        raise CodecKeyError(f"codec key must be 32 bytes (AES-256), got {len(key)}")
    return (kid or hashlib.sha256(key).hexdigest()[:12]), key


def new_key() -> str:
    """A fresh key in the `CODEBLUE_CODEC_KEY` format."""
    return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()


class EncryptionCodec(PayloadCodec):
    """Encrypts every payload with the current key; decrypts with any known key."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise CodecKeyError("no codec key given")
        self.current_id, current = keys[0]
        self._current = AESGCM(current)
        self._keys: dict[str, AESGCM] = {}
        for kid, key in keys:
            self._keys.setdefault(kid, AESGCM(key))

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decrypt(p) for p in payloads]

    def _encrypt(self, p: Payload) -> Payload:
        nonce = os.urandom(12)
        kid = self.current_id.encode()
        data = nonce + self._current.encrypt(nonce, p.SerializeToString(), kid)
        return Payload(metadata={"encoding": ENCODING, KEY_ID_META: kid}, data=data)

    def _decrypt(self, p: Payload) -> Payload:
        if p.metadata.get("encoding") != ENCODING:
            return p  # written before encryption was turned on
        kid = p.metadata.get(KEY_ID_META, b"").decode()
        aes = self._keys.get(kid)
        if aes is None:
            raise CodecKeyError(f"payload encrypted with unknown key ID {kid!r}")
        try:
            return Payload.FromString(aes.decrypt(p.data[:12], p.data[12:], kid.encode()))
        except Exception:  # noqa: BLE001 - InvalidTag and friends: never echo data
            raise CodecKeyError(f"payload does not decrypt with key {kid!r}") from None


def keys_from_env(env: Mapping[str, str] | None = None) -> list[tuple[str, bytes]]:
    """Current key first, then older ones; empty when encryption is not configured."""
    e = os.environ if env is None else env
    keys: list[tuple[str, bytes]] = []
    if e.get(ENV_KEY):
        keys.append(parse_key(e[ENV_KEY]))
    path = e.get(ENV_KEY_FILE)
    if path:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as err:
            raise CodecKeyError(f"{path}: cannot read codec key file: {err.strerror}") from None
        keys.extend(parse_key(ln) for ln in _content(lines))
    for part in (e.get(ENV_OLD_KEYS) or "").split(","):
        if part.strip():
            keys.append(parse_key(part))
    return keys


def _content(lines: Iterable[str]) -> Iterable[str]:
    return (ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#"))


def codec_from_env(env: Mapping[str, str] | None = None) -> EncryptionCodec | None:
    keys = keys_from_env(env)
    return EncryptionCodec(keys) if keys else None
