"""A lead's data rights for the API: consents as proof, export, erasure, and the audit log.

Database work (keyword-only, one session passed in, for ``db.run``) and the Temporal side
(finding every journey of a lead, closing and deleting them), kept apart so no session is
held across an await.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime

from fastapi import HTTPException, status
from fastapi.encoders import jsonable_encoder
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.crud import get_lead_or_404
from api.schemas import AuditEntryPublic, ConsentPublic, JourneyRecord
from relance.contracts import catalogue
from relance.contracts.broadcasts import BROADCAST_JOURNEY
from relance.domain import audit
from relance.domain.models import AuditEntry, Consent, Message, Order, Registration, as_utc
from relance.services.erasure import lead_columns, tables_to_erase

_SAFE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def check_id(lead_id: str) -> str:
    """Lead ids are random hex; anything else is no lead (and never reaches a visibility query)."""
    if not _SAFE_ID.match(lead_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no lead with id {lead_id}")
    return lead_id


# Database ---------------------------------------------------------------------------------
def _row(values: dict) -> dict:
    return jsonable_encoder(
        {k: as_utc(v) if isinstance(v, datetime) else v for k, v in values.items()}
    )


def consent_history(*, session: Session, lead_id: str, actor: str) -> list[ConsentPublic]:
    get_lead_or_404(session=session, lead_id=lead_id)
    rows = session.exec(
        select(Consent).where(Consent.lead_id == lead_id).order_by(col(Consent.id))
    ).all()
    audit.record(
        session, actor=actor, action=audit.CONSENTS, lead_id=lead_id, detail={"rows": len(rows)}
    )
    session.commit()
    return [
        ConsentPublic.model_validate({**row.model_dump(), "recorded_at": as_utc(row.recorded_at)})
        for row in rows
    ]


def export_rows(
    *, session: Session, lead_id: str, actor: str
) -> tuple[dict, dict[str, list[dict]]]:
    """The lead's profile and every row of every table holding its id (the same tables an
    erasure deletes from, so nothing held is left out), and the audit entry."""
    profile = _row(get_lead_or_404(session=session, lead_id=lead_id).model_dump())
    data: dict[str, list[dict]] = {}
    for table in reversed(tables_to_erase()):
        rows = []
        for column in lead_columns(table):
            rows += [
                _row(dict(r))
                for r in session.execute(
                    sa_select(table).where(table.c[column] == lead_id)
                ).mappings()
            ]
        data[table.name] = rows
    audit.record(
        session,
        actor=actor,
        action=audit.EXPORT,
        lead_id=lead_id,
        detail={"rows": {name: len(rows) for name, rows in data.items() if rows}},
    )
    session.commit()
    return profile, data


def workflow_ids_of(*, session: Session, lead_id: str) -> list[str]:
    """The journeys the database knows of for this lead (besides Temporal's own LeadId search):
    its messages' workflows, registrations, orders' follow-ups, and every per-lead journey id
    (``<journey>-<lead id>``: one that started a moment ago may not be in visibility yet)."""
    get_lead_or_404(session=session, lead_id=lead_id)
    ids = set(catalogue.lead_workflow_ids(lead_id))
    # A broadcast's workflow is the whole campaign's, and its history holds no lead's id: erasing
    # one recipient must not end (or delete) it for all the others.
    ids |= set(
        session.exec(
            select(Message.workflow_id).where(
                Message.lead_id == lead_id, Message.journey != BROADCAST_JOURNEY
            )
        ).all()
    )
    ids |= set(
        session.exec(select(Registration.workflow_id).where(Registration.lead_id == lead_id)).all()
    )
    ids |= {
        catalogue.entry("purchase").workflow_id(order_id=order_id)
        for order_id in session.exec(select(Order.id).where(Order.lead_id == lead_id)).all()
    }
    return sorted(ids)


def record_read(*, session: Session, lead_id: str, actor: str, action: str = audit.READ) -> None:
    audit.record(session, actor=actor, action=action, lead_id=lead_id)
    session.commit()


def audit_entries(*, session: Session, lead_id: str | None, limit: int) -> list[AuditEntryPublic]:
    query = select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(limit)
    if lead_id is not None:
        query = query.where(AuditEntry.lead_id == lead_id)
    return [
        AuditEntryPublic.model_validate({**row.model_dump(), "at": as_utc(row.at)})
        for row in session.exec(query).all()
    ]


# Temporal ---------------------------------------------------------------------------------
async def journeys_of(client: Client, lead_id: str, known_ids: list[str]) -> list[JourneyRecord]:
    """Every execution of the lead's journeys: those Temporal's visibility finds by the
    ``LeadId`` search attribute (every journey sets it at start), and those the database
    points to (in case visibility lags a just-started journey)."""
    found: dict[tuple[str, str | None], JourneyRecord] = {}
    async for execution in client.list_workflows(f'LeadId = "{check_id(lead_id)}"'):
        found[(execution.id, execution.run_id)] = _record(execution)

    async def describe(workflow_id: str) -> None:
        try:
            execution = await client.get_workflow_handle(workflow_id).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return
            raise
        found.setdefault((execution.id, execution.run_id), _record(execution))

    await asyncio.gather(*(describe(w) for w in known_ids))
    return sorted(found.values(), key=lambda j: (j.start_time is None, j.start_time, j.workflow_id))


def _record(execution) -> JourneyRecord:
    return JourneyRecord(
        workflow_id=execution.id,
        run_id=execution.run_id,
        workflow_type=execution.workflow_type,
        status=execution.status.name if execution.status else "UNKNOWN",
        start_time=execution.start_time,
        close_time=execution.close_time,
    )


async def close_and_delete(client: Client, journeys: list[JourneyRecord]) -> list[str]:
    """Delete every execution from Temporal, history included (encrypted already). A running
    one is terminated by the deletion itself, at once: terminating it first and then deleting
    leaves a terminated journey with a pending timer that the server does not delete (measured
    on the dev server), so the reason lives in the audit log rather than in a history that is
    about to be deleted."""

    async def one(journey: JourneyRecord) -> None:
        try:
            await client.workflow_service.delete_workflow_execution(
                DeleteWorkflowExecutionRequest(
                    namespace=client.namespace,
                    workflow_execution=WorkflowExecution(
                        workflow_id=journey.workflow_id, run_id=journey.run_id or ""
                    ),
                )
            )
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:  # gone already: what we wanted
                raise

    for start in range(0, len(journeys), 50):
        await asyncio.gather(*(one(j) for j in journeys[start : start + 50]))
    return sorted({j.workflow_id for j in journeys})
