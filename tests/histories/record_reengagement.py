"""Record the re-engagement histories that tests/test_replay.py replays: the journey (no
reaction then sunset, a click after email 2), the premium offer, and a sweep's first run (which
continues as new) and last run.

    .venv/bin/python -m tests.histories.record_reengagement

Same rules as ``record.py``: run it only when these workflows changed on purpose, and keep the
old files when running workflows may be left behind.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import update
from sqlmodel import Session, col

from relance.contracts.reengagement import SweepInput
from relance.contracts.signals import CLICKED, TrackingSignal
from relance.domain.models import Lead, utcnow
from tests.histories.record import TASK_QUEUE, recording
from workflows.premium import PremiumInput, PremiumOfferJourney
from workflows.reengagement import ReEngagementInput, ReEngagementJourney
from workflows.sweep import ReEngagementSweep


async def main() -> None:
    async with recording() as rec:
        client = rec.env.client
        for name, click in (
            ("reengage_sunset_suppressed", False),
            ("reengage_clicked_after_email_2", True),
        ):
            lead = rec.make_lead()
            handle = await client.start_workflow(
                ReEngagementJourney.run,
                ReEngagementInput(lead.id),
                id=f"reengage-{lead.id}",
                task_queue=TASK_QUEUE,
            )
            if click:
                await rec.sink.wait_for_mail(to=lead.email)
                await asyncio.sleep(0.5)
                await rec.env.sleep(timedelta(days=7, hours=1))
                await rec.sink.wait_for_mail(to=lead.email, count=2)
                await asyncio.sleep(0.5)
                status = await handle.query(ReEngagementJourney.status)
                await handle.signal(
                    CLICKED, TrackingSignal(status.messages[1].message_id, "https://example.com/x")
                )
            await rec.save(handle, name)

        lead = rec.make_lead()
        handle = await client.start_workflow(
            PremiumOfferJourney.run,
            PremiumInput(lead.id),
            id=f"premium-{lead.id}",
            task_queue=TASK_QUEUE,
        )
        await rec.save(handle, "premium_offer_sent")

        quiet = [rec.make_lead() for _ in range(5)]
        with Session(rec.engine) as session:
            session.execute(
                update(Lead)
                .where(col(Lead.id).in_([lead.id for lead in quiet]))
                .values(last_activity_at=utcnow() - timedelta(days=90))
            )
            session.commit()
        handle = await client.start_workflow(
            ReEngagementSweep.run,
            SweepInput(batch_size=2, pages_per_run=2),
            id="reengagement-sweep-record",
            task_queue=TASK_QUEUE,
        )
        await rec.save(
            handle, "reengagement_sweep_last_run"
        )  # the handle follows the runs to the last one
        first = client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id)
        (rec.folder / "reengagement_sweep_first_run.json").write_text(
            (await first.fetch_history()).to_json()
        )
        print("recorded reengagement_sweep_first_run (continued as new)")
        await asyncio.sleep(
            1
        )  # the journeys it started send their first email; this server is thrown away


if __name__ == "__main__":
    asyncio.run(main())
