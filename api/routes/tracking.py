"""Public tracking endpoints, hit by mail clients and browsers: the open pixel and click redirect.

No API key: they act only on a valid signed token. They never wait for Temporal: the hit is
committed to the outbox (in a group commit with its neighbours) and signalled to the journey
in the background (relance.services.outbox). A forged, tampered or expired token signals nothing:
the
pixel is still served (mail clients get no error page), the click answers 404 and redirects
nowhere. If the database fails, the lead still gets the GIF or the redirect; the error is logged.

Each open and click is classified human or machine (Apple's privacy proxy, link scanners,
prefetches, too soon after sending: relance/domain/engagement.py, docs/engagement.md) from the
request alone, before it is stored; a machine's click is kept but not told to its journey.

``HEAD`` answers what ``GET`` would (status and headers, no body: ``curl -I`` and link checkers)
and records nothing: a HEAD is never an open or a click.
"""

from __future__ import annotations

import base64
import logging
from datetime import timedelta

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.responses import RedirectResponse

from api.deps import HitsDep, SettingsDep, SignerDep
from relance.contracts.signals import CLICKED, OPENED
from relance.domain.engagement import classify
from relance.domain.models import utcnow
from relance.domain.settings import Settings
from relance.domain.tokens import TokenSigner, TrackingToken
from relance.services.tracking import Hit, HitRecorder

router = APIRouter(prefix="/t", tags=["tracking"])
log = logging.getLogger("relance.api")

# A 1x1 transparent GIF (43 bytes).
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
}


async def keep(
    hits: HitRecorder, settings: Settings, request: Request, token: TrackingToken, kind: str
) -> None:
    """Opens are answered without waiting for their group commit; clicks wait for theirs. Each
    hit is classified human or machine here, from the request alone (no I/O)."""
    user_agent = request.headers.get("user-agent")
    ip = request.client.host if request.client else None
    seen = classify(
        user_agent=user_agent,
        ip=ip,
        headers=request.headers,
        signed_at=token.signed_at,
        received_at=utcnow(),
        too_fast=timedelta(seconds=settings.tracking_machine_seconds),
    )
    hit = Hit(token, kind, user_agent, ip, seen.machine, seen.reason)
    try:
        await hits.record(hit, wait=kind != OPENED)
    except Exception:  # logged by the recorder; the mail client must not see an error
        log.warning("tracking: %s hit for message %s was not stored", kind, token.message_id)


PIXEL_RESPONSES = {200: {"content": {"image/gif": {}}}}
CLICK_RESPONSES = {404: {"description": "Unknown or invalid link"}}


def pixel() -> Response:
    return Response(PIXEL, media_type="image/gif", headers=NO_CACHE)


def destination(signer: TokenSigner, token: str) -> TrackingToken:
    valid = signer.verify("click", token)
    if valid is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this link is not valid")
    return valid


def redirect(valid: TrackingToken) -> RedirectResponse:
    return RedirectResponse(valid.url, status_code=status.HTTP_302_FOUND, headers=NO_CACHE)


@router.get("/o/{token}", response_class=Response, responses=PIXEL_RESPONSES)
async def open_pixel(
    token: str, request: Request, signer: SignerDep, hits: HitsDep, settings: SettingsDep
) -> Response:
    valid = signer.verify("open", token)
    if valid is not None:
        await keep(hits, settings, request, valid, OPENED)
    return pixel()


@router.head(
    "/o/{token}",
    response_class=Response,
    responses=PIXEL_RESPONSES,
    summary="Open pixel (headers only)",
)
async def open_pixel_head(token: str) -> Response:
    return pixel()


@router.get("/c/{token}", status_code=status.HTTP_302_FOUND, responses=CLICK_RESPONSES)
async def click_redirect(
    token: str, request: Request, signer: SignerDep, hits: HitsDep, settings: SettingsDep
) -> RedirectResponse:
    valid = destination(signer, token)
    await keep(hits, settings, request, valid, CLICKED)
    return redirect(valid)


@router.head(
    "/c/{token}",
    status_code=status.HTTP_302_FOUND,
    responses=CLICK_RESPONSES,
    summary="Click redirect (headers only)",
)
async def click_redirect_head(token: str, signer: SignerDep) -> RedirectResponse:
    return redirect(destination(signer, token))
