"""Entry triggers of the journeys written as data (relance/services/triggers.py): a custom event,
a list joined (the API, a CSV import), a date attribute and a segment entered (the hourly sweep,
called with a fixed "now"), checked at publish; the real API over the test database, a worker on
the time-skipping server."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import delete
from sqlmodel import Session, col, select
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from relance.contracts.definitions import workflow_id
from relance.contracts.triggers import TriggerSweepInput
from relance.domain.conditions import Test as Rules
from relance.domain.db import make_engine
from relance.domain.definitions import DateTrigger
from relance.domain.lists import add_member
from relance.domain.models import EnrollmentRefusal, Lead, Segment, TriggerFire
from relance.services import journey_store
from relance.services.schedules import trigger_sweep_schedule
from relance.services.triggers import (
    date_candidates,
    facts_read,
    local_dates,
    occurrence,
    sweep,
)
from tests.conftest import LiveStack
from tests.test_postgres import postgres_url  # noqa: F401 (the fixture: a throwaway PostgreSQL)
from tests.test_tracking_flood import sign_up
from tests.waiting import eventually, finished
from workflows.defined import DefinedJourney, DefinedResult
from workflows.triggers import TriggerSweep

EXIT = {"id": "done", "type": "exit"}
PAPER = {"id": "paper", "type": "message", "template": "nurture_white_paper", "next": "done"}


def definition(*triggers: dict, nodes: tuple[dict, ...] = (PAPER, EXIT), **fields) -> dict:
    return {
        "key": f"t_{uuid.uuid4().hex[:10]}",
        "name": "Trigger test",
        "topic": "newsletter",
        "triggers": list(triggers),
        "nodes": list(nodes),
        **fields,
    }


PUBLISHED: list[str] = []


@pytest.fixture(autouse=True)
def archived_after(engine):
    """Each test's journeys are archived after it: their triggers (a custom event of the lead
    schema...) must not enroll the leads of the suite's other tests."""
    yield
    while PUBLISHED:
        with Session(engine) as session:
            journey_store.move(session=session, key=PUBLISHED.pop(), action="archive")


async def published(api: httpx.AsyncClient, data: dict) -> str:
    PUBLISHED.append(data["key"])
    created = await api.post("/journeys", json=data)
    assert created.status_code == 201, created.text
    answer = await api.post(f"/journeys/{data['key']}/publish")
    assert answer.status_code in (200, 201), answer.text
    return data["key"]


async def ran(client: Client, key: str, lead_id: str) -> bool:
    """Whether the lead was entered into the defined journey (a run of its id exists)."""
    try:
        await client.get_workflow_handle(workflow_id(key, lead_id)).describe()
    except RPCError:
        return False
    return True


def set_lead(engine, lead_id: str, **values) -> None:
    with Session(engine) as session:
        lead = session.get(Lead, lead_id)
        for name, value in values.items():
            setattr(lead, name, value)
        session.add(lead)
        session.commit()


# Checks ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("trigger", "words"),
    [
        ({"event": {"name": "no_such_event"}}, "no custom event"),
        ({"date": {"attribute": "no_such_attribute"}}, "no attribute"),
        ({"date": {"attribute": "plan"}}, "not a date"),
        ({"segment_entered": {"segment": "nosuchsegment"}}, "no saved segment"),
        ({"event": {"name": "trial_started"}, "list_joined": {"list": "x"}}, "a trigger is one"),
    ],
)
async def test_a_bad_trigger_is_refused_422_naming_the_trigger(api, trigger, words):
    data = definition({"list_joined": {"list": "fine"}}, trigger)
    answer = await api.post("/journeys", json=data)
    assert answer.status_code == 422, answer.text
    [problem] = answer.json()["detail"]
    assert problem["loc"] == ["body", "triggers", 1]
    assert words in problem["msg"]
    assert (await api.get(f"/journeys/{data['key']}")).status_code == 404
    checked = await api.post("/journeys/check", json=data)
    assert checked.status_code == 422 and checked.json()["detail"] == answer.json()["detail"]


# Events ------------------------------------------------------------------------------------------
def trial(lead_id: str, plan: str, event_id: str | None = None) -> dict:
    return {
        "type": "custom",
        "lead": lead_id,
        "name": "trial_started",
        "properties": {"plan": plan},
        **({"id": event_id} if event_id else {}),
    }


