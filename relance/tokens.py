"""Signed, tamper-proof tokens for the public tracking links (itsdangerous).

A token carries ids only (message, lead, workflow) and, for clicks, the destination URL, so
the click endpoint redirects to exactly the URL that was signed and nowhere else. Each kind of
link has its own salt: an open token is not a valid click or unsubscribe token, and a click
token is not a valid double opt-in confirmation token (``confirm``, which expires sooner).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer

KINDS = ("open", "click", "unsubscribe", "confirm")


@dataclass(frozen=True)
class TrackingToken:
    kind: str
    message_id: str
    lead_id: str
    workflow_id: str
    url: str | None = None


def is_web_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


class TokenSigner:
    def __init__(self, secret_key: str, *, max_age_seconds: int, max_age_by_kind: dict[str, int] | None = None) -> None:
        """``max_age_seconds``: how long a link stays valid; ``max_age_by_kind`` overrides it per kind."""
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
        """The token's content, or None when it is forged, tampered with, expired or malformed."""
        try:
            payload = self._serializers[kind].loads(value, max_age=self.max_age_by_kind.get(kind, self.max_age_seconds))
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
        return TrackingToken(kind, *ids, url=url)
