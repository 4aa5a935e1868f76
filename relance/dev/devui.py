"""``make run``'s front for the Temporal UI: the UI and the API's codec on one origin.

The Temporal UI decrypts a journey's payloads by POSTing them to a codec server (the API's
``/codec``, api/routes/codec.py), which asks for the operator's session cookie from
``/codec/login``. A browser sends that cookie cross-origin only when the UI's "include
cross-origin credentials" setting is on, and the dev server (``temporal server start-dev``) can
set the codec endpoint but not that setting; in the UI it hides behind a second toggle.

So in development the UI is served from the API's side of the fence: this front listens on the
UI's port (8233), passes ``/codec/...`` to the API and everything else to the dev server's UI
on an internal port. The UI's codec endpoint is the relative ``/codec``: the same origin as the
page, whichever host name the browser used, so the browser sends the session cookie on its own.
One step remains: log in once at http://localhost:8233/codec/login with the API key.

Production does not use this: there the UI container is told ``TEMPORAL_CODEC_ENDPOINT`` and
``TEMPORAL_CODEC_INCLUDE_CREDENTIALS=true`` (docker-compose.yml).

    python -m relance.dev.devui --listen 127.0.0.1:8233 --ui http://127.0.0.1:8234 --api http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import sys
from contextlib import asynccontextmanager

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

CODEC_PREFIX = "/codec"
# Headers that describe one hop, not the message (RFC 9110 section 7.6.1); httpx sets its own.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}


def create_front(ui: str, api: str) -> Starlette:
    """An app that sends ``/codec`` and ``/codec/...`` to ``api`` and every other path to ``ui``."""
    clients: dict[str, httpx.AsyncClient] = {}

    def upstream(path: str) -> tuple[str, httpx.AsyncClient]:
        name = (
            "the API"
            if path == CODEC_PREFIX or path.startswith(CODEC_PREFIX + "/")
            else "Temporal's UI"
        )
        if name not in clients:
            base = api if name == "the API" else ui
            clients[name] = httpx.AsyncClient(
                base_url=base, timeout=httpx.Timeout(60.0, connect=5.0)
            )
        return name, clients[name]

    async def relay(request: Request):
        name, client = upstream(request.url.path)
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        if (
            "accept-encoding" not in request.headers
        ):  # the body is relayed as it comes: ask for it plain
            headers.append(("accept-encoding", "identity"))
        # The path as the browser sent it (a workflow id in it stays percent-encoded as it was).
        target = request.scope["raw_path"].decode("latin-1")
        if request.scope["query_string"]:
            target += "?" + request.scope["query_string"].decode("latin-1")
        outgoing = client.build_request(
            request.method, target, headers=headers, content=await request.body()
        )
        try:
            answer = await client.send(outgoing, stream=True)
        except httpx.HTTPError as err:
            return JSONResponse(
                {"detail": f"{name} does not answer ({type(err).__name__}): is it still starting?"},
                status_code=502,
            )
        kept = [(k, v) for k, v in answer.headers.multi_items() if k.lower() not in HOP_BY_HOP]
        response = StreamingResponse(
            answer.aiter_raw(),
            status_code=answer.status_code,
            background=BackgroundTask(answer.aclose),
        )
        response.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in kept]
        return response

    @asynccontextmanager
    async def lifespan(_app):
        yield
        for client in clients.values():
            await client.aclose()

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return Starlette(routes=[Route("/{path:path}", relay, methods=methods)], lifespan=lifespan)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--listen", required=True, help="host:port the browser opens (the UI's port)"
    )
    parser.add_argument(
        "--ui", required=True, help="the dev server's own UI, e.g. http://127.0.0.1:8234"
    )
    parser.add_argument("--api", required=True, help="the Relance API, e.g. http://127.0.0.1:8000")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    # The UI long-polls a workflow's history: on Ctrl-C those calls are dropped, not waited for.
    uvicorn.run(
        create_front(args.ui, args.api),
        host=host or "127.0.0.1",
        port=int(port),
        log_level="warning",
        timeout_graceful_shutdown=1,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
