"""Record the journey histories that tests/test_replay.py replays.

    .venv/bin/python -m tests.histories.record          # welcome and cart journeys
    .venv/bin/python -m tests.histories.record_event    # event journey
    .venv/bin/python -m tests.histories.record_reengagement  # re-engagement, premium offer, sweep
    .venv/bin/python -m tests.histories.record_nurturing  # nurturing journey
    .venv/bin/python -m tests.histories.record_decay      # score-decay sweep
    .venv/bin/python -m tests.histories.record_double_opt_in  # welcome with double opt-in
    .venv/bin/python -m tests.histories.record_together   # send window, scenarios, browse
    .venv/bin/python -m tests.histories.record_enrollment_rules  # enrollment rules
    .venv/bin/python -m tests.histories.record_outcomes   # order follow-up, and endings not covered
    above
    .venv/bin/python -m tests.histories.record_definitions  # a journey written as data
    .venv/bin/python -m tests.histories.record_defined_nodes  # switch, set, until a date, topics
    .venv/bin/python -m tests.histories.record_fewer_actions  # paths since the fewer-actions patch

tests/test_replay.py lists every history file by name, with its workflow: add a new recording there.

Run it only when a journey changed on purpose *and* running journeys may be left behind (then
keep the old files too, and guard the change with ``workflow.patched``). Each scenario runs on
the time-skipping server with the real activities, a scratch database and a local mail sink.

The recordings are deliberately *not* encrypted (plain converter): they stay readable, so
test_replay.py can check them for addresses, and they stand for journeys started before payload
encryption was turned on, which the worker (whose codec passes plain payloads through) must
keep running. tests/test_encryption.py replays an encrypted history as well.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from relance.contracts.definitions import DefinedJourneyInput, workflow_id
from relance.contracts.signals import CLICKED, TrackingSignal
from relance.dev.devsink import DevSink
from relance.dev.seeding import make_lead_factory
from relance.domain.db import make_engine
from relance.domain.models import Lead
from relance.domain.settings import Settings
from relance.services import migrate
from relance.services.temporal import bundled_binary, ensure_search_attributes
from worker import build_worker
from workflows.defined import DefinedJourney
from workflows.welcome import WelcomeInput, WelcomeJourney

HERE = Path(__file__).parent
TASK_QUEUE = "record"
# Where the recordings go: here, unless RELANCE_RECORD_INTO names another folder (bench/actions.py
# runs these scripts so, to count the Temporal actions of every journey's paths, leaving the saved
# histories as they are). The settings come from the environment too (RELANCE_*), as ever.
FOLDER = Path(os.environ.get("RELANCE_RECORD_INTO") or HERE)


@dataclass
class Recording:
    env: WorkflowEnvironment
    engine: Engine
    sink: DevSink
    settings: Settings
    make_lead: Callable[..., Lead]
    folder: Path = FOLDER

    async def start_defined(self, compiled: Any, lead: Lead) -> WorkflowHandle:
        """The compiled definition started for the lead, as enrollment starts it."""
        return await self.env.client.start_workflow(
            DefinedJourney.run,
            DefinedJourneyInput(lead.id, compiled),
            id=workflow_id(compiled.key, lead.id),
            task_queue=TASK_QUEUE,
        )

    async def save(self, handle: WorkflowHandle, name: str) -> None:
        """Wait for the journey's end and write its history as ``tests/histories/<name>.json``."""
        await handle.result()
        history = await handle.fetch_history()
        (self.folder / f"{name}.json").write_text(history.to_json())
        print(f"recorded {name}: {len(history.events)} events")


@asynccontextmanager
async def recording() -> AsyncIterator[Recording]:
    """A scratch database, a mail sink, the time-skipping server and a worker on ``TASK_QUEUE``."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/record.db"
        migrate.upgrade(url)
        engine = make_engine(url)
        async with DevSink(smtp_port=0, http_port=0) as sink:
            settings = Settings(
                _env_file=None,
                database_url=url,
                smtp_host="127.0.0.1",
                smtp_port=sink.smtp_port,
                sms_provider_url=f"http://127.0.0.1:{sink.http_port}/sms",
                secret_key="record",
                public_base_url="http://relance.invalid",
                temporal_task_queue=TASK_QUEUE,
            )
            env = await WorkflowEnvironment.start_time_skipping(
                test_server_existing_path=bundled_binary("temporal-test-server")
            )
            try:
                await ensure_search_attributes(env.client, "default")
                async with build_worker(env.client, settings, engine):
                    yield Recording(env, engine, sink, settings, make_lead_factory(engine))
            finally:
                await env.shutdown()


async def record_cart_histories(rec: Recording) -> None:
    from relance.dev.seeding import buy, update_cart

    for name, purchase in (("cart_three_reminders", False), ("cart_purchased", True)):
        lead = rec.make_lead()
        handle = await update_cart(
            rec.env.client, rec.settings, rec.engine, lead.id, f"cart-{name}"
        )
        if purchase:
            await rec.env.sleep(timedelta(hours=2))
            await buy(rec.env.client, rec.engine, lead.id)
        await rec.save(handle, name)


async def record_welcome_histories(rec: Recording) -> None:
    scenarios = {
        "welcome_relanced_by_email_no_reaction": (rec.make_lead(), None),
        "welcome_relanced_by_sms": (
            rec.make_lead(consents=("email", "sms"), phone="+33612345678"),
            None,
        ),
        "welcome_clicked": (rec.make_lead(), CLICKED),
        "welcome_no_consent": (rec.make_lead(consents=()), None),
    }
    for name, (lead, signal) in scenarios.items():
        handle = await rec.env.client.start_workflow(
            WelcomeJourney.run,
            WelcomeInput(lead_id=lead.id),
            id=f"welcome-{lead.id}",
            task_queue=TASK_QUEUE,
        )
        if signal:
            await rec.sink.wait_for_mail(to=lead.email)
            await asyncio.sleep(0.5)
            status = await handle.query(WelcomeJourney.status)
            await handle.signal(
                signal, TrackingSignal(status.messages[0].message_id, "https://example.com/x")
            )
        await rec.save(handle, name)


async def main() -> None:
    async with recording() as rec:
        await record_cart_histories(rec)
        await record_welcome_histories(rec)


if __name__ == "__main__":
    asyncio.run(main())
