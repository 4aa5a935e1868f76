"""Record the score-decay sweep's histories (first run, continued as new, and the last run).

.venv/bin/python -m tests.histories.record_decay
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import update
from sqlmodel import Session, col

from relance.contracts.scoring import DecayInput
from relance.domain.models import Lead, utcnow
from tests.histories.record import TASK_QUEUE, recording
from workflows.decay import ScoreDecaySweep


async def main() -> None:
    async with recording() as rec:
        client = rec.env.client
        idle = [rec.make_lead() for _ in range(5)]
        with Session(rec.engine) as session:
            session.execute(
                update(Lead)
                .where(col(Lead.id).in_([lead.id for lead in idle]))
                .values(score=60, last_activity_at=utcnow() - timedelta(days=65))
            )
            session.commit()
        handle = await client.start_workflow(
            ScoreDecaySweep.run,
            DecayInput(batch_size=2, pages_per_run=2),
            id="score-decay-record",
            task_queue=TASK_QUEUE,
        )
        await rec.save(
            handle, "score_decay_last_run"
        )  # the handle follows the runs to the last one
        first = client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id)
        (rec.folder / "score_decay_first_run.json").write_text(
            (await first.fetch_history()).to_json()
        )
        print("recorded score_decay_first_run (continued as new)")


if __name__ == "__main__":
    asyncio.run(main())
