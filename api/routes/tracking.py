"""Public tracking endpoints, hit by mail clients and browsers: the open pixel and click redirect.

No API key: they act only on a valid signed token. They answer at once — the hit is stored
and signalled to the journey in the background (relance.outbox). A forged, tampered or
expired token signals nothing: the pixel is still served (mail clients get no error page),
the click answers 404 and redirects nowhere.
"""

from __future__ import annotations

import base64

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse

from api.deps import OutboxDep, SignerDep
from relance.tracking import record_hit
from workflows.signals import CLICKED, OPENED

router = APIRouter(prefix="/t", tags=["tracking"])

# A 1x1 transparent GIF (43 bytes).
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
NO_CACHE = {"Cache-Control": "no-store, no-cache, must-revalidate, max-age=0", "Pragma": "no-cache", "Expires": "0"}


def _client(request: Request) -> tuple[str | None, str | None]:
    return request.headers.get("user-agent"), request.client.host if request.client else None


@router.get("/o/{token}", response_class=Response, responses={200: {"content": {"image/gif": {}}}})
async def open_pixel(token: str, request: Request, signer: SignerDep, outbox: OutboxDep) -> Response:
    hit = signer.verify("open", token)
    if hit is not None:
        user_agent, ip = _client(request)
        await run_in_threadpool(record_hit, request.app.state.engine, hit, kind=OPENED, user_agent=user_agent, ip=ip)
        outbox.wake()
    return Response(PIXEL, media_type="image/gif", headers=NO_CACHE)


@router.get("/c/{token}", status_code=status.HTTP_302_FOUND, responses={404: {"description": "Unknown or invalid link"}})
async def click_redirect(token: str, request: Request, signer: SignerDep, outbox: OutboxDep) -> RedirectResponse:
    hit = signer.verify("click", token)
    if hit is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this link is not valid")
    user_agent, ip = _client(request)
    await run_in_threadpool(record_hit, request.app.state.engine, hit, kind=CLICKED, user_agent=user_agent, ip=ip)
    outbox.wake()
    return RedirectResponse(hit.url, status_code=status.HTTP_302_FOUND, headers=NO_CACHE)