async def test_a_custom_event_enters_the_lead_when_its_properties_match(
    api, client, worker, make_lead
):
    key = await published(
        api, definition({"event": {"name": "trial_started", "where": {"plan": "pro"}}})
    )
    starter, pro = make_lead(), make_lead()
    other = await api.post("/events/track", json=trial(starter.id, "starter"))
    assert other.status_code == 202, other.text
    answer = await api.post("/events/track", json=trial(pro.id, "pro", event_id="e-1"))
    assert answer.status_code == 202, answer.text
    assert answer.json()["workflow_id"] == workflow_id(key, pro.id)
    assert key in answer.json()["detail"]
    assert await ran(client, key, pro.id)
    assert not await ran(client, key, starter.id)
    # the shop retries the event: it was kept once, nothing is triggered again
    again = await api.post("/events/track", json=trial(pro.id, "pro", event_id="e-1"))
    assert again.json()["workflow_id"] is None and "already recorded" in again.json()["detail"]


async def test_a_paused_journey_is_not_triggered(api, client, worker, make_lead):
    key = await published(api, definition({"event": {"name": "trial_started"}}))
    assert (await api.post(f"/journeys/{key}/pause")).status_code == 200
    lead = make_lead()
    answer = await api.post("/events/track", json=trial(lead.id, "pro"))
    assert answer.status_code == 202
    assert not await ran(client, key, lead.id)
    assert (await api.post(f"/journeys/{key}/resume")).status_code == 200
    await api.post("/events/track", json=trial(lead.id, "pro"))
    assert await ran(client, key, lead.id)


async def test_a_refused_enrollment_is_recorded_not_an_error(
    api, client, worker, make_lead, engine
):
    key = await published(
        api, definition({"event": {"name": "trial_started"}}, rules={"cooldown_days": 30})
    )
    lead = make_lead()
    await api.post("/events/track", json=trial(lead.id, "pro"))
    handle = client.get_workflow_handle(workflow_id(key, lead.id))
    await finished(handle)
    # the journey's cooldown refuses a second entry: the event is accepted, the refusal recorded
    second = await api.post("/events/track", json=trial(lead.id, "pro"))
    assert second.status_code == 202 and second.json()["workflow_id"] is None
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    with Session(engine) as session:
        [refusal] = session.exec(
            select(EnrollmentRefusal).where(
                EnrollmentRefusal.lead_id == lead.id, EnrollmentRefusal.target == key
            )
        ).all()
    assert refusal.source == "trigger:event:trial_started" and "cooldown" in refusal.reason


async def test_a_custom_event_reaches_a_defined_journey_waiting_for_it(
    api, client, worker, make_lead
):
    waiting = {
        "id": "wait",
        "type": "wait_for",
        "event": "signal",
        "signal": "webinar_attended",
        "within": "3d",
        "then": "paper",
        "timeout": "done",
    }
    key = await published(api, definition(nodes=(waiting, PAPER, EXIT)))
    lead = make_lead()
    enrolled = await api.post(f"/leads/{lead.id}/journeys/{key}")
    assert enrolled.status_code in (200, 201, 202), enrolled.text
    handle = client.get_workflow_handle(workflow_id(key, lead.id), result_type=DefinedResult)

    async def waiting_step() -> bool:
        return (await handle.query(DefinedJourney.status)).node == "wait"

    await eventually(waiting_step, timeout=10, what="the journey waits for the event")
    event = {
        "type": "custom",
        "lead": lead.id,
        "name": "webinar_attended",
        "properties": {"webinar": "w1"},
    }
    answer = await api.post("/events/track", json=event)
    assert answer.status_code == 202 and workflow_id(key, lead.id) in answer.json()["detail"]
    result = await finished(handle)
    assert result.path == ["wait", "paper", "done"]  # the event came: "then", not "timeout"


# Lists -------------------------------------------------------------------------------------------
async def test_a_list_joined_through_the_api_enters_the_new_members_only(
    api, client, worker, make_lead
):
    name = f"webinar-{uuid.uuid4().hex[:8]}"
    key = await published(api, definition({"list_joined": {"list": name}}))
    already, new = make_lead(), make_lead()
    first = await api.post(f"/lists/{name}/members", json={"lead_ids": [already.id], "reason": "r"})
    assert first.status_code == 200, first.text
    handle = client.get_workflow_handle(workflow_id(key, already.id))
    first_run = (await handle.describe()).run_id
    await finished(handle)
    both = await api.post(
        f"/lists/{name}/members", json={"lead_ids": [already.id, new.id], "reason": "r"}
    )
    assert both.json() == {"list": name, "added": 1, "already": 1}
    assert await ran(client, key, new.id)
    assert (await handle.describe()).run_id == first_run  # already on it: not entered again
    other = make_lead()
    await api.post("/lists/another-list/members", json={"lead_ids": [other.id], "reason": "r"})
    assert not await ran(client, key, other.id)


