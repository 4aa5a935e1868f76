"""Liveness: is the API up, and can it reach its database and Temporal."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from api.deps import DatabaseDep, TemporalDep

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(db: DatabaseDep, temporal: TemporalDep) -> dict:
    await db.run(lambda session: session.exec(text("SELECT 1")))
    try:
        temporal_ok = await temporal.service_client.check_health()
    except Exception:
        temporal_ok = False
    return {"status": "ok", "database": "ok", "temporal": "ok" if temporal_ok else "unreachable"}
