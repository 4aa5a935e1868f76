"""FastAPI dependencies: settings, a database session, the Temporal client, the API key check."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator
from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio.client import Client

from relance.domain.settings import Settings
from relance.domain.tokens import TokenSigner
from relance.services.tracking import HitRecorder


# The lookups below are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in the
# threadpool, a thread hop per request that the tracking endpoints cannot afford.
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_db(request: Request) -> Iterator[Session]:
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        yield session


T = TypeVar("T")


class Database:
    """For async endpoints: runs one unit of database work in the threadpool, in its own
    session, so no session (nor pooled connection) is ever held across an ``await``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def run(self, work: Callable[..., T], /, **kwargs) -> T:
        def in_session() -> T:
            with Session(self.engine, expire_on_commit=False) as session:
                return work(session=session, **kwargs)

        return await run_in_threadpool(in_session)


async def get_database(request: Request) -> Database:
    return Database(request.app.state.engine)


async def get_temporal(request: Request) -> Client:
    return request.app.state.temporal


async def get_signer(request: Request) -> TokenSigner:
    return request.app.state.signer


async def get_hits(request: Request) -> HitRecorder:
    return request.app.state.hits


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_db)]  # for sync (def) endpoints
DatabaseDep = Annotated[Database, Depends(get_database)]  # for async endpoints
TemporalDep = Annotated[Client, Depends(get_temporal)]
SignerDep = Annotated[TokenSigner, Depends(get_signer)]
HitsDep = Annotated[HitRecorder, Depends(get_hits)]

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="The key printed by `make run`"
)


async def require_api_key(
    settings: SettingsDep, key: Annotated[str | None, Security(api_key_header)]
) -> str:
    if not settings.api_key:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "no API key is configured on the server (RELANCE_API_KEY)"
        )
    if not key:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing X-API-Key header")
    if not hmac.compare_digest(key.encode(), settings.api_key.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid API key")
    return key


async def get_actor(key: Annotated[str, Depends(require_api_key)]) -> str:
    """Who is calling, as the audit log names them (a fingerprint of the key, never the key)."""
    from relance.domain.audit import key_fingerprint

    return key_fingerprint(key)


ActorDep = Annotated[str, Depends(get_actor)]


# What a dependency answers by itself: the OpenAPI document lists it on every route that uses it
# (api.errors.document), so no route repeats it.
TEMPORAL_UNREACHABLE = (
    "The journey engine (Temporal) is unreachable: the detail says what was kept; retry"
)
DATABASE_READ_ONLY = (
    "The database does not accept writes (its data folder read-only?): nothing was changed; "
    "retry after Retry-After"
)
ANSWERS_BY_DEPENDENCY = {
    require_api_key: {
        status.HTTP_401_UNAUTHORIZED: "No X-API-Key header, a wrong key, or no key configured on "
        "the server (RELANCE_API_KEY)"
    },
    get_temporal: {status.HTTP_503_SERVICE_UNAVAILABLE: TEMPORAL_UNREACHABLE},
    get_db: {status.HTTP_503_SERVICE_UNAVAILABLE: DATABASE_READ_ONLY},
    get_database: {status.HTTP_503_SERVICE_UNAVAILABLE: DATABASE_READ_ONLY},
}