async def test_a_list_joined_through_a_journeys_update_enters_the_lead(
    api, client, worker, make_lead
):
    name = f"journey-list-{uuid.uuid4().hex[:8]}"
    key = await published(api, definition({"list_joined": {"list": name}}))
    tag = {"id": "tag", "type": "update", "add_to_list": name, "next": "done"}
    tagger = await published(api, definition(nodes=(tag, EXIT)))
    lead = make_lead()
    enrolled = await api.post(f"/leads/{lead.id}/journeys/{tagger}")
    assert enrolled.status_code in (200, 201, 202), enrolled.text
    await finished(client.get_workflow_handle(workflow_id(tagger, lead.id)))
    assert await ran(client, key, lead.id)


async def test_a_list_joined_through_a_csv_import_enters_the_leads(api, client, worker, engine):
    name = f"imported-{uuid.uuid4().hex[:8]}"
    key = await published(api, definition({"list_joined": {"list": name}}))
    email = f"import-{uuid.uuid4().hex[:8]}@example.com"
    csv = (
        "email,first_name,consent,source_url,wording_version,consented_at\n"
        f"{email},Ada,email,https://example.com/form,v1,2026-01-05T10:00:00Z\n"
    )
    answer = await api.post(
        f"/leads/import?list={name}", files={"file": ("leads.csv", csv, "text/csv")}
    )
    assert answer.status_code == 200 and answer.json()["created"] == 1, answer.text
    with Session(engine) as session:
        lead = session.exec(select(Lead).where(Lead.email == email)).one()
    assert await ran(client, key, lead.id)


# Dates -------------------------------------------------------------------------------------------
def test_a_date_is_due_on_its_day_after_its_time():
    birthday = DateTrigger(attribute="birthday", every_year=True, at="09:00")
    born = date(1990, 3, 15)
    assert occurrence(birthday, born, datetime(2027, 3, 15, 9, 0)) == date(2027, 3, 15)
    assert occurrence(birthday, born, datetime(2027, 3, 15, 8, 59)) is None
    assert occurrence(birthday, born, datetime(2027, 3, 16, 9, 0)) is None
    leap = date(2000, 2, 29)  # on the 28th in the other years, the 29th in leap years
    assert occurrence(birthday, leap, datetime(2027, 2, 28, 10)) == date(2027, 2, 28)
    assert occurrence(birthday, leap, datetime(2028, 2, 28, 10)) is None
    assert occurrence(birthday, leap, datetime(2028, 2, 29, 10)) == date(2028, 2, 29)
    renewal = DateTrigger(attribute="renewal_date", offset_days=-30, at="09:00")
    renews = date(2027, 4, 14)
    assert occurrence(renewal, renews, datetime(2027, 3, 15, 9, 30)) == date(2027, 3, 15)
    assert occurrence(renewal, renews, datetime(2028, 3, 15, 9, 30)) is None  # not every year
    assert occurrence(renewal, renews, datetime(2027, 3, 16, 9, 30)) is None


