"""Record a broadcast's histories: a list of 6 leads (one without consent) in waves, continued
as new after 2 waves (the first run) and to its end (the last run).

.venv/bin/python -m tests.histories.record_broadcast
"""

from __future__ import annotations

import asyncio

from sqlmodel import Session

from relance.contracts.broadcasts import BroadcastInput
from relance.domain.audiences import Audience
from relance.domain.db import session_scope
from relance.domain.lists import add_member
from relance.services import broadcasts
from tests.histories.record import HERE, TASK_QUEUE, recording
from workflows.broadcast import BroadcastWorkflow


async def main() -> None:
    async with recording() as rec:
        client = rec.env.client
        leads = [rec.make_lead() for _ in range(5)] + [rec.make_lead(consents=())]
        with session_scope(rec.engine) as session:
            for lead in leads:
                add_member(session, list_name="record", lead_id=lead.id, reason="record")
        with Session(rec.engine) as session:
            row = broadcasts.create(
                session,
                broadcasts.BroadcastSpec(
                    Audience("list", "record"), "nurture_welcome_newsletter", per_hour=3600
                ),
            )
        handle = await client.start_workflow(
            BroadcastWorkflow.run,
            BroadcastInput(row.id, per_hour=3600, batches_per_run=2),
            id=broadcasts.workflow_id(row.id),
            task_queue=TASK_QUEUE,
        )
        await rec.save(handle, "broadcast_last_run")  # the handle follows the runs to the last
        first = client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id)
        (HERE / "broadcast_first_run.json").write_text((await first.fetch_history()).to_json())
        print("recorded broadcast_first_run (continued as new)")


if __name__ == "__main__":
    asyncio.run(main())
