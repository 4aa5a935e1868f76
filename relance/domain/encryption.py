"""Every payload Temporal stores is encrypted: AES-256-GCM, keys from settings, rotated by key id.

Workflow inputs carry ids only, but activity results, signals, queries and failures still say
things about a lead; with this codec Temporal's history holds ciphertext only, readable by the
worker, the API and an operator's Temporal UI going through the API's codec endpoint.

    RELANCE_PAYLOAD_KEYS='{"k2026a": "<base64 of 32 random bytes>", "k2025": "<older key>"}'
    RELANCE_PAYLOAD_KEY_ID=k2026a     # encrypts; every key listed still decrypts

An encrypted payload is ``{"encoding": "binary/encrypted", "encryption-key-id": <id>}`` with
data = 12-byte nonce + ciphertext of the whole serialized plain payload (its metadata too); the
key id is the authenticated associated data, so a payload cannot be passed off under another
key. Payloads that are not encrypted (histories written before encryption was turned on) are
passed through as they are: the journeys they belong to keep running after the upgrade.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12


class EncryptionConfigError(ValueError):
    """The payload keys in settings are missing or malformed."""


class EncryptionCodec(PayloadCodec):
    def __init__(self, keys: Mapping[str, bytes], current_key_id: str) -> None:
        if not keys:
            raise EncryptionConfigError("no payload key configured (RELANCE_PAYLOAD_KEYS)")
        if current_key_id not in keys:
            raise EncryptionConfigError(
                f"RELANCE_PAYLOAD_KEY_ID {current_key_id!r} is not one of RELANCE_PAYLOAD_KEYS "
                f"({', '.join(sorted(keys))})"
            )
        for key_id, key in keys.items():
            if len(key) != 32:
                raise EncryptionConfigError(
                    f"payload key {key_id!r} is {len(key)} bytes; AES-256 needs 32"
                )
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.current_key_id = current_key_id

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        key_id = self.current_key_id
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[key_id].encrypt(nonce, payload.SerializeToString(), key_id.encode())
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID: key_id.encode()}, data=nonce + sealed
        )

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # written before encryption was on: plain already
        key_id = payload.metadata.get(KEY_ID, b"").decode()
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise ValueError(
                f"payload encrypted with key {key_id!r}, which is not in RELANCE_PAYLOAD_KEYS"
            )
        data = payload.data
        plain = cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], key_id.encode())
        decoded = Payload()
        decoded.ParseFromString(plain)
        return decoded


def parse_keys(keys: Mapping[str, str]) -> dict[str, bytes]:
    parsed = {}
    for key_id, value in keys.items():
        if not key_id or not key_id.isascii():
            raise EncryptionConfigError(f"payload key id {key_id!r} must be non-empty ASCII")
        try:
            parsed[key_id] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as err:
            raise EncryptionConfigError(f"payload key {key_id!r} is not base64: {err}") from err
    return parsed


def codec_from_settings(settings) -> EncryptionCodec:
    """The codec for ``settings`` (``payload_keys``, ``payload_key_id``); raises a clear error
    when they are missing: Relance does not write lead data to Temporal in clear."""
    if not settings.payload_keys:
        raise EncryptionConfigError(
            "RELANCE_PAYLOAD_KEYS is not set: Temporal payloads must be encrypted. `make run` "
            "writes one to .env; "
            "in production generate one with `python -m relance.domain.encryption` and keep it "
            "secret"
        )
    keys = parse_keys(settings.payload_keys)
    current = settings.payload_key_id or (next(iter(keys)) if len(keys) == 1 else "")
    if not current:
        raise EncryptionConfigError(
            "RELANCE_PAYLOAD_KEY_ID must say which of RELANCE_PAYLOAD_KEYS encrypts"
        )
    return EncryptionCodec(keys, current)


def data_converter(settings) -> DataConverter:
    """The converter every Temporal client of Relance uses: JSON payloads, encrypted; failure
    messages and stack traces go into an encrypted payload too (they can quote an address)."""
    return encrypted_converter(codec_from_settings(settings))


def encrypted_converter(codec: PayloadCodec) -> DataConverter:
    return dataclasses.replace(
        DataConverter.default,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def new_key() -> tuple[str, str]:
    """A fresh (key id, base64 key) pair."""
    return f"k{secrets.token_hex(4)}", base64.b64encode(secrets.token_bytes(32)).decode()


def keys_env_value(keys: Iterable[tuple[str, str]]) -> str:
    import json

    return json.dumps(dict(keys), separators=(",", ":"))


if __name__ == "__main__":  # python -m relance.domain.encryption: print a new key for production
    key_id, key = new_key()
    print(f"RELANCE_PAYLOAD_KEYS='{keys_env_value([(key_id, key)])}'")
    print(f"RELANCE_PAYLOAD_KEY_ID={key_id}")
    print(
        "# to rotate: add the new key to RELANCE_PAYLOAD_KEYS beside the old ones and point "
        "RELANCE_PAYLOAD_KEY_ID at it"
    )
