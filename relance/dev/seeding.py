"""Seed data straight into a Relance database and start journeys the short way: what the tests,
the history recorders (tests/histories/record*.py) and the benchmarks (bench/) share.

Leads with their consent proof, carts, orders, events, the default nurturing sequence, and the
fixed payload-encryption keys those runs use. A dev tool: nothing in the product imports it (an
import-linter contract in pyproject.toml), and its keys are no deployment's.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import WorkflowAlreadyStartedError

from api import crud
from api.schemas import CartIn, OrderIn
from relance.contracts import catalogue
from relance.contracts.nurturing import NurturingSequence
from relance.contracts.signals import CART_UPDATED, PURCHASED, CartSignal, PurchaseSignal
from relance.domain.db import session_scope
from relance.domain.encryption import EncryptionCodec, encrypted_converter
from relance.domain.models import Consent, Event, JourneyRun, Lead, Message, utcnow
from relance.domain.settings import Settings
from relance.services.nurturing import load_sequence
from workflows.abandoned_cart import AbandonedCartJourney
from workflows.event_reminder import EventReminderInput, EventReminderJourney

ROOT = Path(__file__).resolve().parents[2]

# Payload encryption in every test, recording and benchmark: their workers and clients use this
# converter, their settings the same keys (the API's client and codec endpoint). "old" still
# decrypts.
TEST_PAYLOAD_KEYS = {
    "test-2026": "dGVzdC1wYXlsb2FkLWtleS0yMDI2LTMyLWJ5dGVzISE=",
    "test-old": "b2xkLXRlc3QtcGF5bG9hZC1rZXktMzItYnl0ZXMhISE=",
}
TEST_PAYLOAD_KEY_ID = "test-2026"


def make_test_codec() -> EncryptionCodec:
    return EncryptionCodec(
        {k: base64.b64decode(v) for k, v in TEST_PAYLOAD_KEYS.items()}, TEST_PAYLOAD_KEY_ID
    )


TEST_CONVERTER = encrypted_converter(make_test_codec())


def unique_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_lead_factory(engine: Engine) -> Callable[..., Lead]:
    """Write a lead straight into the database (for journeys started without the API), with a
    granted consent and its proof per channel in ``consents``."""

    def _make(
        *,
        consents: tuple[str, ...] = ("email",),
        phone: str | None = None,
        first_name: str = "Ada",
        known: bool = False,
        email: str | None = None,
        lead_id: str | None = None,  # a test that needs the same leads on every run
    ) -> Lead:
        now = utcnow()
        lead = Lead(
            **({"id": lead_id} if lead_id else {}),
            email=email or f"lead-{uuid.uuid4().hex[:12]}@example.com",
            first_name=first_name,
            phone=phone,
            created_at=now - timedelta(days=30) if known else now,
            last_signup_at=now,
        )
        with session_scope(engine) as session:
            session.add(lead)
            session.flush()
            for channel in consents:
                session.add(
                    Consent(
                        lead_id=lead.id,
                        channel=channel,
                        status="granted",
                        source_url="https://example.com/form",
                        ip="203.0.113.7",
                        user_agent="pytest",
                        wording_version="v1",
                    )
                )
        return lead

    return _make


# Carts and orders ------------------------------------------------------------------------------
ITEMS = [
    {
        "sku": "B-1",
        "name": "The Shining",
        "qty": 1,
        "unit_price": 12.5,
        "url": "https://example.com/b/1",
    },
    {"sku": "B-2", "name": "It", "qty": 2, "unit_price": 9.0, "url": "https://example.com/b/2"},
]


def put_cart(engine: Engine, lead_id: str, cart_id: str, items=ITEMS) -> int:
    cart = CartIn(id=cart_id, items=items, total=sum(i["qty"] * i["unit_price"] for i in items))
    with Session(engine) as session:
        return crud.save_cart(session=session, lead_id=lead_id, cart=cart)


async def update_cart(
    client: Client, settings: Settings, engine: Engine, lead_id: str, cart_id: str, items=ITEMS
) -> WorkflowHandle:
    """What POST /events/track does for a cart_updated event, but for the first event: the
    time-skipping test server does not skip time for a workflow started by signal-with-start,
    so here the journey is started, then signalled. The real signal-with-start is tested end
    to end on the dev server (tests/test_api_cart_e2e.py)."""
    count = put_cart(engine, lead_id, cart_id, items)
    workflow_id = f"cart-{lead_id}"
    try:
        handle = await client.start_workflow(
            AbandonedCartJourney.run,
            catalogue.entry("cart").input(settings, lead_id=lead_id),
            id=workflow_id,
            task_queue=settings.temporal_task_queue,
        )
    except WorkflowAlreadyStartedError:
        handle = client.get_workflow_handle(workflow_id)
    await handle.signal(CART_UPDATED, CartSignal(cart_id, count))
    return handle


async def buy(client: Client, engine: Engine, lead_id: str) -> None:
    """What POST /events/track does for a purchase, less the order's follow-up journey
    (tested over HTTP in tests/test_api_cart_e2e.py): store it, tell the cart journey."""
    order_id = unique_id("order")
    with Session(engine) as session:
        crud.save_order(session=session, lead_id=lead_id, order=OrderIn(id=order_id, total=30.5))
    await client.get_workflow_handle(f"cart-{lead_id}").signal(PURCHASED, PurchaseSignal(order_id))


# Events ----------------------------------------------------------------------------------------
def make_event(engine: Engine, starts_at: datetime, **fields) -> Event:
    event = Event(
        name="Journeys that convert",
        starts_at=starts_at,
        time_zone="Europe/Paris",
        duration_minutes=60,
        join_url="https://meet.example.com/journeys",
        speakers=["Ada Lovelace", "Grace Hopper"],
        topics=["Lead scoring", "Reminders"],
        **fields,
    )
    with session_scope(engine) as session:
        session.add(event)
    return event


def update_event(engine: Engine, event_id: str, **fields) -> None:
    with session_scope(engine) as session:
        event = session.get(Event, event_id)
        for name, value in fields.items():
            setattr(event, name, value)


async def start_event_journey(
    client: Client, settings: Settings, event: Event, lead: Lead, **knobs
) -> WorkflowHandle:
    return await client.start_workflow(
        EventReminderJourney.run,
        EventReminderInput(event_id=event.id, lead_id=lead.id, **knobs),
        id=unique_id(f"event-{event.id}-{lead.id}"),
        task_queue=settings.temporal_task_queue,
    )


# Nurturing -------------------------------------------------------------------------------------
DEFAULT_SEQUENCE_FILE = ROOT / "config" / "nurturing.yaml"


def default_sequence() -> NurturingSequence:
    return load_sequence(DEFAULT_SEQUENCE_FILE)


# What the dashboard draws ----------------------------------------------------------------------
def seed_journey_figures(
    engine: Engine, journey: str, *, leads: int = 40, first_name: str = "Ada"
) -> list[str]:
    """Runs and messages of one journey written as data, over the last week, with an A/B
    experiment on its invitation (``invite:a`` / ``invite:b``): every lead is sent the
    invitation (one in ten skipped, no consent), half are sent the reminder; a third of the
    ended runs convert (more on arm b), some pass the ``clicked`` checkpoint, a quarter are still
    active; opens and clicks human and machine. The leads' ids, first one first."""
    now = utcnow()
    make = make_lead_factory(engine)
    ids: list[str] = []

    def past(moment: datetime) -> datetime:
        return min(moment, now - timedelta(minutes=5))

    with session_scope(engine) as session:
        for n in range(leads):
            lead = make(first_name=first_name if n == 0 else f"Lead {n}")
            ids.append(lead.id)
            entered = now - timedelta(days=7 - n % 7, hours=n % 5)
            workflow_id = f"{journey}-{lead.id}"
            arm = "ab"[n % 2]
            active = n % 4 == 3
            converted = not active and (n % 3 == 0 or (arm == "b" and n % 5 == 0))
            session.add(
                JourneyRun(
                    workflow_id=workflow_id,
                    run_id=uuid.uuid4().hex,
                    lead_id=lead.id,
                    journey=journey,
                    entered_at=entered,
                    closed_at=None if active else past(entered + timedelta(hours=20 + n)),
                    outcome=None if active else ("converted" if converted else "completed"),
                    reason=None if active else ("goal reached" if converted else "the end"),
                    goal="registered" if converted else None,
                    checkpoints=[] if active or n % 2 else ["clicked"],
                    arms={"invite": arm},
                )
            )
            skipped = n % 10 == 9
            steps = [("invite", f"invite:{arm}.email", "skipped" if skipped else "sent")]
            if n % 2 == 0:
                steps.append(("reminder", "reminder.email", "sent"))
            for hour, (template, step, state) in enumerate(steps):
                at = past(entered + timedelta(hours=hour * 24 + 1))
                session.add(
                    Message(
                        send_key=f"{workflow_id}:{step}",
                        lead_id=lead.id,
                        workflow_id=workflow_id,
                        journey=journey,
                        step=f"{step}@{at:%y%m%d%H%M%S}",
                        channel="email",
                        template=f"{journey}_{template}",
                        topic="events",
                        status=state,
                        reason="no marketing consent for email" if state == "skipped" else None,
                        created_at=at,
                        sent_at=None if state == "skipped" else at,
                        opened_at=at + timedelta(minutes=1) if n % 3 != 2 else None,
                        human_opened_at=at + timedelta(hours=2) if n % 3 == 0 else None,
                        clicked_at=at + timedelta(hours=3) if n % 4 == 0 else None,
                        human_clicked_at=at + timedelta(hours=3) if n % 8 == 0 else None,
                        unsubscribed_at=at + timedelta(hours=4) if n == 7 else None,
                    )
                )
    return ids
