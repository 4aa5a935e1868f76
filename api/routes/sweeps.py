"""Re-engagement sweeps by hand: ``POST /sweeps/re-engagement`` runs now what the daily schedule
runs (a one-shot campaign, optionally with another inactivity), ``GET`` follows it."""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends, HTTPException, status
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from api.deps import SettingsDep, TemporalDep, require_api_key
from api.schemas import SweepCreate, SweepPublic
from relance.contracts import catalogue
from relance.domain.models import new_id
from relance.services.journeys import start_journey

SWEEP = catalogue.entry("reengagement-sweep")

router = APIRouter(prefix="/sweeps", tags=["sweeps"], dependencies=[Depends(require_api_key)])


@router.post("/re-engagement", response_model=SweepPublic, status_code=status.HTTP_202_ACCEPTED)
async def start_sweep(
    settings: SettingsDep, temporal: TemporalDep, body: SweepCreate | None = Body(default=None)
) -> SweepPublic:
    body = body or SweepCreate()
    knobs = {"inactive_days": body.inactive_days}
    try:
        handle = await start_journey(
            temporal, settings, SWEEP, keys={"sweep_id": new_id()}, knobs=knobs
        )
    except RPCError as err:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "the journey engine (Temporal) is unreachable"
        ) from err
    return SweepPublic(
        workflow_id=handle.id,
        run_id=handle.result_run_id,
        status="RUNNING",
        inactive_days=SWEEP.input(settings, **knobs)["inactive_days"],
    )


@router.get(
    "/re-engagement/{workflow_id}",
    response_model=SweepPublic,
    responses={404: {"description": "No such sweep"}},
)
async def read_sweep(workflow_id: str, temporal: TemporalDep) -> SweepPublic:
    if not workflow_id.startswith("reengagement-sweep-"):  # by hand, or the schedule's runs
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no re-engagement sweep {workflow_id!r}")
    handle = temporal.get_workflow_handle(workflow_id)
    try:
        description = await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"no re-engagement sweep {workflow_id!r}"
            ) from err
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "the journey engine (Temporal) is unreachable"
        ) from err
    result = None
    if description.status == WorkflowExecutionStatus.COMPLETED:
        result = await handle.result()
    return SweepPublic(
        workflow_id=workflow_id,
        run_id=description.run_id,
        status=description.status.name,
        result=result,
    )