async def test_a_birthday_enters_each_lead_at_09_00_in_its_zone_once_a_year(
    api, client, worker, settings, engine, make_lead
):
    key = await published(
        api, definition({"date": {"attribute": "birthday", "every_year": True, "at": "09:00"}})
    )
    paris, new_york = make_lead(), make_lead()
    set_lead(engine, paris.id, time_zone="Europe/Paris", attributes={"birthday": "1990-03-15"})
    set_lead(
        engine, new_york.id, time_zone="America/New_York", attributes={"birthday": "1985-03-15"}
    )
    # 09:30 UTC: 10:30 in Paris, 05:30 in New York
    await sweep(client, settings, engine, datetime(2027, 3, 15, 9, 30, tzinfo=UTC))
    assert await ran(client, key, paris.id)
    assert not await ran(client, key, new_york.id)
    await finished(client.get_workflow_handle(workflow_id(key, paris.id)))
    # 13:30 UTC: 09:30 in New York; Paris was entered this year already
    await sweep(client, settings, engine, datetime(2027, 3, 15, 13, 30, tzinfo=UTC))
    assert await ran(client, key, new_york.id)
    await sweep(client, settings, engine, datetime(2027, 3, 15, 14, 30, tzinfo=UTC))
    with Session(engine) as session:
        fires = session.exec(select(TriggerFire).where(TriggerFire.journey == key)).all()
        refusals = session.exec(
            select(EnrollmentRefusal).where(EnrollmentRefusal.target == key)
        ).all()
    assert sorted(f.lead_id for f in fires) == sorted([paris.id, new_york.id])
    assert refusals == []
    # the next year: again
    await sweep(client, settings, engine, datetime(2028, 3, 15, 9, 30, tzinfo=UTC))
    with Session(engine) as session:
        fires = session.exec(select(TriggerFire).where(TriggerFire.lead_id == paris.id)).all()
    assert len([f for f in fires if f.journey == key]) == 2


async def test_a_renewal_enters_the_lead_30_days_before(
    api, client, worker, settings, engine, make_lead
):
    key = await published(
        api, definition({"date": {"attribute": "renewal_date", "offset_days": -30, "at": "09:00"}})
    )
    due, later = make_lead(), make_lead()
    set_lead(engine, due.id, attributes={"renewal_date": "2027-04-14"})
    set_lead(engine, later.id, attributes={"renewal_date": "2027-04-20"})
    # as the hourly schedule runs it: the sweep's workflow and its activity
    schedule = trigger_sweep_schedule(settings)
    assert schedule.spec.intervals[0].every == timedelta(hours=1)
    assert schedule.action.workflow == "TriggerSweep"
    result = await client.execute_workflow(
        TriggerSweep.run,
        TriggerSweepInput(now=datetime(2027, 3, 15, 9, 0, tzinfo=UTC)),
        id=f"trigger-sweep-test-{uuid.uuid4().hex[:8]}",
        task_queue=settings.temporal_task_queue,
    )
    assert result.date_enrolled >= 1
    assert await ran(client, key, due.id)
    assert not await ran(client, key, later.id)


# The sweep reads the leads whose date can be due, in SQL ----------------------------------------
# Zones on both sides of the date line (UTC+14, UTC−11, UTC−12), and between.
ZONES = (
    "Pacific/Kiritimati",
    "Pacific/Auckland",
    "Asia/Tokyo",
    "Europe/Paris",
    "UTC",
    "America/Los_Angeles",
    "Pacific/Pago_Pago",
    "Etc/GMT+12",
)
DATES = (
    *("2000-02-29", "1990-02-28", "1991-03-01", "1985-03-02", "1980-02-27", "1999-12-31"),
    *("2027-02-28", "2027-03-31", "2028-02-29", "2028-03-30", "2028-01-01", "2027-03-04"),
)
DATE_TRIGGERS = (
    DateTrigger(attribute="birthday", every_year=True, at="09:00"),
    DateTrigger(attribute="birthday", every_year=True, offset_days=-3, at="00:00"),
    DateTrigger(attribute="renewal_date", offset_days=-30, at="09:00"),
    DateTrigger(attribute="renewal_date", offset_days=1, at="23:00"),
)


def dated_leads(engine) -> dict[str, tuple[str, dict]]:
    """A lead per zone and date pair (its birthday, its renewal date): id -> (zone, attributes)."""
    leads = [
        Lead(
            email=f"dated-{uuid.uuid4().hex[:12]}@example.com",
            time_zone=zone,
            attributes={"birthday": born, "renewal_date": renews},
        )
        for zone in ZONES
        for born, renews in zip(DATES, DATES[3:] + DATES[:3], strict=True)
    ]
    with Session(engine) as session:
        session.add_all(leads)
        session.commit()
        return {lead.id: (lead.time_zone, dict(lead.attributes)) for lead in leads}


def due_by_the_rule(trigger: DateTrigger, leads: dict, now: datetime) -> set[str]:
    return {
        lead_id
        for lead_id, (zone, attributes) in leads.items()
        if occurrence(
            trigger,
            date.fromisoformat(attributes[trigger.attribute]),
            now.astimezone(ZoneInfo(zone)),
        )
    }


