"""Record the welcome journey's histories that tests/test_replay.py replays.

    .venv/bin/python -m tests.histories.record

Run it only when a journey changed on purpose *and* running journeys may be left behind (then
keep the old files too, and guard the change with ``workflow.patched``). Each scenario runs on
the time-skipping server with the real activities, a scratch database and a local mail sink.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import timedelta
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from relance import migrate
from relance.db import make_engine
from relance.devsink import DevSink
from relance.settings import Settings
from relance.temporal import bundled_binary, ensure_search_attributes
from tests.conftest import make_lead_factory
from worker import build_worker
from workflows.signals import CLICKED, TrackingSignal
from workflows.welcome import WelcomeInput, WelcomeJourney

HERE = Path(__file__).parent


async def record_cart_histories(env, engine, make_lead) -> None:
    from tests.test_cart_journey import buy, update_cart

    cart_settings = Settings(_env_file=None, temporal_task_queue="record")
    for name, purchase in (("cart_three_reminders", False), ("cart_purchased", True)):
        lead = make_lead()
        handle = await update_cart(env.client, cart_settings, engine, lead.id, f"cart-{name}")
        if purchase:
            await env.sleep(timedelta(hours=2))
            await buy(env.client, engine, lead.id)
        await handle.result()
        history = await handle.fetch_history()
        (HERE / f"{name}.json").write_text(history.to_json())
        print(f"recorded {name}: {len(history.events)} events")


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
                scenarios = {
                    "welcome_relanced_by_email_no_reaction": (make_lead(), None),
                    "welcome_relanced_by_sms": (make_lead(consents=("email", "sms"), phone="+33612345678"), None),
                    "welcome_clicked": (make_lead(), CLICKED),
                    "welcome_no_consent": (make_lead(consents=()), None),
                }
                await record_cart_histories(env, engine, make_lead)
                for name, (lead, signal) in scenarios.items():
                    handle = await env.client.start_workflow(WelcomeJourney.run, WelcomeInput(lead_id=lead.id),
                                                             id=f"welcome-{lead.id}", task_queue="record")
                    if signal:
                        await sink.wait_for_mail(to=lead.email)
                        await asyncio.sleep(0.5)
                        status = await handle.query(WelcomeJourney.status)
                        await handle.signal(signal, TrackingSignal(status.messages[0].message_id, "https://example.com/x"))
                    await handle.result()
                    history = await handle.fetch_history()
                    (HERE / f"{name}.json").write_text(history.to_json())
                    print(f"recorded {name}: {len(history.events)} events")
            await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
