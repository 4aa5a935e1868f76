"""Health: is the API up, does its database accept writes (not only reads), can it reach Temporal.

The database check is a write that changes nothing (``relance.domain.db.accepts_writes``): a
database that answers reads but refuses writes (its data folder read-only) is not healthy, and a
load balancer or ``make run`` must see it. 200 when the database takes writes, 503 otherwise, with
the reason in ``database``. Temporal being unreachable is reported, not a failure: hits and
sign-ups are stored and reach the journeys once it is back.
"""

from __future__ import annotations

import logging
from typing import Literal

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.deps import DatabaseDep, TemporalDep
from relance.domain.db import accepts_writes

router = APIRouter(tags=["health"])
log = logging.getLogger("relance.api")


class Health(BaseModel):
    status: Literal["ok", "unavailable"] = Field(description="ok: the API serves reads and writes")
    database: Literal["ok", "read-only", "unreachable"]
    database_writable: bool = Field(
        description="the database accepted a write just now (one that changes nothing)"
    )
    temporal: Literal["ok", "unreachable"]


@router.get(
    "/health",
    response_model=Health,
    responses={
        503: {"model": Health, "description": "The database refuses writes or is unreachable"}
    },
)
async def health(db: DatabaseDep, temporal: TemporalDep) -> JSONResponse:
    try:
        database = "ok" if await db.run(accepts_writes) else "read-only"
    except Exception as err:  # unreachable, or the file cannot be opened at all
        log.warning("health: the database is unreachable: %s", err)
        database = "unreachable"
    try:
        temporal_ok = await temporal.service_client.check_health()
    except Exception:
        temporal_ok = False
    body = Health(
        status="ok" if database == "ok" else "unavailable",
        database=database,
        database_writable=database == "ok",
        temporal="ok" if temporal_ok else "unreachable",
    )
    return JSONResponse(
        body.model_dump(),
        status_code=status.HTTP_200_OK if database == "ok" else status.HTTP_503_SERVICE_UNAVAILABLE,
    )
