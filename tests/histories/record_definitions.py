"""Record the histories of a journey written as data (workflows/defined.py running
tests/definitions/webinar.yaml) that tests/test_replay.py replays.

    .venv/bin/python -m tests.histories.record_definitions

Same rules as ``record.py``. Two leads: one clicks the invitation (the experiment, then the
engaged checkpoint and the list), one never does (the wait times out, Monday 09:00 in the lead's
zone, the nudge on the best channel, the condition).
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
        for name, clicks in (
            ("defined_webinar_clicked", True),
            ("defined_webinar_no_click", False),
        ):
            lead = rec.make_lead(consents=("email", "sms"), phone="+33612345678")
            handle = await rec.env.client.start_workflow(
                DefinedJourney.run,
                DefinedJourneyInput(lead.id, compiled),
                id=workflow_id(compiled.key, lead.id),
                task_queue=TASK_QUEUE,
            )
            if clicks:  # the send window may hold the invitation: move the clock until it is out
                while (
                    status := await handle.query(DefinedJourney.status)
                ).step != "wait_for:click":
                    await rec.env.sleep(timedelta(minutes=30))
                invite = status.messages[0].message_id
                await handle.signal(CLICKED, TrackingSignal(invite, "https://example.com/replay"))
            await rec.save(handle, name)


if __name__ == "__main__":
    asyncio.run(main())
