"""Record a history of a journey that records its run in the database (workflows/recording.py:
the ``journey-runs`` and ``journey-runs-entry-in-headers`` markers, the entry in the activities'
headers, the end activity), for tests/test_replay.py. ``defined_webinar_run_recorded`` is the same
path recorded when the entry was an activity of its own (the ``journey-runs`` marker alone).

    .venv/bin/python -m tests.histories.record_runs

Same rules as ``record.py``: the webinar written as data (tests/definitions/webinar.yaml), a lead
who clicks the invitation (the experiment, the engaged checkpoint, the list).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import yaml

from relance.contracts.definitions import DefinedJourneyInput, workflow_id
from relance.contracts.signals import CLICKED, TrackingSignal
from relance.services.definitions import checked, compile_definition
from tests.histories.record import TASK_QUEUE, recording
from workflows.defined import DefinedJourney

WEBINAR = Path(__file__).parent.parent / "definitions" / "webinar.yaml"


async def main() -> None:
    compiled = compile_definition(checked(yaml.safe_load(WEBINAR.read_text())), version=1)
    async with recording() as rec:
        lead = rec.make_lead(consents=("email", "sms"), phone="+33612345678")
        handle = await rec.env.client.start_workflow(
            DefinedJourney.run,
            DefinedJourneyInput(lead.id, compiled),
            id=workflow_id(compiled.key, lead.id),
            task_queue=TASK_QUEUE,
        )
        while (status := await handle.query(DefinedJourney.status)).step != "wait_for:click":
            await rec.env.sleep(timedelta(minutes=30))
        invite = status.messages[0].message_id
        await handle.signal(CLICKED, TrackingSignal(invite, "https://example.com/replay"))
        await rec.save(handle, "defined_webinar_run_entry_in_headers")


if __name__ == "__main__":
    asyncio.run(main())
