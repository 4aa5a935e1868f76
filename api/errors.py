"""How the API answers what goes wrong: always JSON, always ``{"detail": ...}``, bounded.

- 422 (bad input): ``detail`` is a list of ``{loc, msg, type[, input, ctx]}``, as OpenAPI documents
  it (``HTTPValidationError``), whether pydantic found the problem or the code did
  (:func:`unprocessable`). The input is echoed truncated: a 20 MB field is not sent back.
- every other error: ``detail`` is a sentence (:class:`ErrorBody`).
- 413: a request body over the limit (:class:`BodyLimit`), counted while it is read, so a
  200 MB upload is refused after the first few MB (or at once from its Content-Length).
- 500: an unexpected exception is logged with an id, and the caller gets that id in JSON.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("relance.api")

# What a 422 echoes of the input: strings cut to this many characters, lists and objects to this
# many entries, nesting to this depth; at most this many errors are listed.
ECHO_CHARS = 200
ECHO_ITEMS = 10
ECHO_DEPTH = 4
MAX_ERRORS = 20


class ErrorBody(BaseModel):
    """Every error but a 422 (which is ``HTTPValidationError``)."""

    detail: str = Field(description="What went wrong, for a person to read")


def error_responses(*codes: int) -> dict[int, dict]:
    """OpenAPI ``responses`` entries for errors answered with :class:`ErrorBody`."""
    descriptions = {
        status.HTTP_409_CONFLICT: "Conflicts with what is stored",
        status.HTTP_413_CONTENT_TOO_LARGE: "The request body is over the size limit (RELANCE_MAX_REQUEST_BYTES)",
        status.HTTP_500_INTERNAL_SERVER_ERROR: "An unexpected error; the server's log has it under the id given",
    }
    return {code: {"model": ErrorBody, "description": descriptions.get(code, "Error")} for code in codes}


def validation_response(description: str) -> dict:
    """An OpenAPI 422 entry with its own description and the standard body."""
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}}}


def unprocessable(msg: str, *loc: str | int) -> HTTPException:
    """A 422 raised by the code, in the documented shape (``loc`` defaults to the body)."""
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                         [{"loc": list(loc) or ["body"], "msg": msg, "type": "value_error"}])


def bounded(value: Any, depth: int = 0) -> Any:
    """The value as a 422 may echo it: short, and valid JSON (NaN and Infinity as text)."""
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value[:ECHO_CHARS * 4]).decode("utf-8", "replace") + ("…" if len(value) > ECHO_CHARS * 4 else "")
    if isinstance(value, str):
        return value if len(value) <= ECHO_CHARS else f"{value[:ECHO_CHARS]}… ({len(value)} characters)"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if depth >= ECHO_DEPTH:
        return "…"
    if isinstance(value, Mapping):
        items = list(value.items())
        out = {str(bounded(k, ECHO_DEPTH)): bounded(v, depth + 1) for k, v in items[:ECHO_ITEMS]}
        if len(items) > ECHO_ITEMS:
            out["…"] = f"{len(items) - ECHO_ITEMS} more entries"
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
        out = [bounded(v, depth + 1) for v in items[:ECHO_ITEMS]]
        if len(items) > ECHO_ITEMS:
            out.append(f"… {len(items) - ECHO_ITEMS} more items")
        return out
    return bounded(str(value), depth)


def bounded_errors(errors: list[Any]) -> list[dict]:
    out = []
    for error in errors[:MAX_ERRORS]:
        item = {"loc": [p if isinstance(p, int) else str(bounded(p, ECHO_DEPTH)) for p in error.get("loc", ())],
                "msg": str(error.get("msg", "")), "type": str(error.get("type", "value_error"))}
        if "input" in error:
            item["input"] = bounded(error["input"])
        if isinstance(error.get("ctx"), Mapping):
            item["ctx"] = bounded(dict(error["ctx"]), 1)
        out.append(item)
    if len(errors) > MAX_ERRORS:
        out.append({"loc": [], "msg": f"and {len(errors) - MAX_ERRORS} more errors", "type": "too_many_errors"})
    return out


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": jsonable_encoder(bounded_errors(list(exc.errors())))},
                        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


async def http_error(request: Request, exc: StarletteHTTPException):
    if exc.status_code == status.HTTP_422_UNPROCESSABLE_CONTENT:
        detail = exc.detail if isinstance(exc.detail, list) else [{"loc": [], "msg": str(exc.detail), "type": "value_error"}]
        return JSONResponse({"detail": jsonable_encoder(bounded_errors(detail))}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))
    return await http_exception_handler(request, exc)


async def server_error(request: Request, exc: Exception) -> JSONResponse:
    error_id = uuid.uuid4().hex[:12]
    log.error("unexpected error %s on %s %s", error_id, request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": f"unexpected server error; the server's log has it as {error_id}"},
                        status_code=status.HTTP_500_INTERNAL_SERVER_ERROR)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, server_error)


# Request size ----------------------------------------------------------------------------------
def _megabytes(n: int) -> str:
    return f"{n / 2**20:g} MB"


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(status.HTTP_413_CONTENT_TOO_LARGE,
                         f"the request body is larger than {_megabytes(limit)}; nothing was done")


class BodyLimit:
    """Refuses a request body over ``limit`` bytes (``limits`` by path for routes with their own)
    with a JSON 413, on every route, authenticated or not: at once when Content-Length says so,
    else as soon as the bytes read pass the limit (a missing or lying Content-Length changes
    nothing: uvicorn never gives more than Content-Length, and a chunked body is counted). The
    body is never read whole before the check.

    Starlette's own RequestBodyLimitMiddleware answers in plain text; every error here is JSON."""

    def __init__(self, app: ASGIApp, limit: int, limits: Mapping[str, int] | None = None) -> None:
        self.app, self.limit, self.limits = app, limit, dict(limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.get(scope["path"], self.limit)
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            too_large = BodyTooLarge(limit)
            await JSONResponse({"detail": too_large.detail}, status_code=too_large.status_code,
                               headers={"Connection": "close"})(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)  # answered as any HTTPException: JSON
            return message

        await self.app(scope, limited, send)


# NUL in the URL ---------------------------------------------------------------------------------
class NoNulInUrl:
    """A NUL character (``%00``) in the path or the query is refused with a 422: no id, name or
    filter contains one, and PostgreSQL cannot even compare text with it (the lookup failed
    with a 500). Bodies are checked by their schemas (ids have a pattern, text refuses NUL)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            where = ("path" if "\x00" in scope["path"] else
                     "query" if b"%00" in scope.get("query_string", b"").lower() else None)
            if where:
                await JSONResponse({"detail": [{"loc": [where], "msg": f"the {where} contains a NUL character (%00)",
                                                "type": "value_error"}]},
                                   status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)(scope, receive, send)
                return
        await self.app(scope, receive, send)
