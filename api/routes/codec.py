"""The codec server: lets the Temporal UI and CLI show decrypted payloads to an operator.

Temporal's codec-server protocol: ``POST /codec/decode`` and ``POST /codec/encode`` take and
return ``{"payloads": [{"metadata": {...base64...}, "data": "...base64..."}]}`` (proto3 JSON),
with an ``X-Namespace`` header. Point the UI at it with ``--ui-codec-endpoint`` (dev server) or
``TEMPORAL_CODEC_ENDPOINT`` (the UI container), the CLI with
``--codec-endpoint http://localhost:8000/codec --codec-auth "Bearer $KEY"``.

Who may call it (it decrypts lead data):
- a script or the CLI: the API key, in ``X-API-Key`` or as ``Authorization: Bearer <key>``;
- the Temporal UI, which can send neither: a browser session cookie, obtained once by entering
  the API key at ``GET /codec/login``. In ``make run`` the UI and this codec share one origin
  (relance/dev/devui.py serves the UI's port), so the browser sends the cookie on its own. A UI on
  another origin (docker-compose.yml) sends it when its codec setting "Include cross-origin
  credentials" is on (``TEMPORAL_CODEC_INCLUDE_CREDENTIALS=true``); the UI and the API must then
  be on the same site (e.g. both on ``localhost``), and the UI's origin must be in
  ``RELANCE_CODEC_CORS_ORIGINS``.
"""

from __future__ import annotations

import hmac
from html import escape
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.responses import HTMLResponse, JSONResponse
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from itsdangerous import BadSignature, URLSafeTimedSerializer
from temporalio.api.common.v1 import Payloads

from api.deps import SettingsDep
from relance.domain.audit import key_fingerprint
from relance.domain.encryption import EncryptionCodec, codec_from_settings
from relance.domain.settings import Settings

router = APIRouter(prefix="/codec", tags=["codec"])

COOKIE = "relance_codec"
SESSION_SECONDS = 8 * 3600
ALLOWED_HEADERS = "content-type, x-namespace, authorization, x-api-key"


def _sessions(settings: Settings) -> URLSafeTimedSerializer:
    if not settings.secret_key:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "no secret key is configured on the server (RELANCE_SECRET_KEY)",
        )
    return URLSafeTimedSerializer(settings.secret_key, salt="relance.codec-session")


def _key_matches(settings: Settings, candidate: str | None) -> bool:
    return bool(
        settings.api_key
        and candidate
        and hmac.compare_digest(candidate.encode(), settings.api_key.encode())
    )


def _authorised(request: Request, settings: Settings) -> bool:
    bearer = request.headers.get("authorization", "")
    if _key_matches(settings, request.headers.get("x-api-key")):
        return True
    if bearer[:7].lower() == "bearer " and _key_matches(settings, bearer[7:].strip()):
        return True
    cookie = request.cookies.get(COOKIE)
    if cookie and settings.secret_key and settings.api_key:
        # the session names the key it was opened with: changing the API key ends every session
        try:
            return _sessions(settings).loads(cookie, max_age=SESSION_SECONDS) == key_fingerprint(
                settings.api_key
            )
        except BadSignature:
            return False
    return False


def _cors(request: Request, settings: Settings, response: Response) -> Response:
    origin = request.headers.get("origin")
    if origin and origin in settings.codec_cors_origins:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"
        response.headers["Vary"] = "Origin"
    return response


def _codec(request: Request) -> EncryptionCodec:
    codec = getattr(request.app.state, "codec", None)
    if codec is None:
        codec = request.app.state.codec = codec_from_settings(request.app.state.settings)
    return codec


async def _apply(request: Request, settings: Settings, op: str) -> Response:
    if not _authorised(request, settings):
        return _cors(
            request,
            settings,
            JSONResponse(
                {
                    "detail": "the codec needs the API key (X-API-Key or Authorization: Bearer) or "
                    "a session from /codec/login"
                },
                status_code=status.HTTP_401_UNAUTHORIZED,
            ),
        )
    try:
        payloads = json_format.Parse(await request.body(), Payloads())
    except (json_format.ParseError, DecodeError, UnicodeDecodeError) as err:
        return _cors(
            request,
            settings,
            JSONResponse(
                {"detail": f'the body must be {{"payloads": [...]}} in proto3 JSON: {err}'},
                status_code=400,
            ),
        )
    codec = _codec(request)
    try:
        done = await (
            codec.encode(payloads.payloads) if op == "encode" else codec.decode(payloads.payloads)
        )
    except Exception as err:  # wrong key, tampered data: say so, never crash the UI's page
        return _cors(
            request,
            settings,
            JSONResponse(
                {"detail": f"could not {op}: {type(err).__name__} {err}"}, status_code=400
            ),
        )
    body = json_format.MessageToJson(Payloads(payloads=done))
    return _cors(request, settings, Response(body, media_type="application/json"))


RESPONSES = {
    400: {
        "description": 'Not {"payloads": [...]} in proto3 JSON, or payloads that cannot be decoded'
    },
    401: {
        "description": "No API key (X-API-Key or Authorization: Bearer) and no session from "
        "/codec/login"
    },
}


@router.post(
    "/decode", summary="Decrypt payloads (Temporal codec-server protocol)", responses=RESPONSES
)
async def decode(request: Request, settings: SettingsDep) -> Response:
    return await _apply(request, settings, "decode")


@router.post(
    "/encode", summary="Encrypt payloads (Temporal codec-server protocol)", responses=RESPONSES
)
async def encode(request: Request, settings: SettingsDep) -> Response:
    return await _apply(request, settings, "encode")


@router.options("/decode", include_in_schema=False)
@router.options("/encode", include_in_schema=False)
def preflight(request: Request, settings: SettingsDep) -> Response:
    return _cors(request, settings, Response(status_code=status.HTTP_204_NO_CONTENT))


def _login_page(message: str = "", code: int = 200) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html><head><meta charset='utf-8'><title>Relance codec</title></head>"
        "<body style='font-family:Helvetica,Arial,sans-serif;max-width:480px;margin:64px "
        "auto;color:#222'>"
        "<h1 style='font-size:20px'>Let this browser's Temporal UI decrypt payloads</h1>"
        f"<p>{escape(message)}</p>"
        "<form method='post' action='/codec/login'><label>API key <input type='password' "
        "name='api_key' "
        "autocomplete='off' required></label> <button type='submit'>Open a session (8 "
        "h)</button></form>"
        "<p>Then open (or reload) the Temporal UI in this browser: it shows the journeys "
        "decrypted. With "
        "<code>make run</code> that is all; a UI served from another origin than this page also "
        "needs its codec "
        "setting <em>Include cross-origin credentials</em> (docker-compose.yml turns it on).</p>"
        "</body></html>",
        status_code=code,
        headers={"Cache-Control": "no-store"},
    )


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
def login_page() -> HTMLResponse:
    return _login_page()


@router.post("/login", response_class=HTMLResponse, include_in_schema=False)
async def login(request: Request, settings: SettingsDep) -> Response:
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    if not _key_matches(settings, (form.get("api_key") or [""])[0]):
        return _login_page("That is not the API key.", code=status.HTTP_401_UNAUTHORIZED)
    response = _login_page(
        "Session open: the Temporal UI in this browser can decrypt payloads for 8 hours."
    )
    response.set_cookie(
        COOKIE,
        _sessions(settings).dumps(key_fingerprint(settings.api_key)),
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/codec",
    )
    return response