def on_its_date_somewhere(trigger: DateTrigger, leads: dict, now: datetime) -> set[str]:
    """The leads the rule makes due on one of the dates it is somewhere at ``now``, whatever
    their own zone and the time of day."""
    midnight = DateTrigger(**{**trigger.model_dump(), "at": "00:00"})
    return {
        lead_id
        for lead_id, (_, attributes) in leads.items()
        for day in local_dates(now)
        if occurrence(
            midnight,
            date.fromisoformat(attributes[trigger.attribute]),
            datetime(*day.timetuple()[:3]),
        )
    }


def assert_the_filter_agrees_with_the_rule(engine) -> None:
    leads = dated_leads(engine)
    hours = [
        start + timedelta(hours=h)
        for start in (datetime(2027, 2, 25, tzinfo=UTC), datetime(2028, 2, 26, tzinfo=UTC))
        for h in range(0, 24 * 7, 1)
    ]
    with Session(engine) as session:
        for now in hours:
            for trigger in DATE_TRIGGERS:
                read = {row[0] for row in date_candidates(session, [trigger], now)} & set(leads)
                due = due_by_the_rule(trigger, leads, now)
                assert due <= read, (trigger, now, due - read)
                assert read == on_its_date_somewhere(trigger, leads, now), (trigger, now)
            read_all = {row[0] for row in date_candidates(session, list(DATE_TRIGGERS), now)}
            assert read_all & set(leads) == set().union(
                *(on_its_date_somewhere(t, leads, now) for t in DATE_TRIGGERS)
            )


def test_the_sweep_s_filter_agrees_with_the_rule_in_every_zone_and_on_29_february(engine):
    """Every hour of a week around the end of February, in a year with a 29th and one without:
    the leads the SQL filter lets through are exactly those whose date is due on one of the
    three dates it is somewhere, and so include every lead the rule makes due in its own zone
    at that hour (a 29 February is the 28th in the other years)."""
    assert_the_filter_agrees_with_the_rule(engine)


def test_the_sweep_s_filter_agrees_with_the_rule_on_postgresql(postgres_url):  # noqa: F811
    assert_the_filter_agrees_with_the_rule(make_engine(postgres_url))


async def test_a_sweep_over_many_leads_reads_only_the_ones_whose_date_is_due(
    api, client, worker, settings, engine
):
    key = await published(
        api, definition({"date": {"attribute": "renewal_date", "offset_days": 0, "at": "09:00"}})
    )
    now = datetime(2031, 6, 16, 12, 0, tzinfo=UTC)
    due_zones = ("Europe/Paris", "Asia/Tokyo", "UTC", "America/Sao_Paulo")
    due = [
        Lead(email=f"due-{uuid.uuid4().hex[:12]}@example.com", time_zone=zone,
             attributes={"renewal_date": "2031-06-16"})
        for zone in due_zones
    ]  # fmt: skip
    others = [
        Lead(
            email=f"later-{uuid.uuid4().hex[:12]}@example.com",
            time_zone=ZONES[i % len(ZONES)],
            attributes={"renewal_date": (date(2031, 6, 18) + timedelta(days=i % 300)).isoformat()},
        )
        for i in range(3000)
    ]
    with Session(engine) as session:
        session.add_all([*due, *others])
        session.commit()
        due_ids = {lead.id for lead in due}
        other_ids = {lead.id for lead in others}
    renewal = DateTrigger(attribute="renewal_date", offset_days=0, at="09:00")
    try:
        with Session(engine) as session:
            read = {row[0] for row in date_candidates(session, [renewal], now)}
        assert read & (due_ids | other_ids) == due_ids  # 4 read of 3,004
        await sweep(client, settings, engine, now)
        for lead in due:
            assert await ran(client, key, lead.id), lead.time_zone
    finally:
        with Session(engine) as session:
            session.execute(delete(Lead).where(col(Lead.id).in_(other_ids)))
            session.commit()


