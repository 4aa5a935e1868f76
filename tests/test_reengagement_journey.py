"""The re-engagement journey on the time-skipping server, with the real activities, database and
mail sink."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlmodel import Session, select
from temporalio.client import Client, WorkflowHandle

from relance.contracts.signals import (
    ACTIVITY,
    CLICKED,
    UNSUBSCRIBED,
    ActivitySignal,
    TrackingSignal,
)
from relance.dev.devsink import DevSink
from relance.dev.seeding import unique_id
from relance.domain.consent import latest_consent
from relance.domain.models import Consent, Lead, Message, ScoreEvent
from workflows.reengagement import ReEngagementInput, ReEngagementJourney, ReEngagementResult

SUBJECTS = [
    "We miss you, Ada: the best of Relance lately",
    "What do you want to hear about, Ada?",
    "Shall we stay in touch, Ada?",
]


async def start(client: Client, settings, lead, **knobs) -> WorkflowHandle:
    return await client.start_workflow(
        ReEngagementJourney.run,
        ReEngagementInput(lead_id=lead.id, **knobs),
        id=unique_id(f"reengage-{lead.id}"),
        task_queue=settings.temporal_task_queue,
    )


async def wait_for_step(handle: WorkflowHandle, step: str, timeout: float = 10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while (status := await handle.query(ReEngagementJourney.status)).step != step:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"journey still at {status.step!r}, expected {step!r}")
        await asyncio.sleep(0.02)
    return status


async def test_no_reaction_means_three_emails_a_week_apart_then_suppression(
    client, settings, worker, sink: DevSink, make_lead, engine
):
    lead = make_lead()
    result: ReEngagementResult = await (await start(client, settings, lead)).result()

    assert result.outcome == "sunset_suppressed" and result.reaction is None
    first, second, third = result.messages
    assert [m.template for m in result.messages] == [
        "reengage_best_of",
        "reengage_preferences",
        "reengage_last_call",
    ]
    assert second.at - first.at == pytest.approx(timedelta(days=7), abs=timedelta(seconds=5))
    assert third.at - second.at == pytest.approx(timedelta(days=7), abs=timedelta(seconds=5))
    mails = await sink.wait_for_mail(to=lead.email, count=3)
    assert [m.subject for m in mails] == SUBJECTS
    with Session(engine) as session:
        consent = latest_consent(session, lead.id, "email")
        assert (consent.status, consent.reason) == ("withdrawn", "sunset")
        row = session.get(Lead, lead.id)
        assert row.reengagement_status == "sunset_suppressed" and row.reengagement_at is not None
    assert len(sink.mails_to(lead.email)) == 3


async def test_a_click_after_email_2_means_re_engaged_points_and_no_email_3(
    client, settings, worker, sink: DevSink, make_lead, engine, time_skipping_env
):
    lead = make_lead()
    handle = await start(client, settings, lead)
    await wait_for_step(handle, "waiting_after_email_1")
    await time_skipping_env.sleep(timedelta(days=7, hours=1))
    status = await wait_for_step(handle, "waiting_after_email_2")
    await handle.signal(
        CLICKED,
        TrackingSignal(message_id=status.messages[1].message_id, url="https://example.com/p"),
    )
    result: ReEngagementResult = await handle.result()

    assert result.outcome == "re_engaged" and result.reaction == "clicked"
    assert [m.template for m in result.messages] == ["reengage_best_of", "reengage_preferences"]
    assert result.score == settings.scoring_rules().events["reengaged"]
    # The journey is over: every send it made was accepted by the sink before its activity ended.
    assert [m.subject for m in sink.mails_to(lead.email)] == SUBJECTS[:2]
    with Session(engine) as session:
        row = session.get(Lead, lead.id)
        assert (
            row.reengagement_status == "re_engaged"
            and row.score == settings.scoring_rules().events["reengaged"]
        )
        [event] = session.exec(select(ScoreEvent).where(ScoreEvent.lead_id == lead.id)).all()
        assert event.event == "reengaged" and "clicked" in event.reason
        assert latest_consent(session, lead.id, "email").status == "granted"


async def test_a_visit_during_the_journey_means_re_engaged(
    client, settings, worker, sink, make_lead
):
    lead = make_lead()
    handle = await start(client, settings, lead)
    await wait_for_step(handle, "waiting_after_email_1")
    await handle.signal(ACTIVITY, ActivitySignal(kind="page_view"))
    result = await handle.result()
    assert (result.outcome, result.reaction, len(result.messages)) == ("re_engaged", "page_view", 1)


async def test_unsubscribe_ends_the_journey_without_sunset(
    client, settings, worker, sink, make_lead, engine
):
    lead = make_lead()
    handle = await start(client, settings, lead)
    await wait_for_step(handle, "waiting_after_email_1")
    await handle.signal(UNSUBSCRIBED, TrackingSignal(message_id="x"))
    result = await handle.result()
    assert result.outcome == "unsubscribed" and len(result.messages) == 1
    with Session(engine) as session:
        assert session.get(Lead, lead.id).reengagement_status == "unsubscribed"


async def test_sunset_delete_erases_the_lead(
    client, settings, worker, sink: DevSink, make_lead, engine
):
    lead = make_lead()
    result = await (
        await start(client, settings, lead, delays_days=[1, 2, 3], sunset="delete")
    ).result()

    assert result.outcome == "sunset_deleted"
    assert [m.at - result.messages[0].at for m in result.messages][1:] == [
        pytest.approx(timedelta(days=1), abs=timedelta(seconds=5)),
        pytest.approx(timedelta(days=3), abs=timedelta(seconds=5)),
    ]
    assert result.rows_deleted["leads"] == 1 and result.rows_deleted["messages"] == 3
    assert result.rows_deleted["consents"] == 1
    with Session(engine) as session:
        assert session.get(Lead, lead.id) is None
        assert session.exec(select(Message).where(Message.lead_id == lead.id)).all() == []
        assert session.exec(select(Consent).where(Consent.lead_id == lead.id)).all() == []


async def test_no_consent_means_nothing_is_sent(client, settings, worker, sink, make_lead, engine):
    lead = make_lead(consents=())
    result = await (await start(client, settings, lead)).result()
    assert result.outcome == "not_sent" and result.messages == []
    with Session(engine) as session:
        assert session.get(Lead, lead.id).reengagement_status == "not_sent"
        assert session.exec(select(Message).where(Message.lead_id == lead.id)).all() == []


async def test_a_series_without_three_delays_fails_at_once(client, settings, worker, make_lead):
    from temporalio.client import WorkflowFailureError

    lead = make_lead()
    with pytest.raises(WorkflowFailureError) as failure:
        await (await start(client, settings, lead, delays_days=[7, 7])).result()
    assert "delays_days needs 3 values" in str(failure.value.cause)
    with pytest.raises(ValueError, match="three positive delays"):
        type(settings)(_env_file=None, reengagement_delays_days=[7, 7])
