"""The event journey on the time-skipping server, with the real activities, database and sinks.

Event times are set from the test server's clock (it runs ahead of the wall clock once other
journeys have skipped time), and every message's workflow time is checked against the plan.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from temporalio.client import WorkflowHandle

from relance.contracts.signals import ATTENDED, EVENT_CHANGED, UNSUBSCRIBED, TrackingSignal
from relance.dev.seeding import make_event, update_event
from relance.dev.seeding import start_event_journey as start
from workflows.event_reminder import EventReminderJourney, EventReminderResult

CLOSE = dict(abs=timedelta(seconds=5))


@pytest.fixture
async def now(time_skipping_env) -> datetime:
    return await time_skipping_env.get_current_time()


async def wait_for_step(handle: WorkflowHandle, step: str, timeout: float = 10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while (status := await handle.query(EventReminderJourney.status)).step != step:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"journey still at {status.step!r}, expected {step!r}")
        await asyncio.sleep(0.02)
    return status


def plan(result: EventReminderResult) -> list[tuple[str, str, str]]:
    return [(m.step, m.status, m.template) for m in result.messages]


def ics_of(mail) -> str:
    [part] = [p for p in mail.message.iter_attachments() if p.get_content_type() == "text/calendar"]
    assert part.get_filename() == "invite.ics"
    content = part.get_content()
    return content.decode() if isinstance(content, bytes) else content


async def test_registered_long_before_every_step_at_its_moment(
    client, settings, worker, sink, make_lead, engine, now
):
    starts = now + timedelta(days=10)
    event = make_event(engine, starts, series="journeys-101")
    make_event(engine, starts + timedelta(days=30), series="journeys-101")  # the next one
    lead = make_lead(consents=("email", "sms"), phone="+33600000001")
    result = await (await start(client, settings, event, lead)).result()

    assert result.outcome == "completed" and not result.attended
    assert plan(result) == [
        ("confirmation", "sent", "event_confirmation"),
        ("reminder_day", "sent", "event_reminder_day"),
        ("reminder_hour", "sent", "event_reminder_hour"),  # by SMS: phone and SMS consent
        ("follow_up", "sent", "event_replay"),  # did not attend
        ("next_event", "sent", "event_next"),
    ]
    at = {m.step: m.at for m in result.messages}
    assert at["confirmation"] - now < timedelta(hours=1)
    assert at["reminder_day"] == pytest.approx(starts - timedelta(hours=24), **CLOSE)
    assert at["reminder_hour"] == pytest.approx(starts - timedelta(hours=1), **CLOSE)
    assert at["follow_up"] == pytest.approx(starts + timedelta(minutes=60, hours=24), **CLOSE)
    assert at["next_event"] == pytest.approx(starts + timedelta(minutes=60, days=7), **CLOSE)
    assert result.messages[2].channel == "sms"

    mails = await sink.wait_for_mail(to=lead.email, count=4)
    assert [m.subject for m in mails] == [
        "You're registered: Journeys that convert",
        "Tomorrow: Journeys that convert",
        "You missed Journeys that convert: here is the replay",
        "Next up: Journeys that convert",
    ]
    confirmation = mails[0]
    assert (
        "Ada Lovelace, Grace Hopper" in confirmation.text
        and "Lead scoring, Reminders" in confirmation.text
    )
    # In the lead's zone (UTC here, the default), with the join link click-tracked.
    assert (
        f"{starts:%H:%M} (UTC)" in confirmation.text
        and f"{settings.public_base_url}/t/c/" in confirmation.text
    )
    ics = ics_of(confirmation)
    assert (
        f"DTSTART:{starts:%Y%m%dT%H%M%SZ}\r\n" in ics and "SUMMARY:Journeys that convert\r\n" in ics
    )
    assert ics.startswith("BEGIN:VCALENDAR\r\n") and f"UID:{event.id}@" in ics
    [sms] = [s for s in sink.sms if s.reference == result.messages[2].message_id]
    assert "Journeys that convert starts at" in sms.body


async def test_late_registration_skips_the_reminders_whose_moment_passed(
    client, settings, worker, sink, make_lead, engine, now
):
    starts = now + timedelta(minutes=30)
    event = make_event(engine, starts)  # no series: no next event
    lead = make_lead()
    result = await (await start(client, settings, event, lead)).result()

    assert [(m.step, m.status) for m in result.messages] == [
        ("confirmation", "sent"),
        ("reminder_day", "skipped"),
        ("reminder_hour", "skipped"),
        ("follow_up", "sent"),
        ("next_event", "skipped"),
    ]
    assert (
        "never sent late" in result.messages[1].reason
        and "never sent late" in result.messages[2].reason
    )
    assert result.messages[4].reason == "the series has no next event"
    assert result.messages[3].at == pytest.approx(starts + timedelta(hours=25), **CLOSE)
    mails = await sink.wait_for_mail(to=lead.email, count=2)
    assert [m.subject for m in mails][0] == "You're registered: Journeys that convert"
    assert len(sink.mails_to(lead.email)) == 2


async def test_reschedule_moves_the_timers_and_re_arms_the_reminders(
    client, settings, worker, sink, make_lead, engine, now
):
    starts = now + timedelta(days=10)
    event = make_event(engine, starts)
    lead = make_lead()
    handle = await start(client, settings, event, lead)
    await wait_for_step(handle, "waiting_for_reminder_day")
    # The first move: the day-before reminder has not gone yet, it just waits longer.
    new_start = starts + timedelta(days=2)
    update_event(engine, event.id, starts_at=new_start, sequence=1)
    await handle.signal(EVENT_CHANGED)
    status = await wait_for_step(handle, "waiting_for_reminder_day")
    assert status.starts_at == new_start
    result = await handle.result()

    assert [m.step for m in result.messages] == [
        "confirmation",
        "rescheduled_1",
        "reminder_day",
        "reminder_hour_email",
        "follow_up",
        "next_event",
    ]
    at = {m.step: m.at for m in result.messages}
    assert at["reminder_day"] == pytest.approx(new_start - timedelta(hours=24), **CLOSE)
    assert at["reminder_hour_email"] == pytest.approx(new_start - timedelta(hours=1), **CLOSE)
    assert at["follow_up"] == pytest.approx(new_start + timedelta(hours=25), **CLOSE)
    mails = await sink.wait_for_mail(to=lead.email, count=5)
    moved = next(m for m in mails if m.subject.startswith("New date"))
    ics = ics_of(moved)
    assert f"DTSTART:{new_start:%Y%m%dT%H%M%SZ}" in ics and "SEQUENCE:1\r\n" in ics


async def test_reschedule_after_the_day_reminder_sends_it_again_for_the_new_date(
    client, settings, worker, sink, make_lead, engine, now, time_skipping_env
):
    starts = now + timedelta(days=10)
    event = make_event(engine, starts)
    lead = make_lead()
    handle = await start(client, settings, event, lead, reminder_by_sms=False)
    await wait_for_step(handle, "waiting_for_reminder_day")
    await time_skipping_env.sleep(
        timedelta(days=9, hours=12)
    )  # past the day-before moment, not the hour-before
    await wait_for_step(handle, "waiting_for_reminder_hour")  # the day-before reminder went out
    new_start = starts + timedelta(days=7)
    update_event(engine, event.id, starts_at=new_start, sequence=1)
    await handle.signal(EVENT_CHANGED)
    result = await handle.result()

    steps = [m.step for m in result.messages]
    assert steps[:5] == [
        "confirmation",
        "reminder_day",
        "rescheduled_1",
        "reminder_day_2",
        "reminder_hour_email",
    ]
    at = {m.step: m.at for m in result.messages}
    assert at["reminder_day"] == pytest.approx(starts - timedelta(hours=24), **CLOSE)
    assert at["reminder_day_2"] == pytest.approx(new_start - timedelta(hours=24), **CLOSE)


async def test_cancellation_ends_the_journey_with_a_cancellation_email(
    client, settings, worker, sink, make_lead, engine, now
):
    event = make_event(engine, now + timedelta(days=3))
    lead = make_lead()
    handle = await start(client, settings, event, lead)
    await wait_for_step(handle, "waiting_for_reminder_day")
    update_event(engine, event.id, status="cancelled")
    await handle.signal(EVENT_CHANGED)
    result = await handle.result()

    assert result.outcome == "cancelled"
    assert plan(result) == [
        ("confirmation", "sent", "event_confirmation"),
        ("cancelled", "sent", "event_cancelled"),
    ]
    mails = await sink.wait_for_mail(to=lead.email, count=2)
    assert mails[1].subject == "Cancelled: Journeys that convert"
    ics = ics_of(mails[1])
    assert "METHOD:CANCEL\r\n" in ics and "STATUS:CANCELLED\r\n" in ics


async def test_attendees_get_the_thanks_with_the_survey(
    client, settings, worker, sink, make_lead, engine, now
):
    event = make_event(
        engine,
        now + timedelta(days=2),
        survey_url="https://example.com/survey/42",
        replay_url="https://example.com/replay/42",
    )
    lead = make_lead()
    handle = await start(client, settings, event, lead)
    await wait_for_step(handle, "waiting_for_reminder_day")
    await handle.signal(ATTENDED)
    result = await handle.result()

    assert result.attended
    assert ("follow_up", "sent", "event_thanks") in plan(result)
    mails = await sink.wait_for_mail(to=lead.email, count=4)
    thanks = next(m for m in mails if m.subject.startswith("Thank you for joining"))
    assert "Answer the survey" in thanks.html and "replay" not in thanks.text.lower()


async def test_unsubscribe_ends_the_journey_at_once(
    client, settings, worker, sink, make_lead, engine, now
):
    event = make_event(engine, now + timedelta(days=3))
    lead = make_lead()
    handle = await start(client, settings, event, lead)
    status = await wait_for_step(handle, "waiting_for_reminder_day")
    await handle.signal(UNSUBSCRIBED, TrackingSignal(message_id=status.messages[0].message_id))
    result = await handle.result()
    assert result.outcome == "unsubscribed" and [m.step for m in result.messages] == [
        "confirmation"
    ]
