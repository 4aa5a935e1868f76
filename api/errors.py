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
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.dependencies.models import Dependant
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute, iter_route_contexts
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


ERROR_BODY = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
VALIDATION_BODY = {
    "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
}
HTML_PAGE = {"text/html": {"schema": {"type": "string"}}}

# What every route can answer, whatever it does: a body over the limit (BodyLimit), a NUL in the
# URL (NoNulInUrl), an unexpected error (server_error).
EVERY_ROUTE = {
    status.HTTP_413_CONTENT_TOO_LARGE: "The request body is over the size limit "
    "(RELANCE_MAX_REQUEST_BYTES)",
    status.HTTP_422_UNPROCESSABLE_CONTENT: "Invalid input (also: a NUL character, %00, in the URL)",
    status.HTTP_500_INTERNAL_SERVER_ERROR: "An unexpected error; the server's log has it under the "
    "id given",
}
# What FastAPI answers by itself for a route that takes a body it cannot decode (not UTF-8).
UNREADABLE_BODY = "The body could not be read (not UTF-8, or not the declared content type)"


def error_responses(*codes: int, description: str | None = None) -> dict[int, dict]:
    """OpenAPI ``responses`` entries for errors answered with :class:`ErrorBody`, JSON whatever
    the route's own media type (an HTML page's route answers its errors in JSON too)."""
    return {
        code: {"description": description or EVERY_ROUTE.get(code, "Error"), "content": ERROR_BODY}
        for code in codes
    }


def validation_response(description: str) -> dict:
    """An OpenAPI 422 entry with its own description and the standard body."""
    return {"description": description, "content": VALIDATION_BODY}


def _dependency_calls(dependant: Dependant) -> Iterator[Callable]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _dependency_calls(sub)


