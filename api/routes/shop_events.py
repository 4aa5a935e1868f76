"""What the shop (or the site) tells Relance: ``POST /events/track`` with cart updates,
purchases, page views, content downloads and demo bookings.

The event is stored first (carts, orders, activities), then passed to the journeys: a cart
update starts or feeds the lead's abandoned-cart journey (signal-with-start), a purchase ends it
and starts the order's follow-up (and ends a nurturing journey: goal reached). A download
(``asset_downloaded``) or a demo booking (``demo_booked``) goes to the lead's running nurturing
journey, if any (a download also to its defined journeys waiting for one). A purchase and a
demo booking are goals (relance/contracts/catalogue.py): every running journey of the lead that
declares the goal ends as converted (``converted`` in the answer lists them). A custom event is
passed, by its name, to the lead's running defined journeys that wait for it, and enters the
lead into the defined journeys it triggers (relance/services/triggers.py). A shop that retries an
event changes nothing the second time.
Every event is the lead's activity: it stamps ``last_activity_at``, tells a running
re-engagement journey the lead came back, and may make the premium offer due
(relance/services/lead_activity.py).
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException, status
from temporalio.service import RPCError

from api import crud
from api.deps import DatabaseDep, SettingsDep, TemporalDep, require_api_key
from api.errors import validation_response
from api.journeys import cart_updated, goal_reached, page_viewed, purchased, tell_nurturing
from api.schemas import (
    AssetDownloaded,
    CartUpdated,
    CustomEventIn,
    DemoBooked,
    PageView,
    Purchase,
    TrackedEvent,
    TrackedEventAccepted,
)
from relance.contracts.signals import (
    ASSET_DOWNLOADED,
    DEMO_BOOKED,
    DEMO_BOOKED_GOAL,
    PURCHASE_GOAL,
    AssetSignal,
)
from relance.domain.lead_schema import AttributeProblems
from relance.domain.models import utcnow
from relance.domain.settings import Settings
from relance.services.journey_store import keys_with_goal
from relance.services.lead_activity import act_on
from relance.services.triggers import (
    EVENT,
    TRACKED,
    on_custom_event,
    on_download,
    reevaluate_segments,
)

CLOCK_SKEW = timedelta(minutes=5)  # a sender's clock a little ahead is not "the future"

router = APIRouter(prefix="/events", tags=["shop events"], dependencies=[Depends(require_api_key)])


@router.post(
    "/track",
    response_model=TrackedEventAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        404: {"description": "No lead with this id"},
        409: {"description": "The cart or the order belongs to another lead"},
        422: validation_response(
            "A custom event the lead schema does not declare, a property of the wrong type, an "
            "occurred_at in the future, or a purchase's promo code that is not the lead's, used "
            "or expired: its `loc` names the field; nothing is stored"
        ),
    },
)
async def track(
    event: TrackedEvent,
    db: DatabaseDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    background: BackgroundTasks,
) -> TrackedEventAccepted:
    converted: list[str] = []
    read_by: tuple[str, ...] = ()  # what the segment-entered triggers re-evaluate it for
    try:
        if isinstance(event, CartUpdated):
            items = await db.run(crud.save_cart, lead_id=event.lead, cart=event.cart)
            workflow_id = await cart_updated(
                temporal, settings, lead_id=event.lead, cart_id=event.cart.id, items=items
            )
            detail = (
                f"cart {event.cart.id} stored ({items} items)"
                if workflow_id
                else f"cart {event.cart.id} is empty and no cart journey is running"
            )
        elif isinstance(event, PageView):
            await db.run(
                crud.save_page_view,
                lead_id=event.lead,
                url=str(event.url),
                category=event.category,
                settings=settings,
            )
            workflow_id, detail = None, "page view recorded"
            read_by = (TRACKED,)
            if event.category:  # browse abandonment: the lead's journey counts views per category
                workflow_id, refusal = await page_viewed(
                    temporal, settings, lead_id=event.lead, category=event.category
                )
                detail += (
                    f" ({event.category}: passed to the browse-abandonment journey)"
                    if workflow_id
                    else f" ({event.category}: no browse-abandonment journey: {refusal})"
                )
        elif isinstance(event, CustomEventIn):
            properties = checked_event(settings, event)
            new = await db.run(
                crud.save_custom_event,
                lead_id=event.lead,
                name=event.name,
                properties=properties,
                event_id=event.id,
                occurred_at=event.occurred_at,
            )
            workflow_id = None
            detail = f"{event.name} " + ("recorded" if new else "was already recorded (same id)")
            if new:  # a retry triggers nothing again
                read_by = (EVENT,)
                told, enrolled = await on_custom_event(
                    temporal,
                    settings,
                    db.engine,
                    lead_id=event.lead,
                    name=event.name,
                    properties=properties,
                    event_id=event.id,
                )
                started = [e.journey for e in enrolled if e.status == "started"]
                if told:
                    detail += f"; passed to {', '.join(told)}"
                if started:
                    detail += f"; entered {', '.join(started)}"
                    workflow_id = next(e.workflow_id for e in enrolled if e.status == "started")
        elif isinstance(event, AssetDownloaded):
            await db.run(crud.touch_lead, lead_id=event.lead, kind=event.type)
            workflow_id = await tell_nurturing(
                temporal, event.lead, ASSET_DOWNLOADED, AssetSignal(event.asset)
            )
            detail = f"download of {event.asset} " + (
                "passed to the nurturing journey"
                if workflow_id
                else "noted; no nurturing journey is running"
            )
            told = await on_download(temporal, db.engine, lead_id=event.lead, asset=event.asset)
            if told:
                detail += f"; passed to {', '.join(told)}"
                workflow_id = workflow_id or told[0]
        elif isinstance(event, DemoBooked):
            await db.run(crud.touch_lead, lead_id=event.lead, kind=event.type)
            workflow_id = await tell_nurturing(temporal, event.lead, DEMO_BOOKED)
            converted = await goal_reached(
                temporal,
                lead_id=event.lead,
                goal=DEMO_BOOKED_GOAL,
                source="api:demo_booked",
                defined=await db.run(keys_with_goal, goal=DEMO_BOOKED_GOAL),
            )
            detail = "demo booked: " + (
                "the nurturing journey ends (goal reached)"
                if workflow_id
                else "no nurturing journey is running"
            )
        else:  # the goal first: every journey that declares it ends as converted
            assert isinstance(event, Purchase)
            new = await db.run(crud.save_order, lead_id=event.lead, order=event.order)
            converted = await goal_reached(
                temporal,
                lead_id=event.lead,
                goal=PURCHASE_GOAL,
                source=f"api:purchase:{event.order.id}",
                defined=await db.run(keys_with_goal, goal=PURCHASE_GOAL),
            )
            workflow_id = await purchased(
                temporal, settings, lead_id=event.lead, order_id=event.order.id
            )
            detail = f"order {event.order.id} " + ("stored" if new else "was already recorded")
        due = await db.run(
            crud.activity_follow_ups, settings=settings, lead_id=event.lead, kind=event.type
        )
        await act_on(temporal, settings, due)
        if any(f.reengaging for f in due) and workflow_id is None:
            workflow_id = f"reengage-{event.lead}"
    except RPCError as err:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the event is stored but the journey engine (Temporal) is unreachable; send it again",
        ) from err
    if read_by:  # after the answer: the segments whose rules read it, for this lead
        background.add_task(
            reevaluate_segments,
            temporal,
            settings,
            db.engine,
            lead_ids=[event.lead],
            facts=read_by,
        )
    return TrackedEventAccepted(
        type=event.type,
        lead_id=event.lead,
        workflow_id=workflow_id,
        detail=detail,
        converted=converted,
    )


def checked_event(settings: Settings, event: CustomEventIn) -> dict:
    """The event's properties as stored; 422 naming what is wrong (nothing is stored)."""
    if event.occurred_at is not None and event.occurred_at > utcnow() + CLOCK_SKEW:
        raise crud.unprocessable(["body", "occurred_at"], {"": "occurred_at is in the future"})
    try:
        return settings.lead_schema().check_event(event.name, event.properties)
    except AttributeProblems as err:
        problems = {k: v for k, v in err.problems.items() if k}
        if "" in err.problems:
            raise crud.unprocessable(["body", "name"], {"": err.problems[""]}) from None
        raise crud.unprocessable(["body", "properties"], problems) from None