# Segments ----------------------------------------------------------------------------------------
async def test_a_segment_entered_enters_the_leads_who_join_it_from_now_on(
    api, client, worker, settings, engine, make_lead
):
    tag = f"seg-{uuid.uuid4().hex[:8]}"
    with Session(engine) as session:
        segment = Segment(name="Tagged", rules={"in_list": tag})
        session.add(segment)
        session.commit()
        segment_id = segment.id
    key = await published(api, definition({"segment_entered": {"segment": segment_id}}))
    before, after = make_lead(), make_lead()
    with Session(engine) as session:
        add_member(session, list_name=tag, lead_id=before.id, reason="test")
        session.commit()
    now = datetime.now(UTC)
    await sweep(client, settings, engine, now)  # the first evaluation: nobody already in enters
    assert not await ran(client, key, before.id)
    with Session(engine) as session:
        add_member(session, list_name=tag, lead_id=after.id, reason="test")
        session.commit()
    await sweep(client, settings, engine, now)
    assert await ran(client, key, after.id)
    assert not await ran(client, key, before.id)
    handle = client.get_workflow_handle(workflow_id(key, after.id))
    first_run = (await handle.describe()).run_id
    await finished(handle)
    await sweep(client, settings, engine, now)  # still a member: entered once
    assert (await handle.describe()).run_id == first_run


# Segments, on the facts their rules read -------------------------------------------------------
async def segment_journey(api, client, settings, engine, rules: dict) -> str:
    """A published journey entered by a new segment of ``rules``, the segment evaluated once
    (the first evaluation stores its members: "from now on")."""
    with Session(engine) as session:
        segment = Segment(name=f"facts-{uuid.uuid4().hex[:6]}", rules=rules)
        session.add(segment)
        session.commit()
        segment_id = segment.id
    key = await published(api, definition({"segment_entered": {"segment": segment_id}}))
    await sweep(client, settings, engine, datetime.now(UTC))
    return key


def on_list(engine, name: str, *lead_ids: str) -> None:
    with Session(engine) as session:
        for lead_id in lead_ids:
            add_member(session, list_name=name, lead_id=lead_id, reason="test")
        session.commit()


async def run_id(client: Client, key: str, lead_id: str) -> str:
    return (await client.get_workflow_handle(workflow_id(key, lead_id)).describe()).run_id


async def entered(client: Client, key: str, lead_id: str) -> bool:
    return await eventually(lambda: ran(client, key, lead_id), timeout=10, what="the entry")


async def test_a_custom_event_enters_the_segment_s_journey_at_once_and_a_member_only_once(
    api, client, worker, settings, engine, make_lead
):
    tag = f"facts-{uuid.uuid4().hex[:8]}"
    rules = {"all": [{"in_list": tag}, {"event": {"name": "pricing_viewed"}}]}
    already, new = make_lead(), make_lead()
    on_list(engine, tag, already.id, new.id)
    viewed = {"type": "custom", "name": "pricing_viewed", "properties": {}}
    await api.post("/events/track", json={**viewed, "lead": already.id})
    key = await segment_journey(api, client, settings, engine, rules)

    answer = await api.post("/events/track", json={**viewed, "lead": new.id})
    assert answer.status_code == 202, answer.text
    assert await entered(client, key, new.id)  # no sweep: the event re-evaluated the segment
    first_run = await run_id(client, key, new.id)
    await finished(client.get_workflow_handle(workflow_id(key, new.id)))
    # a member already (at the first evaluation, or entered since): not entered again
    for lead in (already, new):
        again = await api.post("/events/track", json={**viewed, "lead": lead.id})
        assert again.status_code == 202
    await sweep(client, settings, engine, datetime.now(UTC))
    assert not await ran(client, key, already.id)
    assert await run_id(client, key, new.id) == first_run
    with Session(engine) as session:
        refusals = session.exec(
            select(EnrollmentRefusal).where(EnrollmentRefusal.target == key)
        ).all()
    assert refusals == []  # never even tried again


async def test_a_page_view_enters_the_journey_of_a_segment_of_page_views(
    api, client, worker, settings, engine, make_lead
):
    page = f"/pricing-{uuid.uuid4().hex[:8]}"
    key = await segment_journey(api, client, settings, engine, {"page": {"url_contains": page}})
    lead, other = make_lead(), make_lead()
    seen = {"type": "page_view", "lead": lead.id, "url": f"https://example.com{page}"}
    assert (await api.post("/events/track", json=seen)).status_code == 202
    elsewhere = {**seen, "lead": other.id, "url": "https://example.com/about"}
    assert (await api.post("/events/track", json=elsewhere)).status_code == 202
    assert await entered(client, key, lead.id)
    assert not await ran(client, key, other.id)


