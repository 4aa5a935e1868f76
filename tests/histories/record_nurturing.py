"""Record the nurturing journey's histories that tests/test_replay.py replays.

    .venv/bin/python -m tests.histories.record_nurturing

Same rules as ``record.py``: run it only when the journey changed on purpose, and keep the old
files when running journeys may be left behind.
"""

from __future__ import annotations

import asyncio

from sqlmodel import Session, select

from relance.contracts.signals import ASSET_DOWNLOADED, TASK_COMPLETED, AssetSignal, TaskSignal
from relance.dev.seeding import default_sequence
from relance.domain.models import SalesTask
from tests.histories.record import TASK_QUEUE, recording
from workflows.nurturing import LeadNurturingJourney, NurturingInput


async def main() -> None:
    async with recording() as rec:
        for name in (
            "nurturing_gate_not_met",
            "nurturing_downloaded_task_escalated",
            "nurturing_meeting_booked",
        ):
            lead = rec.make_lead()
            handle = await rec.env.client.start_workflow(
                LeadNurturingJourney.run,
                NurturingInput(lead_id=lead.id, sequence=default_sequence()),
                id=f"nurture-{lead.id}",
                task_queue=TASK_QUEUE,
            )
            if name != "nurturing_gate_not_met":
                await rec.sink.wait_for_mail(to=lead.email)
                await asyncio.sleep(0.5)
                await handle.signal(ASSET_DOWNLOADED, AssetSignal("white-paper"))
            if name == "nurturing_meeting_booked":
                while not (task := _task(rec.engine, lead.id)):
                    await asyncio.sleep(0.05)
                await handle.signal(TASK_COMPLETED, TaskSignal(task.id, "meeting_booked"))
            await rec.save(handle, name)


def _task(engine, lead_id: str) -> SalesTask | None:
    with Session(engine) as session:
        return session.exec(select(SalesTask).where(SalesTask.lead_id == lead_id)).first()


if __name__ == "__main__":
    asyncio.run(main())
