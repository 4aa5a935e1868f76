"""Enrollment rules: exclusions checked at entry and before each send, at most N journeys
at once per lead, re-enrollment and its cooldown."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from sqlmodel import Session, select
from temporalio.testing import WorkflowEnvironment

from activities.sending import SendLedger
from relance.contracts.sending import SendRequest
from relance.contracts.skips import SkipReason
from relance.dev.seeding import unique_id
from relance.domain.db import session_scope
from relance.domain.journey_rules import JourneyRules, cooldown_refusal
from relance.domain.models import ListMember, Message, Order
from relance.domain.settings import Settings
from relance.services.journeys import rules_for
from relance.services.nurturing import load_sequence
from tests.conftest import LiveStack
from tests.test_api_cart_e2e import purchase_event
from tests.test_api_nurturing_e2e import sign_up, state_when
from tests.test_nurturing_journey import wait_for_step
from worker import build_worker
from workflows.nurturing import LeadNurturingJourney, NurturingInput


async def test_a_customer_is_not_enrolled_into_nurturing(live: LiveStack):
    lead_id = (await sign_up(live))["lead"]["id"]
    bought = await live.http.post(
        "/events/track", json=purchase_event(lead_id, f"order-rules-{lead_id[:8]}")
    )
    assert bought.status_code == 202
    response = await live.http.post(f"/leads/{lead_id}/journeys/nurturing")
    assert response.status_code == 409
    assert response.json()["status"] == "refused" and "is a customer" in response.json()["detail"]
    state = await live.http.get(f"/leads/{lead_id}/journeys/nurturing")
    assert state.status_code == 404  # never started


async def test_a_lead_in_too_many_journeys_is_not_enrolled_in_another(live: LiveStack):
    lead_id = (await sign_up(live, journeys=["welcome"]))["lead"]["id"]
    previous = live.settings.max_concurrent_journeys
    live.settings.max_concurrent_journeys = 1  # the app's own settings object
    try:
        response = await live.http.post(f"/leads/{lead_id}/journeys/nurturing")
    finally:
        live.settings.max_concurrent_journeys = previous
    assert response.status_code == 409, response.text
    assert f"already in 1 journeys (at most 1): welcome-{lead_id}" in response.json()["detail"]
    assert (
        await live.http.post(f"/leads/{lead_id}/journeys/nurturing")
    ).status_code == 201  # limit back to 5
    for journey in ("welcome", "nurture"):
        await live.temporal.get_workflow_handle(f"{journey}-{lead_id}").terminate(
            "test over"
        )  # on timers


# Re-enrollment and cooldown --------------------------------------------------------------------
def test_the_cooldown_reason_says_when_the_lead_left_and_how_long_it_lasts():
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    month = timedelta(days=30)
    assert (
        cooldown_refusal(
            journey="nurturing", closed_at=now - timedelta(days=3, hours=2), cooldown=month, now=now
        )
        == "left the nurturing journey 3 days ago; cooldown 30 days"
    )
    assert (
        cooldown_refusal(
            journey="browse",
            closed_at=now - timedelta(hours=1),
            cooldown=timedelta(days=1),
            now=now,
        )
        == "left the browse journey 1 hour ago; cooldown 1 day"
    )
    assert (
        cooldown_refusal(
            journey="nurturing",
            closed_at=now - month - timedelta(seconds=1),
            cooldown=month,
            now=now,
        )
        == ""
    )
    assert cooldown_refusal(journey="nurturing", closed_at=None, cooldown=month, now=now) == ""
    assert cooldown_refusal(journey="cart", closed_at=now, cooldown=timedelta(0), now=now) == ""


def test_journey_rules_are_checked_when_the_settings_load():
    rules = Settings(
        _env_file=None, journey_rules={"nurturing": {"cooldown_days": 60, "exclude": ["list:vip"]}}
    )
    nurturing = rules_for(rules, "nurturing")
    assert nurturing.cooldown_days == 60 and nurturing.exclude == ("list:vip",)
    assert rules_for(rules, "welcome").reenroll is False  # the default stays for the others
    for bad in (
        {"nurturing": {"exclude": ["vip"]}},
        {"nurturing": {"exclude": ["purchased:"]}},
        {"nurturing": {"cooldown_days": -1}},
        {"nurturing": {"re_enroll": True}},
    ):
        with pytest.raises(ValidationError):
            Settings(_env_file=None, journey_rules=bad)


async def test_a_journey_that_allows_it_takes_the_lead_again_only_after_its_cooldown(
    live: LiveStack,
):
    lead = (await sign_up(live, journeys=["nurturing"]))["lead"]
    lead_id, workflow_id = lead["id"], f"nurture-{lead['id']}"
    await live.sink.wait_for_mail(to=lead["email"])  # the first run's newsletter
    await state_when(live, lead_id, lambda s: s["step"] == "waiting_for_case_study")
    await live.temporal.get_workflow_handle(workflow_id).terminate("the lead left")  # on a timer

    refused = await live.http.post(f"/leads/{lead_id}/journeys/nurturing")
    assert refused.status_code == 409, refused.text
    assert refused.json()["status"] == "refused"
    assert re.fullmatch(
        r"not enrolled: left the nurturing journey (just now|\d+ seconds? ago); cooldown 30 days",
        refused.json()["detail"],
    ), refused.json()["detail"]
    assert (await live.http.get(f"/leads/{lead_id}/journeys/nurturing")).json()[
        "status"
    ] == "TERMINATED"

    previous = live.settings.journey_rules
    live.settings.journey_rules = {
        "nurturing": JourneyRules(cooldown_days=1 / 86400, exclude=("customer",))
    }
    try:
        await asyncio.sleep(1.2)  # a one-second cooldown, so the test need not wait 30 days
        again = await live.http.post(f"/leads/{lead_id}/journeys/nurturing")
    finally:
        live.settings.journey_rules = previous
    assert again.status_code == 201, again.text
    assert (
        again.json()["detail"]
        == "nurturing journey started again (the lead went through it before)"
    )
    # The second run's newsletter goes out: its send key is its own, not the first run's (sent
    # already).
    mails = await live.sink.wait_for_mail(to=lead["email"], count=2)
    assert [m.subject for m in mails] == ["Welcome to the Relance newsletter"] * 2
    await state_when(live, lead_id, lambda s: s["step"] == "waiting_for_case_study")
    with Session(live.engine) as session:
        keys = session.exec(
            select(Message.send_key).where(Message.lead_id == lead_id, Message.status == "sent")
        ).all()
    assert len(set(keys)) == 2 and f"{workflow_id}:welcome_newsletter" in keys
    await live.temporal.get_workflow_handle(workflow_id).terminate("test over")  # on a timer


async def test_the_welcome_allows_no_re_enrollment(live: LiveStack):
    lead_id = (await sign_up(live, journeys=["welcome"]))["lead"]["id"]
    await live.temporal.get_workflow_handle(f"welcome-{lead_id}").terminate("test")
    await asyncio.sleep(0.1)
    again = await live.http.post(f"/leads/{lead_id}/journeys/welcome")
    assert again.status_code == 409 and again.json()["status"] == "already_enrolled"
    assert (
        "already went through the welcome journey (it ended: TERMINATED); it allows no "
        "re-enrollment" in again.json()["detail"]
    )


# Exclusions checked again before each send ----------------------------------------------------
def test_the_ledger_skips_a_send_the_journeys_exclusions_refuse(engine, make_lead):
    """A buyer of a Stephen King book must not get the "discover Stephen King" email."""
    rules = Settings(
        _env_file=None,
        journey_rules={"scenario": JourneyRules(exclude=("purchased:stephen-king", "list:vip"))},
    )
    ledger = SendLedger(engine, rules=lambda journey: rules_for(rules, journey))
    reader, other, vip = make_lead(), make_lead(), make_lead()
    with session_scope(engine) as session:
        session.add(
            Order(
                id=unique_id("order"),
                lead_id=reader.id,
                items=[
                    {
                        "sku": "isbn-9782253151340",
                        "name": "Ça",
                        "quantity": 1,
                        "price": 9.9,
                        "category": "stephen-king",
                    }
                ],
            )
        )
        session.add(ListMember(list_name="vip", lead_id=vip.id, reason="test"))

    def request(lead, **extra) -> SendRequest:
        return SendRequest(
            lead_id=lead.id,
            workflow_id=unique_id(f"scenario-{lead.id}"),
            journey="scenario",
            step="discover",
            template="nurture_welcome_newsletter",
            **extra,
        )

    skipped = ledger.claim(request(reader), "email")
    assert skipped.result.status == "skipped"
    assert skipped.result.reason == "excluded: the lead already purchased stephen-king"
    assert skipped.result.skip is SkipReason.EXCLUDED  # what the journeys branch on
    assert (
        ledger.claim(request(vip), "email").result.reason == "excluded: the lead is in the list vip"
    )
    assert ledger.claim(request(other), "email").message is not None  # not excluded
    assert (
        ledger.claim(request(reader, kind="transactional"), "email").message is not None
    )  # exclusions: marketing only
    with Session(engine) as session:
        row = session.get(Message, skipped.result.message_id)
        assert (row.status, row.reason) == (
            "skipped",
            "excluded: the lead already purchased stephen-king",
        )
    # A retried attempt finds the decision recorded.
    again = ledger.claim(
        SendRequest(**{**request(reader).__dict__, "workflow_id": row.workflow_id}), "email"
    )
    assert again.result.status == "skipped" and again.result.already_sent
    assert again.result.skip is SkipReason.EXCLUDED  # the retried send says why, too


@pytest.mark.parametrize("becomes", ["customer", "in the list"])
async def test_a_lead_excluded_mid_journey_gets_no_further_email(
    becomes, client, time_skipping_env: WorkflowEnvironment, settings, engine, sink, make_lead
):
    """Nurturing excludes customers (and here the list "no-nurture"): an order imported from the
    back office (no purchase event reached the journey), or a list membership, mid-journey."""
    excluding = settings.model_copy(
        update={
            "temporal_task_queue": unique_id("rules"),
            "journey_rules": {"nurturing": JourneyRules(exclude=("customer", "list:no-nurture"))},
        }
    )
    lead = make_lead()
    async with build_worker(client, excluding, engine):
        handle = await client.start_workflow(
            LeadNurturingJourney.run,
            NurturingInput(
                lead_id=lead.id, sequence=load_sequence(excluding.nurturing_sequence_file)
            ),
            id=unique_id(f"nurture-{lead.id}"),
            task_queue=excluding.temporal_task_queue,
        )
        await wait_for_step(handle, "waiting_for_case_study")
        with session_scope(engine) as session:
            if becomes == "customer":
                session.add(Order(id=unique_id("order"), lead_id=lead.id, items=[]))
            else:
                session.add(ListMember(list_name="no-nurture", lead_id=lead.id, reason="imported"))
        await time_skipping_env.sleep(timedelta(days=4, hours=1))
        result = await handle.result()
    reason = (
        "excluded: the lead is a customer (has an order)"
        if becomes == "customer"
        else "excluded: the lead is in the list no-nurture"
    )
    assert (result.outcome, result.reason) == ("excluded", reason)
    assert [(m.step, m.status) for m in result.messages] == [
        ("welcome_newsletter", "sent"),
        ("case_study", "skipped"),
    ]
    assert len(await sink.wait_for_mail(to=lead.email)) == 1 and len(sink.mails_to(lead.email)) == 1
    with Session(engine) as session:
        row = session.exec(
            select(Message).where(Message.lead_id == lead.id, Message.step == "case_study")
        ).one()
    assert (row.status, row.reason) == ("skipped", reason)
