"""Double opt-in confirmation (seed 000), public: the link in the confirmation email.

``GET /confirm/{token}`` acts only on a valid signed ``confirm`` token (its own kind: a click or
unsubscribe token is refused, and it expires after ``RELANCE_DOUBLE_OPT_IN_HOURS`` plus an hour).
The lead's pending email consent becomes granted, with the click's IP and user agent as proof,
and the welcome journey waiting for it is told through the durable outbox (relance/outbox.py),
like a tracking hit: the page never waits for Temporal, and Temporal being down loses nothing.
Clicked twice, the link grants once and signals once. A forged, tampered or expired token, or a
lead erased since, gets a 404 page and changes nothing.
"""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse
from sqlmodel import Session

from api.deps import DatabaseDep, HitsDep, SettingsDep, SignerDep
from api.routes.unsubscribe import _page
from relance.consent import latest_consent
from relance.models import Lead
from relance.tracking import Hit
from workflows.signals import EMAIL_CONFIRMED

router = APIRouter(prefix="/confirm", tags=["consent"])

INVALID = ("This link is not valid",
           "<p>It may be incomplete or too old. Sign up again and use the link in the new email.</p>")


def email_consent_state(*, session: Session, lead_id: str) -> str:
    """The lead's email consent now: pending | granted | withdrawn | none, or "" for no such lead."""
    if session.get(Lead, lead_id) is None:
        return ""
    row = latest_consent(session, lead_id, "email")
    return row.status if row else "none"


@router.get("/{token}", response_class=HTMLResponse,
            responses={404: {"description": "Invalid, tampered or expired link (an HTML page)"},
                       409: {"description": "Nothing to confirm: the lead unsubscribed meanwhile (an HTML page)"}})
async def confirm_subscription(token: str, request: Request, signer: SignerDep, hits: HitsDep, db: DatabaseDep,
                               settings: SettingsDep) -> HTMLResponse:
    """Confirms the lead's email subscription (double opt-in) and answers a small page."""
    valid = signer.verify("confirm", token)
    if valid is None:
        return _page(*INVALID, code=status.HTTP_404_NOT_FOUND)
    state = await db.run(email_consent_state, lead_id=valid.lead_id)
    brand = escape(settings.brand_name)
    if state == "":
        return _page(*INVALID, code=status.HTTP_404_NOT_FOUND)
    if state == "granted":
        return _page("Your subscription is confirmed", f"<p>It was confirmed already. Thank you! {brand} will be in "
                                                       "touch soon.</p>")
    if state != "pending":
        return _page("Nothing to confirm", f"<p>You unsubscribed from {brand} emails since this email was sent. "
                                           "Sign up again if you want them.</p>", code=status.HTTP_409_CONFLICT)
    ip = request.client.host if request.client else None
    # Like an unsubscribe: a confirmation that was not stored is not announced (errors propagate: 500).
    await hits.record(Hit(valid, EMAIL_CONFIRMED, request.headers.get("user-agent"), ip))
    return _page("Thank you, your subscription is confirmed",
                 f"<p>You will receive the {brand} emails you asked for. You can unsubscribe at any time, "
                 "in one click, from any of them.</p>")
