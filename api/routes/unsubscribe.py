"""One-click unsubscribe (RFC 8058), public: the link in every marketing email's footer and
in its ``List-Unsubscribe`` header.

``POST /u/{token}`` is what mail providers send (body ``List-Unsubscribe=One-Click``, no
cookie, no login): it answers 200, never a redirect. ``GET /u/{token}`` is the footer link in
a browser: a small page with one button that makes that POST. Both act only on a valid
signed token; the withdrawal goes into the consent ledger and the lead's journey is told.
``HEAD /u/{token}`` answers like the page, without a body, and withdraws nothing.
"""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse

from api.deps import HitsDep, SettingsDep, SignerDep
from api.errors import error_responses
from relance.contracts.signals import UNSUBSCRIBED
from relance.services.tracking import Hit

router = APIRouter(prefix="/u", tags=["consent"])


def _page(title: str, body: str, code: int = status.HTTP_200_OK) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        "<meta name='viewport' content='width=device-width'></head>"
        "<body style='font-family:Helvetica,Arial,sans-serif;max-width:480px;margin:64px "
        "auto;color:#222'>"
        f"<h1 style='font-size:20px'>{escape(title)}</h1>{body}</body></html>",
        status_code=code,
        headers={"Cache-Control": "no-store"},
    )


INVALID = (
    "This link is not valid",
    "<p>It may be incomplete or too old. Use the link in a more recent email.</p>",
)


INVALID_LINK = {404: {"description": "Invalid, tampered or expired link (an HTML page)"}}


@router.get("/{token}", response_class=HTMLResponse, responses=INVALID_LINK)
def unsubscribe_page(token: str, signer: SignerDep, settings: SettingsDep) -> HTMLResponse:
    if signer.verify("unsubscribe", token) is None:
        return _page(*INVALID, code=status.HTTP_404_NOT_FOUND)
    return _page(
        f"Unsubscribe from {settings.brand_name} emails?",
        f"<p>You will no longer receive marketing emails from {escape(settings.brand_name)}.</p>"
        f"<form method='post' action='/u/{escape(token)}'>"
        "<input type='hidden' name='List-Unsubscribe' value='One-Click'>"
        "<button type='submit' style='padding:10px 16px'>Unsubscribe</button></form>",
    )


# HEAD answers what GET would, without a body (the server drops it); it never unsubscribes.
router.head(
    "/{token}",
    response_class=HTMLResponse,
    responses=INVALID_LINK,
    summary="Unsubscribe page (headers only)",
)(unsubscribe_page)


@router.post(
    "/{token}",
    response_class=HTMLResponse,
    responses={
        **INVALID_LINK,
        **error_responses(
            503,
            description="The database does not accept writes: nothing was withdrawn, retry (JSON)",
        ),
    },
)
async def unsubscribe(
    token: str, request: Request, signer: SignerDep, hits: HitsDep, settings: SettingsDep
) -> HTMLResponse:
    valid = signer.verify("unsubscribe", token)
    if valid is None:
        return _page(*INVALID, code=status.HTTP_404_NOT_FOUND)
    ip = request.client.host if request.client else None
    # Unlike a pixel, a withdrawal that was not stored must not be confirmed: errors propagate
    # (500).
    await hits.record(Hit(valid, UNSUBSCRIBED, request.headers.get("user-agent"), ip))
    return _page(
        "You are unsubscribed",
        f"<p>You will not receive marketing emails from {escape(settings.brand_name)} any "
        "more.</p>",
    )
