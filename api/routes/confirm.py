"""Double opt-in confirmation, public: the link in the confirmation email.

``GET /confirm/{token}`` is the link in a browser: a small page with one button, and it changes
nothing. Corporate link scanners and mail security gateways open every link of an email they
deliver: a GET that confirmed would sign up whoever a stranger typed in. ``POST /confirm/{token}``
(the button) confirms. ``HEAD`` answers like the GET, without a body (``curl -I``).

Both act only on a valid signed ``confirm`` token (its own kind: a click or unsubscribe token is
refused, and it expires after ``RELANCE_DOUBLE_OPT_IN_HOURS`` plus an hour). The POST turns the
lead's pending email consent into a grant, with the IP and user agent of the browser that
pressed the button as proof, and the welcome journey waiting for it is told through the durable
outbox (relance/services/outbox.py), like a tracking hit: the page never waits for Temporal, and
Temporal being down loses nothing. Pressed twice, it grants once and signals once. A forged,
tampered or expired token, or a lead erased since, gets a 404 page and changes nothing. Every answer
is a page on this site: no redirect.
"""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse
from sqlmodel import Session

from api.deps import Database, DatabaseDep, HitsDep, SettingsDep, SignerDep
from api.routes.unsubscribe import _page
from relance.contracts.signals import EMAIL_CONFIRMED
from relance.domain.consent import latest_consent
from relance.domain.models import Lead
from relance.domain.settings import Settings
from relance.domain.tokens import TokenSigner, TrackingToken
from relance.services.tracking import Hit

router = APIRouter(prefix="/confirm", tags=["consent"])

INVALID = (
    "This link is not valid",
    "<p>It may be incomplete or too old. Sign up again and use the link in the new email.</p>",
)


def email_consent_state(*, session: Session, lead_id: str) -> str:
    """The lead's email consent now: pending | granted | withdrawn | none, or "" for no such
    lead."""
    if session.get(Lead, lead_id) is None:
        return ""
    row = latest_consent(session, lead_id, "email")
    return row.status if row else "none"


RESPONSES = {
    404: {"description": "Invalid, tampered or expired link (an HTML page)"},
    409: {"description": "Nothing to confirm: the lead unsubscribed meanwhile (an HTML page)"},
}


async def _settled(
    token: str, signer: TokenSigner, db: Database, settings: Settings
) -> tuple[TrackingToken | None, HTMLResponse | None]:
    """The valid token, and the page to answer instead of confirming (None: the consent is
    pending)."""
    valid = signer.verify("confirm", token)
    if valid is None:
        return None, _page(*INVALID, code=status.HTTP_404_NOT_FOUND)
    state = await db.run(email_consent_state, lead_id=valid.lead_id)
    brand = escape(settings.brand_name)
    if state == "":
        return None, _page(*INVALID, code=status.HTTP_404_NOT_FOUND)
    if state == "granted":
        return valid, _page(
            "Your subscription is confirmed",
            f"<p>It was confirmed already. Thank you! {brand} will be in touch soon.</p>",
        )
    if state != "pending":
        return valid, _page(
            "Nothing to confirm",
            f"<p>You unsubscribed from {brand} emails since this email was sent. "
            "Sign up again if you want them.</p>",
            code=status.HTTP_409_CONFLICT,
        )
    return valid, None


@router.get("/{token}", response_class=HTMLResponse, responses=RESPONSES)
async def confirmation_page(
    token: str, signer: SignerDep, db: DatabaseDep, settings: SettingsDep
) -> HTMLResponse:
    """The page with the button that confirms; opening it (a person or a link scanner) changes
    nothing."""
    _, settled = await _settled(token, signer, db, settings)
    if settled is not None:
        return settled
    brand = escape(settings.brand_name)
    return _page(
        f"Confirm your subscription to {settings.brand_name}",
        f"<p>Press the button to confirm that this is your address and that you want {brand} "
        "emails. "
        "Did not sign up? Close this page: without your confirmation you will not hear from us.</p>"
        f"<form method='post' action='/confirm/{escape(token)}'>"
        "<button type='submit' style='padding:10px 16px'>Yes, subscribe me</button></form>",
    )


# HEAD answers what GET would, without a body (the server drops it); it never confirms.
router.head(
    "/{token}",
    response_class=HTMLResponse,
    responses=RESPONSES,
    summary="Confirmation page (headers only)",
)(confirmation_page)


@router.post("/{token}", response_class=HTMLResponse, responses=RESPONSES)
async def confirm_subscription(
    token: str,
    request: Request,
    signer: SignerDep,
    hits: HitsDep,
    db: DatabaseDep,
    settings: SettingsDep,
) -> HTMLResponse:
    """Confirms the lead's email subscription (double opt-in) and answers a small page."""
    valid, settled = await _settled(token, signer, db, settings)
    if settled is not None:
        return settled
    ip = request.client.host if request.client else None
    # Like an unsubscribe: a confirmation that was not stored is not announced (errors propagate).
    await hits.record(Hit(valid, EMAIL_CONFIRMED, request.headers.get("user-agent"), ip))
    return _page(
        "Thank you, your subscription is confirmed",
        f"<p>You will receive the {escape(settings.brand_name)} emails you asked for. You can "
        "unsubscribe "
        "at any time, in one click, from any of them.</p>",
    )
