"""Record the histories of journeys that behave well together, which tests/test_replay.py
replays: a welcome through the send window and the frequency cap (the ``send-window`` patch
path), the newsletter scenario that redirects to the white paper, the white paper refusing the
way back, and browse abandonment.

    .venv/bin/python -m tests.histories.record_together

Same rules as ``record.py``.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from relance.contracts.signals import PAGE_VIEWED, PageViewSignal
from tests.histories.record import TASK_QUEUE, recording
from workflows.browse import BrowseAbandonmentJourney, BrowseInput
from workflows.scenario import ScenarioInput, ScenarioJourney, workflow_id
from workflows.welcome import WelcomeInput, WelcomeJourney


async def main() -> None:
    async with recording() as rec:
        client = rec.env.client
        lead = rec.make_lead()
        handle = await client.start_workflow(
            BrowseAbandonmentJourney.run,
            BrowseInput(lead.id),
            id=f"browse-{lead.id}",
            task_queue=TASK_QUEUE,
        )
        for category in ("stephen-king", "tolkien", "stephen-king", "stephen-king"):
            await handle.signal(PAGE_VIEWED, PageViewSignal(category))
        await rec.env.sleep(timedelta(seconds=1))
        await rec.save(handle, "browse_recommendation_sent")

        lead = rec.make_lead()
        # Two welcomes at once for one lead: 2 welcomes + 2 relances in 48 h, the cap (3 in 7 days)
        # defers the last.
        handles = [
            await client.start_workflow(
                WelcomeJourney.run,
                WelcomeInput(lead_id=lead.id, relance_by_sms=False),
                id=f"welcome-{i}-{lead.id}",
                task_queue=TASK_QUEUE,
            )
            for i in range(2)
        ]
        await rec.save(handles[0], "welcome_send_window_first")
        await rec.save(handles[1], "welcome_send_window_capped")

        # Last: the time-skipping server keeps time locked after a child that outlives its parent.
        lead = rec.make_lead()
        parent = await client.start_workflow(
            ScenarioJourney.run,
            ScenarioInput(lead.id, "newsletter", wait_days=0),
            id=workflow_id("newsletter", lead.id),
            task_queue=TASK_QUEUE,
        )
        await rec.save(parent, "scenario_newsletter_redirected")
        await asyncio.sleep(2)  # the child runs at once (no wait)
        await rec.save(
            client.get_workflow_handle(workflow_id("white_paper", lead.id)),
            "scenario_white_paper_refused",
        )


if __name__ == "__main__":
    asyncio.run(main())