def document(app: FastAPI, answers_by_dependency: Mapping[Callable, Mapping[int, str]]) -> None:
    """Makes the OpenAPI document list every status each route can answer, with the body that is
    really sent, from what the route is made of rather than by hand:

    - what a dependency answers by itself (``answers_by_dependency``: the API key check's 401,
      the journey engine's 503, ...) on every route that uses it, directly or through another;
    - 400 on every route that takes a body (FastAPI's answer to one it cannot decode);
    - 413, 422 and 500 on every route (the middlewares and handlers above);
    - the route's own ``responses`` (its 404s and 409s): one that only has a description gets the
      body its route sends, an HTML page for an HTML route, :class:`ErrorBody` otherwise.

    Every error but an HTML page is JSON whatever the route's media type, so each entry carries
    its own ``content`` (FastAPI would give a ``model`` the route's media type)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        for route in iter_route_contexts(app.routes):
            if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
                continue
            response_class = getattr(
                route.response_class, "value", route.response_class
            )  # a default is wrapped
            page = isinstance(response_class, type) and issubclass(response_class, HTMLResponse)
            added: dict[int, list[str]] = {}
            for call in dict.fromkeys(_dependency_calls(route.dependant)):
                for code, description in answers_by_dependency.get(call, {}).items():
                    added.setdefault(code, []).append(description)
            if route.body_field is not None:
                added.setdefault(status.HTTP_400_BAD_REQUEST, []).append(UNREADABLE_BODY)
            for code, description in EVERY_ROUTE.items():
                added.setdefault(code, []).append(description)
            for method in route.methods:
                responses = schema["paths"][route.path_format][method.lower()].setdefault(
                    "responses", {}
                )
                for code, entry in responses.items():
                    if code[0] in "45" and "content" not in entry:
                        entry["content"] = HTML_PAGE if page else ERROR_BODY
                for code, descriptions in added.items():
                    if str(code) not in responses:
                        responses[str(code)] = {
                            "description": "; or: ".join(descriptions),
                            "content": VALIDATION_BODY if code == 422 else ERROR_BODY,
                        }
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["ErrorBody"] = ErrorBody.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def unprocessable(msg: str, *loc: str | int) -> HTTPException:
    """A 422 raised by the code, in the documented shape (``loc`` defaults to the body)."""
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        [{"loc": list(loc) or ["body"], "msg": msg, "type": "value_error"}],
    )


def bounded(value: Any, depth: int = 0) -> Any:
    """The value as a 422 may echo it: short, and valid JSON (NaN and Infinity as text)."""
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value[: ECHO_CHARS * 4]).decode("utf-8", "replace") + (
            "…" if len(value) > ECHO_CHARS * 4 else ""
        )
    if isinstance(value, str):
        return (
            value
            if len(value) <= ECHO_CHARS
            else f"{value[:ECHO_CHARS]}… ({len(value)} characters)"
        )
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
        item = {
            "loc": [
                p if isinstance(p, int) else str(bounded(p, ECHO_DEPTH))
                for p in error.get("loc", ())
            ],
            "msg": str(error.get("msg", "")),
            "type": str(error.get("type", "value_error")),
        }
        if "input" in error:
            item["input"] = bounded(error["input"])
        if isinstance(error.get("ctx"), Mapping):
            item["ctx"] = bounded(dict(error["ctx"]), 1)
        out.append(item)
    if len(errors) > MAX_ERRORS:
        out.append(
            {
                "loc": [],
                "msg": f"and {len(errors) - MAX_ERRORS} more errors",
                "type": "too_many_errors",
            }
        )
    return out


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse(
        {"detail": jsonable_encoder(bounded_errors(list(exc.errors())))},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """The methods of the resource at this path, OPTIONS included: those of every route declared
    with the path of the first route matching it (``/events/track`` is ``POST /events/track``,
    not also ``GET /events/{event_id}``). Starlette's 405 names only the methods of that first
    route (``GET`` for ``/u/{token}``, whose ``POST`` and ``HEAD`` are other routes)."""
    methods, resource = {"OPTIONS"}, None
    for route in iter_route_contexts(request.app.routes):
        regex = getattr(route, "path_regex", None)
        if (
            resource is None
            and regex is not None
            and route.methods
            and regex.match(request.scope["path"])
        ):
            resource = route.path_format
        if resource is not None and route.path_format == resource and route.methods:
            methods |= set(route.methods)
    return sorted(
        methods,
        key=lambda m: (METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER), m),
    )


def method_not_allowed(request: Request) -> Response:
    """``OPTIONS`` on any path answers 204 with the methods it takes (RFC 9110 §9.3.7); another
    method the path does not take, a JSON 405 naming them all in ``Allow``."""
    allow = {"Allow": ", ".join(allowed_methods(request))}
    if request.method == "OPTIONS":
        return Response(status_code=status.HTTP_204_NO_CONTENT, headers=allow)
    return JSONResponse(
        {"detail": f"{request.method} is not allowed here; {allow['Allow']} are"},
        status_code=status.HTTP_405_METHOD_NOT_ALLOWED,
        headers=allow,
    )


async def http_error(request: Request, exc: StarletteHTTPException):
    if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
        return method_not_allowed(request)
    if exc.status_code == status.HTTP_422_UNPROCESSABLE_CONTENT:
        detail = (
            exc.detail
            if isinstance(exc.detail, list)
            else [{"loc": [], "msg": str(exc.detail), "type": "value_error"}]
        )
        return JSONResponse(
            {"detail": jsonable_encoder(bounded_errors(detail))},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )
    return await http_exception_handler(request, exc)


async def server_error(request: Request, exc: Exception) -> JSONResponse:
    error_id = uuid.uuid4().hex[:12]
    log.error(
        "unexpected error %s on %s %s", error_id, request.method, request.url.path, exc_info=exc
    )
    return JSONResponse(
        {"detail": f"unexpected server error; the server's log has it as {error_id}"},
        status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, server_error)


# Request size ----------------------------------------------------------------------------------
def _megabytes(n: int) -> str:
    return f"{n / 2**20:g} MB"


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"the request body is larger than {_megabytes(limit)}; nothing was done",
        )


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
            await JSONResponse(
                {"detail": too_large.detail},
                status_code=too_large.status_code,
                headers={"Connection": "close"},
            )(scope, receive, send)
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
            where = (
                "path"
                if "\x00" in scope["path"]
                else "query"
                if b"%00" in scope.get("query_string", b"").lower()
                else None
            )
            if where:
                await JSONResponse(
                    {
                        "detail": [
                            {
                                "loc": [where],
                                "msg": f"the {where} contains a NUL character (%00)",
                                "type": "value_error",
                            }
                        ]
                    },
                    status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
                )(scope, receive, send)
                return
        await self.app(scope, receive, send)
