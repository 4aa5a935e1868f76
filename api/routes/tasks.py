"""Sales hand-off tasks: what the reps see and close.

    GET  /tasks?assignee=ana@example.com&status=open
    GET  /tasks/{id}
    POST /tasks/{id}/complete   {"outcome": "meeting_booked", "note": "Tuesday 10:00"}

Tasks are created by the nurturing journey (a download, the MQL threshold) and by defined
journeys' task nodes (their ``description`` says what to do). Completing one
tells the journey first, then records the outcome: if Temporal is unreachable nothing changes
and the rep can send it again; a task completed already answers 409.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status
from sqlalchemy import update
from sqlmodel import Session, col, select
from temporalio.service import RPCError, RPCStatusCode

from api.deps import DatabaseDep, SessionDep, TemporalDep, require_api_key
from api.schemas import SalesTaskPublic, TaskCompletion, TaskStatus
from relance.contracts.signals import TASK_COMPLETED, TaskSignal
from relance.domain.models import SalesTask, as_utc, utcnow

router = APIRouter(prefix="/tasks", tags=["sales tasks"], dependencies=[Depends(require_api_key)])


def public(task: SalesTask) -> SalesTaskPublic:
    data = task.model_dump()
    for key in ("due_at", "created_at", "escalated_at", "completed_at"):
        data[key] = as_utc(data[key])
    return SalesTaskPublic.model_validate(data)


def get_task_or_404(*, session: Session, task_id: str) -> SalesTask:
    task = session.get(SalesTask, task_id)
    if task is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no sales task with id {task_id}")
    return task


def open_task_or_409(*, session: Session, task_id: str) -> SalesTask:
    task = get_task_or_404(session=session, task_id=task_id)
    if task.status == "done":
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"sales task {task_id} is already completed (outcome: {task.outcome})",
        )
    return task


def mark_done(*, session: Session, task_id: str, completion: TaskCompletion) -> SalesTask:
    now = utcnow()
    changed = session.execute(
        update(SalesTask)
        .where(col(SalesTask.id) == task_id, col(SalesTask.status) != "done")
        .values(
            status="done",
            outcome=completion.outcome,
            note=completion.note,
            completed_at=now,
            updated_at=now,
        )
    ).rowcount
    session.commit()
    if not changed:  # completed concurrently
        raise HTTPException(status.HTTP_409_CONFLICT, f"sales task {task_id} is already completed")
    return get_task_or_404(session=session, task_id=task_id)


@router.get("", response_model=list[SalesTaskPublic])
def list_tasks(
    session: SessionDep,
    assignee: Annotated[str | None, Query(max_length=320, description="The rep's email")] = None,
    status_: Annotated[TaskStatus | None, Query(alias="status")] = None,
    lead: Annotated[str | None, Query(max_length=32, description="A lead id")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[SalesTaskPublic]:
    """The most urgent first (earliest due date)."""
    query = select(SalesTask)
    if assignee is not None:
        query = query.where(SalesTask.assignee == assignee.strip().lower())
    if status_ is not None:
        query = query.where(SalesTask.status == status_)
    if lead is not None:
        query = query.where(SalesTask.lead_id == lead)
    rows = session.exec(query.order_by(col(SalesTask.due_at), col(SalesTask.id)).limit(limit)).all()
    return [public(row) for row in rows]


@router.get(
    "/{task_id}", response_model=SalesTaskPublic, responses={404: {"description": "Unknown task"}}
)
def read_task(task_id: str, session: SessionDep) -> SalesTaskPublic:
    return public(get_task_or_404(session=session, task_id=task_id))


@router.post(
    "/{task_id}/complete",
    response_model=SalesTaskPublic,
    responses={404: {"description": "Unknown task"}, 409: {"description": "Already completed"}},
)
async def complete_task(
    task_id: str, completion: TaskCompletion, db: DatabaseDep, temporal: TemporalDep
) -> SalesTaskPublic:
    task = await db.run(open_task_or_409, task_id=task_id)
    try:
        await temporal.get_workflow_handle(task.workflow_id).signal(
            TASK_COMPLETED, TaskSignal(task_id, completion.outcome)
        )
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:  # a journey over already needs no telling
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "the journey engine (Temporal) is unreachable; nothing changed, send it again",
            ) from err
    return public(await db.run(mark_done, task_id=task_id, completion=completion))
