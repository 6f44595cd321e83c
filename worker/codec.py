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
import copy
import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec, SerializationContext, WithSerializationContext

ENCODING = b"binary/encrypted"
KEY_ID_META = "encryption-key-id"
# the workflow a payload belongs to: authenticated (in the AES-GCM associated data), so a
# ciphertext copied into another incident's history does not decrypt there
WORKFLOW_META = "encryption-workflow-id"
ENV_ALLOW_PLAINTEXT = "CODEBLUE_CODEC_ALLOW_PLAINTEXT"
# What a payload the worker refuses decodes to: no converter reads it, so the SDK drops that
# one signal (or rejects that one update) instead of failing the whole workflow task, which
# would stop the incident for good (one plaintext signal from a raw client must not).
REFUSED = b"binary/codeblue-refused"
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


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    """Encrypts every payload with the current key, bound to its workflow when the SDK says
    which (serialization context); decrypts with any known key. `strict`: a plaintext payload
    is refused (someone with raw Temporal access wrote it), unless it predates encryption and
    CODEBLUE_CODEC_ALLOW_PLAINTEXT=1 is set while such histories are open."""

    def __init__(self, keys: Sequence[tuple[str, bytes]], strict: bool = True, workflow_id: str | None = None) -> None:
        if not keys:
            raise CodecKeyError("no codec key given")
        self._all = list(keys)
        self.strict = strict
        self.workflow_id = workflow_id
        self.current_id, current = keys[0]
        self._current = AESGCM(current)
        self._keys: dict[str, AESGCM] = {}
        for kid, key in keys:
            self._keys.setdefault(kid, AESGCM(key))

    def with_context(self, context: SerializationContext) -> EncryptionCodec:
        wid = getattr(context, "workflow_id", None)
        if not wid or wid == self.workflow_id:
            return self
        clone = copy.copy(self)
        clone.workflow_id = wid
        return clone

    def bound_to(self, workflow_id: str) -> EncryptionCodec:
        clone = copy.copy(self)
        clone.workflow_id = workflow_id
        return clone

    def lenient(self) -> EncryptionCodec:
        """For the codec server (the UI's decoding): plaintext passes, any binding decodes."""
        clone = copy.copy(self)
        clone.strict, clone.workflow_id = False, None
        return clone

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        if not self.strict or not self.workflow_id:
            return [self._decrypt(p) for p in payloads]
        out = []
        for p in payloads:  # in a workflow: a refused payload spoils only its own command
            try:
                out.append(self._decrypt(p))
            except CodecKeyError as e:
                out.append(Payload(metadata={"encoding": REFUSED}, data=str(e).encode()))
        return out

    def _encrypt(self, p: Payload) -> Payload:
        nonce = os.urandom(12)
        kid = self.current_id.encode()
        meta = {"encoding": ENCODING, KEY_ID_META: kid}
        aad = kid
        if self.workflow_id:
            meta[WORKFLOW_META] = self.workflow_id.encode()
            aad = kid + b"|" + meta[WORKFLOW_META]
        data = nonce + self._current.encrypt(nonce, p.SerializeToString(), aad)
        return Payload(metadata=meta, data=data)

    def _decrypt(self, p: Payload) -> Payload:
        if p.metadata.get("encoding") != ENCODING:
            if self.strict and not _plaintext_allowed():
                raise CodecKeyError("unencrypted payload refused: this namespace's payloads are encrypted "
                                    f"(set {ENV_ALLOW_PLAINTEXT}=1 only while histories from before encryption are open)")
            return p  # written before encryption was turned on
        kid = p.metadata.get(KEY_ID_META, b"").decode()
        aes = self._keys.get(kid)
        if aes is None:
            raise CodecKeyError(f"payload encrypted with unknown key ID {kid!r}")
        bound = p.metadata.get(WORKFLOW_META)
        aad = kid.encode()
        if bound is None and self.workflow_id and self.strict:
            raise CodecKeyError(f"payload is bound to no workflow; {self.workflow_id!r} takes only its own")
        if bound is not None:
            if self.workflow_id and bound.decode() != self.workflow_id:
                raise CodecKeyError(f"payload belongs to workflow {bound.decode()!r}, not {self.workflow_id!r}")
            aad += b"|" + bound
        try:
            return Payload.FromString(aes.decrypt(p.data[:12], p.data[12:], aad))
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


def _plaintext_allowed() -> bool:
    return os.environ.get(ENV_ALLOW_PLAINTEXT, "").strip().lower() in ("1", "true", "yes", "on")


def codec_from_env(env: Mapping[str, str] | None = None) -> EncryptionCodec | None:
    keys = keys_from_env(env)
    return EncryptionCodec(keys) if keys else None
