"""Record the enrollment-rules histories that tests/test_replay.py replays: a nurturing
run re-enrolled after its cooldown (its sends keyed apart) that ends ``excluded`` when the lead
becomes a customer mid-journey, the newsletter checking the white paper's enrollment rules before
redirecting, and the white paper refusing the way back with the refusal recorded (the
``record-enrollment-refusals`` patch path).

    .venv/bin/python -m tests.histories.record_enrollment_rules

Same rules as ``record.py``.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from relance.domain.db import session_scope
from relance.domain.models import Order
from relance.services.nurturing import load_sequence
from tests.histories.record import TASK_QUEUE, recording
from workflows.nurturing import LeadNurturingJourney, NurturingInput
from workflows.scenario import ScenarioInput, ScenarioJourney, workflow_id


async def main() -> None:
    async with recording() as rec:
        client = rec.env.client
        lead = rec.make_lead()
        handle = await client.start_workflow(
            LeadNurturingJourney.run,
            NurturingInput(
                lead_id=lead.id,
                sequence=load_sequence(rec.settings.nurturing_sequence_file),
                reenrolled=True,
            ),
            id=f"nurture-{lead.id}",
            task_queue=TASK_QUEUE,
        )
        while (
            step := (await handle.query(LeadNurturingJourney.status)).step
        ) != "waiting_for_case_study":
            if (
                step == "sending_welcome_newsletter"
            ):  # maybe waiting for the send window: let it open
                await rec.env.sleep(timedelta(hours=1))
            await asyncio.sleep(0.05)
        with session_scope(
            rec.engine
        ) as session:  # an order from the back office: no purchase signal
            session.add(Order(id=f"order-{lead.id}", lead_id=lead.id, items=[]))
        await rec.env.sleep(
            timedelta(days=10)
        )  # the case study, 4 days later (and its send window)
        await rec.save(handle, "nurturing_reenrolled_excluded")

        # Last: the time-skipping server keeps time locked after a child that outlives its parent.
        lead = rec.make_lead()
        parent = await client.start_workflow(
            ScenarioJourney.run,
            ScenarioInput(lead.id, "newsletter", wait_days=0),
            id=workflow_id("newsletter", lead.id),
            task_queue=TASK_QUEUE,
        )
        await rec.save(
            parent, "scenario_newsletter_redirected_checked"
        )  # the target's rules checked first
        await asyncio.sleep(2)  # the child runs at once (no wait)
        await rec.save(
            client.get_workflow_handle(workflow_id("white_paper", lead.id)),
            "scenario_white_paper_refusal_recorded",
        )


if __name__ == "__main__":
    asyncio.run(main())
