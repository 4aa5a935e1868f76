"""The abandoned-cart journey on the time-skipping server, with the real activities and mail
sink."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlmodel import Session
from temporalio.client import WorkflowHandle
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities import build_activities
from api import crud
from api.schemas import OrderIn
from relance.contracts.sending import SendRequest
from relance.dev.devsink import DevSink
from relance.dev.seeding import ITEMS, TEST_CONVERTER, buy, put_cart, unique_id, update_cart
from relance.domain.models import PromoCode
from relance.services.temporal import bundled_binary, ensure_search_attributes
from worker import build_worker
from workflows.abandoned_cart import AbandonedCartJourney, CartResult


async def started_at(handle: WorkflowHandle):
    return (await handle.query(AbandonedCartJourney.status)).last_update


async def test_a_cart_left_alone_gets_three_reminders_at_1h_25h_97h_the_last_with_a_promo(
    client, settings, worker, engine, sink: DevSink, make_lead
):
    lead = make_lead()
    handle = await update_cart(client, settings, engine, lead.id, unique_id("cart"))
    t0 = await started_at(handle)
    result: CartResult = await handle.result()

    assert result.outcome == "all_reminders_sent" and result.reminders_sent == 3
    offsets = [m.at - t0 for m in result.messages]
    for offset, hours in zip(offsets, (1, 25, 97), strict=False):
        assert offset == pytest.approx(timedelta(hours=hours), abs=timedelta(seconds=30))
    mails = await sink.wait_for_mail(to=lead.email, count=3)
    assert (
        "The Shining" in mails[0].html
        and "It</a> × 2" in mails[0].html
        and "30.50 EUR" in mails[0].text
    )
    code = result.messages[2].promo_code
    assert code and code in mails[2].text and mails[2].subject.startswith("10 % off your cart")
    assert not any(code in m.text for m in mails[:2])
    with Session(engine) as session:
        assert session.get(PromoCode, code).lead_id == lead.id


async def test_an_update_at_50_minutes_restarts_the_clock(
    client, settings, worker, engine, sink, make_lead, time_skipping_env
):
    lead = make_lead()
    cart_id = unique_id("cart")
    handle = await update_cart(client, settings, engine, lead.id, cart_id)
    t0 = await started_at(handle)
    await time_skipping_env.sleep(timedelta(minutes=50))
    await update_cart(client, settings, engine, lead.id, cart_id, ITEMS[:1])
    result = await handle.result()

    assert result.messages[0].at - t0 == pytest.approx(
        timedelta(minutes=110), abs=timedelta(seconds=30)
    )
    [first, *_] = await sink.wait_for_mail(to=lead.email, count=3)
    assert "The Shining" in first.html and "It</a>" not in first.html  # the cart as updated


async def test_a_purchase_after_reminder_1_ends_the_journey(
    client, settings, worker, engine, sink, make_lead, time_skipping_env
):
    lead = make_lead()
    handle = await update_cart(client, settings, engine, lead.id, unique_id("cart"))
    await time_skipping_env.sleep(timedelta(hours=1, minutes=5))
    await sink.wait_for_mail(to=lead.email)
    await buy(client, engine, lead.id)
    result = await handle.result()

    assert result.outcome == "purchased" and result.reminders_sent == 1
    assert len(sink.mails_to(lead.email)) == 1


@pytest.fixture
async def own_time_skipping_env():
    """A time-skipping server for this test alone: the test server keeps re-dispatching the
    cancelled, retrying send of the finished journey (a real server drops it), which would
    hold time still for every later test sharing the server."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=bundled_binary("temporal-test-server"),
        data_converter=TEST_CONVERTER,
    )
    await ensure_search_attributes(env.client, "default")
    yield env
    await env.shutdown()


async def test_a_purchase_while_a_send_is_being_retried_stops_it(
    settings, engine, make_lead, own_time_skipping_env
):
    time_skipping_env = own_time_skipping_env
    client = time_skipping_env.client
    async with DevSink(smtp_port=0, http_port=0) as late_sink:
        port = late_sink.smtp_port
    # Nothing listens on `port` now: every send attempt fails and is retried.
    down = settings.model_copy(
        update={
            "smtp_port": port,
            "temporal_task_queue": unique_id("smtp-down"),
            "cart_reminder_delays_hours": [0.01, 24.0, 72.0],
        }
    )  # reminder 1 after 36 s
    lead = make_lead()
    async with build_worker(client, down, engine):
        handle = await update_cart(client, down, engine, lead.id, unique_id("cart"))
        await time_skipping_env.sleep(timedelta(seconds=40))
        status = await handle.query(AbandonedCartJourney.status)
        assert status.step == "sending_reminder_1"  # and failing: nothing listens on the SMTP port
        await buy(client, engine, lead.id)
        result = await handle.result()
        async with DevSink(smtp_port=port, http_port=0) as back_up:  # the SMTP server comes back
            await time_skipping_env.sleep(timedelta(minutes=1))
            assert back_up.mails == []
    assert result.outcome == "purchased" and result.reminders_sent == 0
    assert [(m.step, m.status) for m in result.messages] == [("reminder_1", "cancelled")]


def test_the_send_activity_refuses_a_reminder_for_a_bought_cart(settings, engine, sink, make_lead):
    lead = make_lead()
    cart_id = unique_id("cart")
    put_cart(engine, lead.id, cart_id)
    with Session(engine) as session:
        crud.save_order(
            session=session, lead_id=lead.id, order=OrderIn(id=unique_id("order"), total=1)
        )
    send_email = next(a for a in build_activities(settings, engine) if a.__name__ == "send_email")
    result = ActivityEnvironment().run(
        send_email,
        SendRequest(
            lead.id,
            workflow_id=unique_id("cart"),
            journey="cart",
            step="reminder_1",
            template="cart_reminder_1",
            about=f"cart:{cart_id}",
        ),
    )
    assert result.status == "skipped" and result.reason == "the cart is bought"
    assert sink.mails_to(lead.email) == []


async def test_an_emptied_cart_ends_the_journey_quietly(
    client, settings, worker, engine, sink, make_lead
):
    lead = make_lead()
    cart_id = unique_id("cart")
    handle = await update_cart(client, settings, engine, lead.id, cart_id)
    await update_cart(client, settings, engine, lead.id, cart_id, items=[])
    result = await handle.result()
    assert result.outcome == "emptied" and result.messages == []
    assert sink.mails_to(lead.email) == []


def test_promo_codes_look_right():
    from activities.commerce import _CODE_ALPHABET

    assert (
        re.fullmatch(r"[A-Z2-9]+", _CODE_ALPHABET)
        and "O" not in _CODE_ALPHABET
        and "0" not in _CODE_ALPHABET
    )
