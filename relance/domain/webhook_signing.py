"""How Relance signs what it POSTs to a receiver (the CRM's MQL webhook, the webhook channel), and
how the receiver checks it.

``X-Relance-Signature: sha256=<hex HMAC-SHA256>`` of the body with the shared secret;
``X-Relance-Delivery``: the delivery's id, the same on every retry, so the receiver can drop a
second copy after a lost answer. With a timestamp (``X-Relance-Timestamp``, Unix seconds), what
is signed is ``<timestamp>.<body>``: a receiver that refuses old timestamps cannot be replayed a
captured request days later.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Relance-Signature"
TIMESTAMP_HEADER = "X-Relance-Timestamp"
DELIVERY_HEADER = "X-Relance-Delivery"


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    signed = body if timestamp is None else f"{timestamp}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def verify(
    secret: str,
    body: bytes,
    signature: str,
    timestamp: int | str | None = None,
    *,
    tolerance_seconds: float | None = None,
    now: float | None = None,
) -> bool:
    """What the receiving end does (docs/channels.md). ``tolerance_seconds``: refuse a timestamp
    further than this from ``now``."""
    if timestamp is not None:
        try:
            timestamp = int(timestamp)
        except ValueError:
            return False
        if tolerance_seconds is not None:
            if abs((time.time() if now is None else now) - timestamp) > tolerance_seconds:
                return False
    return hmac.compare_digest(sign(secret, body, timestamp), signature)


def signed_headers(
    secret: str, body: bytes, delivery_id: str, *, timestamp: int | None = None
) -> dict[str, str]:
    """The headers of one signed JSON POST."""
    headers = {
        "Content-Type": "application/json",
        DELIVERY_HEADER: delivery_id,
        "User-Agent": "Relance",
    }
    if timestamp is not None:
        headers[TIMESTAMP_HEADER] = str(timestamp)
    headers[SIGNATURE_HEADER] = sign(secret, body, timestamp)
    return headers
