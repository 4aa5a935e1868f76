"""The Relance API application.

    uvicorn --factory api.main:create_app

The lifespan opens the database engine and the Temporal client once, loads the journeys kept
as files (``RELANCE_JOURNEYS_DIR``, config/journeys: published when changed), and runs the
outbox dispatcher that turns stored tracking hits into journey signals.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api import docs, errors
from api.deps import ANSWERS_BY_DEPENDENCY
from api.routes import (
    audit,
    broadcasts,
    codec,
    confirm,
    dashboard,
    definitions,
    events,
    health,
    journey_definitions,
    leads,
    lists,
    preferences,
    reports,
    segments,
    shop_events,
    sweeps,
    tasks,
    topics,
    tracking,
    unsubscribe,
)
from relance.domain.db import DatabaseNotWritable, make_engine
from relance.domain.settings import Settings, get_settings
from relance.domain.tokens import TokenSigner
from relance.services.journey_store import load_at_start
from relance.services.journeys import check_topics
from relance.services.outbox import OutboxDispatcher
from relance.services.temporal import connect
from relance.services.tracking import HitRecorder

log = logging.getLogger("relance.api")

READ_ONLY_DETAIL = (
    "the database does not accept writes at the moment (is its data folder read-only?); "
    "nothing was changed: retry once it is writable again (GET /health tells)"
)


async def database_not_writable(_request: Request, err: DatabaseNotWritable) -> JSONResponse:
    """A write refused by a read-only database: a 503 the client can retry, not a 500."""
    log.error("a write was refused: the database is read-only (%s)", err.orig)
    return JSONResponse(
        {"detail": READ_ONLY_DETAIL},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": "30"},
    )


# The API docs' sections, in the order a newcomer reads them (not the routes' matching order).
TAGS = (
    "leads",
    "shop events",
    "lists",
    "broadcasts",
    "segments",
    "journeys",
    "events",
    "sweeps",
    "sales tasks",
    "tracking",
    "reports",
    "consent",
    "topics",
    "codec",
    "audit",
    "health",
)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    # A broken scoring rules or lead schema file stops the API here, with the place of the
    # mistake.
    settings.scoring_rules()
    settings.lead_schema()
    # So does a broken topics file, or a journey sending on a topic it does not declare.
    check_topics(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.settings = settings
        app.state.engine = make_engine(settings.database_url)
        # Journeys kept in files: published when changed; an invalid file is logged, skipped.
        await run_in_threadpool(load_at_start, app.state.engine, settings.journeys_dir)
        app.state.signer = TokenSigner(
            settings.secret_key,
            max_age_seconds=settings.tracking_token_max_age_days * 86400,
            max_age_by_kind={"confirm": settings.confirm_link_max_age_seconds()},
        )
        app.state.temporal = await connect(settings, lazy=True)
        app.state.outbox = OutboxDispatcher(app.state.engine, app.state.temporal, settings=settings)
        app.state.hits = HitRecorder(
            app.state.engine,
            on_committed=app.state.outbox.wake,
            suppression_key=settings.suppression_hash_key,
        )
        dispatcher = asyncio.create_task(app.state.outbox.run(), name="outbox-dispatcher")
        recorder = asyncio.create_task(app.state.hits.run(), name="hit-recorder")
        if not settings.api_key:
            log.warning("RELANCE_API_KEY is not set: every management endpoint will answer 401")
        try:
            yield
        finally:
            recorder.cancel()
            await asyncio.gather(recorder, return_exceptions=True)
            await app.state.hits.flush()
            dispatcher.cancel()
            await asyncio.gather(dispatcher, return_exceptions=True)
            app.state.engine.dispose()

    app = FastAPI(
        title="Relance",
        summary="Code-first marketing automation: lead journeys as durable Temporal workflows.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # api/docs.py serves /docs and /redoc from installed assets, no CDN
        redoc_url=None,
        # No trailing-slash redirects: Starlette builds them from the request's Host header
        # ("GET /t/c/<token>/" with "Host: evil.com" answered 307 to http://evil.com/...). A path
        # with a stray slash is a 404; no answer takes its origin from the request.
        redirect_slashes=False,
        openapi_tags=[{"name": name} for name in TAGS],
    )
    errors.install(app)
    docs.install(app)
    app.add_exception_handler(DatabaseNotWritable, database_not_writable)
    # The CSV import takes files up to RELANCE_IMPORT_MAX_BYTES (plus the multipart envelope);
    # every other route, RELANCE_MAX_REQUEST_BYTES.
    app.add_middleware(errors.NoNulInUrl)
    app.add_middleware(
        errors.BodyLimit,
        limit=settings.max_request_bytes,
        limits={"/leads/import": settings.import_max_bytes + 64 * 1024},
    )
    # The tracking endpoints first: every open and click of a campaign is matched against the
    # routes in order, and they are most of the traffic (the docs keep their order: ``TAGS``).
    app.include_router(tracking.router)
    app.include_router(leads.router)
    app.include_router(shop_events.router)  # before any /events/{id} route
    app.include_router(lists.router)
    app.include_router(broadcasts.router)
    app.include_router(segments.router)
    app.include_router(definitions.router)  # /journeys/schema, /journeys/check: before keys
    app.include_router(journey_definitions.router)
    app.include_router(events.router)
    app.include_router(sweeps.router)
    app.include_router(tasks.router)
    app.include_router(reports.router)
    app.include_router(unsubscribe.router)
    app.include_router(preferences.router)
    app.include_router(topics.router)
    app.include_router(confirm.router)
    app.include_router(codec.router)
    app.include_router(dashboard.router)
    app.include_router(audit.router)
    app.include_router(health.router)
    errors.document(app, ANSWERS_BY_DEPENDENCY)
    return app
