"""Send windows, computed in the lead's own time zone: the pure computation across
weekends, holidays and DST changes, then a real journey waiting for the window to open."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from relance.domain.send_window import SendWindow, next_open

PARIS = ZoneInfo("Europe/Paris")
UTC = UTC
OFFICE = SendWindow()  # Mon-Fri 09:00-19:00


def paris(*args) -> datetime:
    return datetime(*args, tzinfo=PARIS).astimezone(UTC)


def test_inside_the_window_is_now():
    now = paris(2026, 11, 24, 10, 30)  # a Tuesday
    assert next_open(now, "Europe/Paris", OFFICE) == now


def test_saturday_night_in_paris_waits_for_monday_nine_paris_time():
    due = paris(2026, 11, 21, 23, 0)  # Saturday 23:00 Paris = 22:00 UTC
    opens = next_open(due, "Europe/Paris", OFFICE)
    assert opens.astimezone(PARIS) == datetime(2026, 11, 23, 9, 0, tzinfo=PARIS)
    assert opens == datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # winter: UTC+1


def test_across_the_spring_dst_change_monday_nine_is_seven_utc():
    # Europe goes to summer time on Sunday 29 March 2026: Saturday is UTC+1, Monday UTC+2.
    due = paris(2026, 3, 28, 23, 0)
    opens = next_open(due, "Europe/Paris", OFFICE)
    assert opens == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)
    assert opens.astimezone(PARIS).hour == 9


def test_across_the_autumn_dst_change_monday_nine_is_eight_utc():
    # Back to winter time on Sunday 25 October 2026.
    due = paris(2026, 10, 24, 23, 0)
    opens = next_open(due, "Europe/Paris", OFFICE)
    assert opens == datetime(2026, 10, 26, 8, 0, tzinfo=UTC)


def test_after_hours_waits_for_the_next_morning_and_friday_evening_for_monday():
    assert next_open(paris(2026, 11, 24, 19, 0), "Europe/Paris", OFFICE) == paris(
        2026, 11, 25, 9, 0
    )
    assert next_open(paris(2026, 11, 24, 6, 0), "Europe/Paris", OFFICE) == paris(2026, 11, 24, 9, 0)
    assert next_open(paris(2026, 11, 27, 20, 0), "Europe/Paris", OFFICE) == paris(
        2026, 11, 30, 9, 0
    )


def test_the_window_is_the_leads_zone_not_utc():
    # 14:00 UTC on a Tuesday: afternoon in Paris (open), 06:00 in Los Angeles (closed until 09:00
    # there).
    now = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
    assert next_open(now, "Europe/Paris", OFFICE) == now
    assert next_open(now, "America/Los_Angeles", OFFICE) == datetime(
        2026, 11, 24, 17, 0, tzinfo=UTC
    )
    # Auckland is already Wednesday 03:00.
    assert next_open(now, "Pacific/Auckland", OFFICE).astimezone(
        ZoneInfo("Pacific/Auckland")
    ) == datetime(2026, 11, 25, 9, 0, tzinfo=ZoneInfo("Pacific/Auckland"))


def test_holidays_are_skipped_and_an_unknown_zone_counts_as_utc():
    window = SendWindow(holidays=["2026-12-25"])
    assert next_open(paris(2026, 12, 24, 20, 0), "Europe/Paris", window) == paris(
        2026, 12, 28, 9, 0
    )
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)  # Sunday
    assert next_open(now, "Mars/Olympus_Mons", OFFICE) == datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def test_a_window_that_cannot_open_is_refused():
    with pytest.raises(ValueError):
        SendWindow(days=[]).check()
    with pytest.raises(ValueError):
        SendWindow(start="19:00", end="09:00").check()
    with pytest.raises(ValueError):
        SendWindow(start="25:00").check()
    SendWindow(days=list(range(1, 8)), start="00:00", end="24:00").check()


def test_the_settings_refuse_a_broken_window():
    from pydantic import ValidationError

    from relance.domain.settings import Settings

    with pytest.raises(ValidationError):
        Settings(_env_file=None, send_window_start="20:00", send_window_end="08:00")
    assert Settings(_env_file=None).send_window().describe() == "mon,tue,wed,thu,fri 09:00-19:00"
    assert Settings(_env_file=None, send_window_enabled=False).send_window() is None


# A real journey, on its own time-skipping server (the tests move its clock months ahead) ----------
@pytest.fixture(scope="module")
async def windowed_env():
    from temporalio.testing import WorkflowEnvironment

    from relance.services.temporal import bundled_binary, ensure_search_attributes

    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=bundled_binary("temporal-test-server")
    )
    await ensure_search_attributes(env.client, "default")
    yield env
    await env.shutdown()


def next_saturday_23h_paris(after: datetime, *, min_date: datetime | None = None) -> datetime:
    day = max(after, min_date or after).astimezone(PARIS).date() + timedelta(days=1)
    while day.isoweekday() != 6:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, 23, 0, tzinfo=PARIS).astimezone(UTC)


async def welcome_sent_at(env, settings, engine, make_lead, due: datetime) -> datetime:
    """Move the server's clock to ``due``, sign a Paris lead up, return when the welcome went
    out."""
    from relance.domain.db import session_scope
    from relance.domain.models import Lead
    from worker import build_worker
    from workflows.welcome import WelcomeInput, WelcomeJourney

    lead = make_lead()
    with session_scope(engine) as session:
        session.get(Lead, lead.id).time_zone = "Europe/Paris"
    now = await env.get_current_time()
    await env.sleep((due - now).total_seconds())
    windowed = settings.model_copy(
        update={
            "send_window_enabled": True,
            "temporal_task_queue": f"window-{uuid.uuid4().hex[:8]}",
        }
    )
    async with build_worker(env.client, windowed, engine):
        handle = await env.client.start_workflow(
            WelcomeJourney.run,
            WelcomeInput(lead_id=lead.id, relance_after_hours=1, engagement_window_days=0.1),
            id=f"welcome-{lead.id}",
            task_queue=windowed.temporal_task_queue,
        )
        result = await handle.result()
    assert result.messages[0].step == "welcome" and result.messages[0].status == "sent"
    # the relance, due an hour later (Monday 10:00), is inside the window: no extra wait
    assert result.messages[1].at - result.messages[0].at < timedelta(hours=1, minutes=1)
    return result.messages[0].at


async def test_a_welcome_due_saturday_23h_in_paris_goes_out_monday_9h_paris(
    windowed_env, settings, engine, make_lead
):
    due = next_saturday_23h_paris(await windowed_env.get_current_time())
    sent = await welcome_sent_at(windowed_env, settings, engine, make_lead, due)
    monday_9 = datetime.combine(
        (due.astimezone(PARIS) + timedelta(days=2)).date(),
        datetime.min.time().replace(hour=9),
        tzinfo=PARIS,
    )
    assert sent.astimezone(PARIS).weekday() == 0
    assert timedelta(0) <= sent - monday_9 < timedelta(minutes=1)


async def test_across_the_dst_change_it_is_still_9h_paris_time(
    windowed_env, settings, engine, make_lead
):
    now = await windowed_env.get_current_time()
    # The Saturday before the last Sunday of March (summer time starts that Sunday night).
    year = now.year + 1 if now.astimezone(PARIS).month >= 3 else now.year
    last_sunday = datetime(year, 3, 31, tzinfo=PARIS)
    while last_sunday.isoweekday() != 7:
        last_sunday -= timedelta(days=1)
    due = datetime.combine(
        (last_sunday - timedelta(days=1)).date(), datetime.min.time().replace(hour=23), tzinfo=PARIS
    ).astimezone(UTC)
    assert due.astimezone(PARIS).utcoffset() == timedelta(hours=1)
    sent = await welcome_sent_at(windowed_env, settings, engine, make_lead, due)
    assert sent.astimezone(PARIS).utcoffset() == timedelta(hours=2)  # summer time by Monday
    assert (sent.astimezone(PARIS).weekday(), sent.astimezone(PARIS).hour) == (0, 9)
    assert sent.astimezone(UTC).hour == 7


async def test_a_journey_may_carry_its_own_window(windowed_env, settings, engine, make_lead):
    """A weekend-only window on the journey's input beats the global Mon-Fri one."""
    from relance.domain.db import session_scope
    from relance.domain.models import Lead
    from worker import build_worker
    from workflows.welcome import WelcomeInput, WelcomeJourney

    lead = make_lead()
    with session_scope(engine) as session:
        session.get(Lead, lead.id).time_zone = "America/New_York"
    now = await windowed_env.get_current_time()
    monday = now + timedelta(days=(7 - now.weekday()) % 7 or 7)  # next Monday, 10:00 UTC
    await windowed_env.sleep(
        (monday.replace(hour=10, minute=0, second=0, microsecond=0) - now).total_seconds()
    )
    windowed = settings.model_copy(
        update={
            "send_window_enabled": True,
            "temporal_task_queue": f"window-{uuid.uuid4().hex[:8]}",
        }
    )
    weekend = SendWindow(days=[6, 7], start="10:00", end="12:00")
    async with build_worker(windowed_env.client, windowed, engine):
        result = await windowed_env.client.execute_workflow(
            WelcomeJourney.run,
            WelcomeInput(
                lead_id=lead.id,
                relance_after_hours=1,
                engagement_window_days=0.1,
                send_window=weekend,
            ),
            id=f"welcome-{lead.id}",
            task_queue=windowed.temporal_task_queue,
        )
    sent = result.messages[0].at.astimezone(ZoneInfo("America/New_York"))
    assert (sent.isoweekday(), sent.hour, sent.minute) == (6, 10, 0)
    relance = result.messages[1].at.astimezone(ZoneInfo("America/New_York"))
    assert (relance.isoweekday(), relance.hour) == (6, 11)  # an hour later, still inside
