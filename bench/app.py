"""The API as benchmarked, plus a bare baseline endpoint on the same uvicorn.

    uvicorn --factory bench.app:create_bench_app

``GET /bench/bare.gif`` returns the same GIF and headers as the open pixel, with no token
check, no database and no outbox: what serving the pixel costs at the least. ``GET
/bench/outbox`` says how many journeys the outbox is signalling now (one signal in flight each)
and how many hits it holds, for ``python -m bench outbox`` to sample.
"""

from fastapi import FastAPI, Request, Response

from api.main import create_app
from api.routes.tracking import NO_CACHE, PIXEL


def create_bench_app() -> FastAPI:
    app = create_app()

    @app.get("/bench/bare.gif", include_in_schema=False)
    async def bare_gif() -> Response:
        return Response(PIXEL, media_type="image/gif", headers=NO_CACHE)

    @app.get("/bench/outbox", include_in_schema=False)
    async def outbox_now(request: Request) -> dict[str, int]:
        outbox = request.app.state.outbox
        return {
            "signalling": outbox.signalling,
            "held": outbox.held,
            "concurrency": outbox.concurrency,
        }

    return app
