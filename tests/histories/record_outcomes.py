"""Record the histories of the outcomes the other recordings do not cover, so that every journey
and every kind of ending is replayed by tests/test_replay.py: the order follow-up (a first
purchase: thank-you and promo code; a repeat purchase: the loyal-customers list), a welcome
ended by an unsubscribe and one ended by a goal (a purchase), a cart emptied, a browse journey
that found no interest, and an event journey that ran every step.

    .venv/bin/python -m tests.histories.record_outcomes

Same rules as ``record.py``.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlmodel import Session

from api import crud
from api.schemas import OrderIn
from relance.contracts.signals import (
    GOAL_REACHED,
    PURCHASE_GOAL,
    UNSUBSCRIBED,
    GoalSignal,
    TrackingSignal,
)
from relance.dev.seeding import make_event, update_cart
from relance.domain.send_window import SendWindow
from tests.histories.record import TASK_QUEUE, Recording, recording
from tests.waiting import eventually
from workflows.browse import BrowseAbandonmentJourney, BrowseInput
from workflows.event_reminder import EventReminderInput, EventReminderJourney
from workflows.purchase import PurchaseFollowUp, PurchaseInput
from workflows.welcome import WelcomeInput, WelcomeJourney

# The welcome is signalled while it waits for an open, which the time-skipping server does not
# reach by itself: its sends go out at once, whatever the hour the recording runs at.
ALWAYS = SendWindow(days=[1, 2, 3, 4, 5, 6, 7], start="00:00", end="24:00")


async def record_purchases(rec: Recording) -> None:
    lead = rec.make_lead()
    for name in (
        "purchase_first_thank_you",
        "purchase_repeat_loyal_list",
    ):  # the same lead's 1st and 2nd orders
        order_id = f"order-{name}"
        with Session(rec.engine) as session:
            crud.save_order(
                session=session, lead_id=lead.id, order=OrderIn(id=order_id, total=42.0)
            )
        handle = await rec.env.client.start_workflow(
            PurchaseFollowUp.run,
            PurchaseInput(order_id),
            id=f"purchase-{order_id}",
            task_queue=TASK_QUEUE,
        )
        await rec.save(handle, name)


async def record_welcome_endings(rec: Recording) -> None:
    for name in ("welcome_unsubscribed", "welcome_converted_by_a_purchase"):
        lead = rec.make_lead()
        handle = await rec.env.client.start_workflow(
            WelcomeJourney.run,
            WelcomeInput(lead_id=lead.id, send_window=ALWAYS),
            id=f"welcome-{lead.id}",
            task_queue=TASK_QUEUE,
        )

        async def waiting_for_open():
            status = await handle.query(WelcomeJourney.status)
            return status if status.step == "waiting_for_open" else None

        status = await eventually(waiting_for_open, timeout=30, what="the welcome to be sent")
        if name == "welcome_unsubscribed":
            await handle.signal(UNSUBSCRIBED, TrackingSignal(status.messages[0].message_id))
        else:
            await handle.signal(GOAL_REACHED, GoalSignal(PURCHASE_GOAL, "api:purchase"))
        await rec.save(handle, name)


async def record_cart_emptied(rec: Recording) -> None:
    lead = rec.make_lead()
    handle = await update_cart(rec.env.client, rec.settings, rec.engine, lead.id, "cart-emptied")
    await update_cart(rec.env.client, rec.settings, rec.engine, lead.id, "cart-emptied", items=[])
    await rec.save(handle, "cart_emptied")


async def record_browse_no_interest(rec: Recording) -> None:
    lead = rec.make_lead()
    handle = await rec.env.client.start_workflow(
        BrowseAbandonmentJourney.run,
        BrowseInput(lead.id),
        id=f"browse-{lead.id}",
        task_queue=TASK_QUEUE,
    )
    await rec.save(handle, "browse_no_interest")


async def record_event_every_step(rec: Recording) -> None:
    event = make_event(
        rec.engine, await rec.env.get_current_time() + timedelta(days=10), series="record-outcomes"
    )
    lead = rec.make_lead(consents=("email", "sms"), phone="+33612345679")
    handle = await rec.env.client.start_workflow(
        EventReminderJourney.run,
        EventReminderInput(event_id=event.id, lead_id=lead.id),
        id=f"event-{event.id}-{lead.id}",
        task_queue=TASK_QUEUE,
    )
    await rec.save(handle, "event_every_step")


async def main() -> None:
    async with recording() as rec:
        await record_purchases(rec)
        await record_welcome_endings(rec)
        await record_cart_emptied(rec)
        await record_browse_no_interest(rec)
        await record_event_every_step(rec)


if __name__ == "__main__":
    asyncio.run(main())