async def test_an_attribute_change_enters_the_journey_of_a_segment_of_that_attribute(
    api, client, worker, settings, engine, make_lead
):
    title = f"cmo-{uuid.uuid4().hex[:8]}"
    rules = {"attribute": {"name": "job_title", "op": "eq", "value": title}}
    key = await segment_journey(api, client, settings, engine, rules)
    lead, other = make_lead(), make_lead()
    changed = await api.patch(f"/leads/{lead.id}/attributes", json={"job_title": title})
    assert changed.status_code == 200, changed.text
    await api.patch(f"/leads/{other.id}/attributes", json={"job_title": "intern"})
    assert await entered(client, key, lead.id)
    assert not await ran(client, key, other.id)


async def test_joining_one_list_or_leaving_another_enters_the_segment_s_journey(
    api, client, worker, settings, engine, make_lead
):
    wanted, excluded = f"in-{uuid.uuid4().hex[:8]}", f"out-{uuid.uuid4().hex[:8]}"
    rules = {"all": [{"in_list": wanted}, {"not": {"in_list": excluded}}]}
    joining, leaving = make_lead(), make_lead()
    on_list(engine, wanted, leaving.id)
    on_list(engine, excluded, leaving.id)
    key = await segment_journey(api, client, settings, engine, rules)
    assert not await ran(client, key, leaving.id)
    joined = await api.post(
        f"/lists/{wanted}/members", json={"lead_ids": [joining.id], "reason": "r"}
    )
    assert joined.status_code == 200, joined.text
    assert await entered(client, key, joining.id)
    assert not await ran(client, key, leaving.id)
    left = await api.delete(f"/lists/{excluded}/members/{leaving.id}")
    assert left.status_code == 204, left.text
    assert await entered(client, key, leaving.id)


async def test_a_score_a_journey_adds_enters_the_journey_of_a_segment_of_scores(
    api, client, worker, settings, engine, make_lead
):
    """The score changes on the worker (a journey's update): the activity re-evaluates."""
    tag = f"scored-{uuid.uuid4().hex[:8]}"
    key = await segment_journey(
        api, client, settings, engine, {"all": [{"in_list": tag}, {"score": {"gte": 1}}]}
    )
    lead = make_lead()
    on_list(engine, tag, lead.id)
    points = {"id": "points", "type": "update", "score_event": "email_clicked", "next": "done"}
    scorer = await published(api, definition(nodes=(points, EXIT)))
    enrolled = await api.post(f"/leads/{lead.id}/journeys/{scorer}")
    assert enrolled.status_code in (200, 201, 202), enrolled.text
    await finished(client.get_workflow_handle(workflow_id(scorer, lead.id)))
    assert await entered(client, key, lead.id)


def test_a_segment_s_facts_are_those_its_rules_and_the_segments_they_name_read():
    inner = Rules.model_validate({"any": [{"score": {"gte": 5}}, {"in_list": "vip"}]})
    rules = Rules.model_validate(
        {"all": [{"not": {"event": {"name": "pricing_viewed"}}}, {"in_segment": "inner"}]}
    )
    resolve = {"inner": inner}.get
    assert facts_read(rules, resolve) == {"event", "score", "list"}
    assert facts_read(Rules.model_validate({"consent": "email"}), resolve) == set()
    looping = Rules.model_validate({"in_segment": "self"})
    assert facts_read(looping, {"self": looping}.get) == set()


async def test_an_open_the_outbox_tells_enters_the_journey_of_a_segment_of_opens(
    live: LiveStack, engine
):
    """The pixel answers at once; the outbox, having told the welcome journey of the open,
    evaluates the segments that read opens for the lead: it enters the journey then, not at the
    next hourly sweep."""
    lead_id, pixel, _ = await sign_up(live.http, live.sink)
    tag = f"openers-{uuid.uuid4().hex[:8]}"
    on_list(engine, tag, lead_id)
    rules = {"all": [{"in_list": tag}, {"message": {"action": "opened"}}]}
    with Session(engine) as session:
        segment = Segment(name="Openers", rules=rules)
        session.add(segment)
        session.commit()
        segment_id = segment.id
    key = await published(live.http, definition({"segment_entered": {"segment": segment_id}}))
    await sweep(live.temporal, live.settings, engine, datetime.now(UTC))  # from now on
    assert not await ran(live.temporal, key, lead_id)
    assert (await live.public.get(pixel)).status_code == 200
    assert await eventually(
        lambda: ran(live.temporal, key, lead_id), timeout=15, what="the open's entry"
    )
