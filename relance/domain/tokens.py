"""Signed, tamper-proof tokens for the public tracking links (itsdangerous).

A token carries ids only (message, lead, workflow) and, for clicks, the destination URL, so
the click endpoint redirects to exactly the URL that was signed and nowhere else. Each kind of
link has its own salt: an open token is not a valid click or unsubscribe token, and a click
token is not a valid double opt-in confirmation token (``confirm``, which expires sooner); a
preference-page token (``preferences``, ``/p/{token}``) is none of the others.

One token is one string: only the exact spelling ``sign`` produced is accepted. itsdangerous
alone also accepts other spellings of the same token (padding ``=`` added, characters outside
base64 dropped — ``%FF``, an emoji —, or the signature's last character changed in its unused
bits), so a dedupe or replay rule keyed on the token string could be walked around.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from itsdangerous import BadData, BadSignature, URLSafeTimedSerializer
from itsdangerous.encoding import base64_decode, base64_encode

KINDS = ("open", "click", "unsubscribe", "confirm", "preferences")

# What ``URLSafeTimedSerializer.dumps`` writes: payload (a leading "." when compressed),
# timestamp and signature, each in unpadded URL-safe base64, joined by ".".
_CANONICAL_SHAPE = re.compile(r"\.?[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class TrackingToken:
    kind: str
    message_id: str
    lead_id: str
    workflow_id: str
    url: str | None = None
    # When the link was signed (the message rendered): read from a verified token, never signed.
    signed_at: datetime | None = field(default=None, compare=False)


def is_canonical(value: str) -> bool:
    """True when ``value`` is spelled exactly as a signer writes it: strict URL-safe base64
    parts, no padding, and each part the one encoding of what it decodes to (no slack bits)."""
    if not _CANONICAL_SHAPE.fullmatch(value):
        return False
    try:
        return all(
            base64_encode(base64_decode(part)).decode("ascii") == part
            for part in value.lstrip(".").split(".")
        )
    except (BadData, ValueError):
        return False


def is_web_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


class TokenSigner:
    def __init__(
        self,
        secret_key: str,
        *,
        max_age_seconds: int,
        max_age_by_kind: dict[str, int] | None = None,
    ) -> None:
        """``max_age_seconds``: how long a link stays valid; ``max_age_by_kind`` overrides it per
        kind."""
        if not secret_key:
            raise ValueError("RELANCE_SECRET_KEY is empty: tracking links cannot be signed")
        self._serializers = {
            kind: URLSafeTimedSerializer(secret_key, salt=f"relance.{kind}") for kind in KINDS
        }
        self.max_age_seconds = max_age_seconds
        self.max_age_by_kind = dict(max_age_by_kind or {})

    def sign(self, token: TrackingToken) -> str:
        if token.kind == "click" and not (token.url and is_web_url(token.url)):
            raise ValueError(f"a click token needs an http(s) destination, got {token.url!r}")
        payload = {"m": token.message_id, "l": token.lead_id, "w": token.workflow_id}
        if token.url:
            payload["u"] = token.url
        return self._serializers[token.kind].dumps(payload)

    def verify(self, kind: str, value: str) -> TrackingToken | None:
        """The token's content, or None when it is forged, tampered with, expired, malformed or not
        spelled exactly as it was signed."""
        if not isinstance(value, str) or not is_canonical(value):
            return None
        try:
            payload, signed_at = self._serializers[kind].loads(
                value,
                max_age=self.max_age_by_kind.get(kind, self.max_age_seconds),
                return_timestamp=True,
            )
        except (BadSignature, KeyError, ValueError, TypeError):
            return None
        if not isinstance(payload, dict):
            return None
        ids = [payload.get(k) for k in ("m", "l", "w")]
        if not all(isinstance(v, str) and v for v in ids):
            return None
        url = payload.get("u")
        if kind == "click" and not (isinstance(url, str) and is_web_url(url)):
            return None
        return TrackingToken(kind, *ids, url=url, signed_at=signed_at)
