"""Record the event journey's histories that tests/test_replay.py replays.

    .venv/bin/python -m tests.histories.record_event

Same rules as ``record.py`` (the welcome journey's): run it only when the journey changed on
purpose, and keep the old files when running journeys may be left behind.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import timedelta

from temporalio.testing import WorkflowEnvironment

from relance import migrate
from relance.db import make_engine
from relance.devsink import DevSink
from relance.settings import Settings
from relance.temporal import bundled_binary, ensure_search_attributes
from tests.conftest import make_lead_factory
from tests.histories.record import HERE
from tests.test_event_journey import make_event, update_event
from worker import build_worker
from workflows.event_reminder import EventReminderInput, EventReminderJourney
from workflows.signals import ATTENDED, EVENT_CHANGED


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/record.db"
        migrate.upgrade(url)
        engine = make_engine(url)
        make_lead = make_lead_factory(engine)
        async with DevSink(smtp_port=0, http_port=0) as sink:
            settings = Settings(_env_file=None, database_url=url, smtp_host="127.0.0.1", smtp_port=sink.smtp_port,
                                sms_provider_url=f"http://127.0.0.1:{sink.http_port}/sms", secret_key="record",
                                public_base_url="http://relance.invalid", temporal_task_queue="record")
            env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=bundled_binary("temporal-test-server"))
            await ensure_search_attributes(env.client, "default")
            async with build_worker(env.client, settings, engine):
                for name, cancel in (("event_rescheduled_attended", False), ("event_cancelled", True)):
                    starts = await env.get_current_time() + timedelta(days=10)
                    event = make_event(engine, starts, series="record")
                    make_event(engine, starts + timedelta(days=30), series="record")
                    lead = make_lead(consents=("email", "sms"), phone="+33612345678")
                    handle = await env.client.start_workflow(
                        EventReminderJourney.run, EventReminderInput(event_id=event.id, lead_id=lead.id),
                        id=f"event-{event.id}-{lead.id}", task_queue="record")
                    await sink.wait_for_mail(to=lead.email)
                    await asyncio.sleep(0.5)
                    if cancel:
                        update_event(engine, event.id, status="cancelled")
                    else:
                        update_event(engine, event.id, starts_at=starts + timedelta(days=2), sequence=1)
                        await handle.signal(ATTENDED)
                    await handle.signal(EVENT_CHANGED)
                    await handle.result()
                    history = await handle.fetch_history()
                    (HERE / f"{name}.json").write_text(history.to_json())
                    print(f"recorded {name}: {len(history.events)} events")
            await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
