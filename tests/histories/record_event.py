"""Record the event journey's histories that tests/test_replay.py replays.

    .venv/bin/python -m tests.histories.record_event

Same rules as ``record.py`` (the welcome journey's): run it only when the journey changed on
purpose, and keep the old files when running journeys may be left behind.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from relance.contracts.signals import ATTENDED, EVENT_CHANGED
from relance.dev.seeding import make_event, update_event
from tests.histories.record import TASK_QUEUE, recording
from workflows.event_reminder import EventReminderInput, EventReminderJourney


async def main() -> None:
    async with recording() as rec:
        for name, cancel in (("event_rescheduled_attended", False), ("event_cancelled", True)):
            starts = await rec.env.get_current_time() + timedelta(days=10)
            event = make_event(rec.engine, starts, series="record")
            make_event(rec.engine, starts + timedelta(days=30), series="record")
            lead = rec.make_lead(consents=("email", "sms"), phone="+33612345678")
            handle = await rec.env.client.start_workflow(
                EventReminderJourney.run,
                EventReminderInput(event_id=event.id, lead_id=lead.id),
                id=f"event-{event.id}-{lead.id}",
                task_queue=TASK_QUEUE,
            )
            await rec.sink.wait_for_mail(to=lead.email)
            await asyncio.sleep(0.5)
            if cancel:
                update_event(rec.engine, event.id, status="cancelled")
            else:
                update_event(rec.engine, event.id, starts_at=starts + timedelta(days=2), sequence=1)
                await handle.signal(ATTENDED)
            await handle.signal(EVENT_CHANGED)
            await rec.save(handle, name)


if __name__ == "__main__":
    asyncio.run(main())
