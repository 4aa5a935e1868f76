"""Events end to end on the real dev server: HTTP → journey → SMTP sink (with the .ics)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from email.parser import BytesParser

from sqlmodel import Session, select

from relance.domain.models import Event, Registration
from tests.conftest import LiveStack
from tests.test_api_welcome_e2e import new_email, sign_up_body


def event_body(starts_at: datetime, **extra) -> dict:
    return {
        "name": "Lead journeys, live",
        "starts_at": starts_at.isoformat(),
        "time_zone": "Europe/Paris",
        "duration_minutes": 45,
        "join_url": "https://meet.example.com/live",
        "speakers": ["Ada Lovelace"],
        "topics": ["Reminders"],
        **extra,
    }


async def new_event(live: LiveStack, **extra) -> dict:
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=10)
    response = await live.http.post(
        "/events", json=event_body(starts.astimezone(timezone(timedelta(hours=1))), **extra)
    )
    assert response.status_code == 201, response.text
    return response.json()


async def new_lead(live: LiveStack) -> tuple[str, str]:
    email = new_email()
    response = await live.http.post("/leads", json=sign_up_body(email))
    assert response.status_code == 201, response.text
    return response.json()["lead"]["id"], email.lower()


async def status_when(live: LiveStack, workflow_id: str, predicate, timeout: float = 10.0):
    handle = live.temporal.get_workflow_handle(workflow_id)
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate(state := await handle.query("status")):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"journey never reached the expected state; last: {state}")
        await asyncio.sleep(0.05)
    return state


def ics_of(mail) -> str:
    [part] = [p for p in mail.message.iter_attachments() if p.get_content_type() == "text/calendar"]
    content = part.get_content()
    return content.decode() if isinstance(content, bytes) else content


async def test_register_then_the_thank_you_with_its_ics_arrives(live: LiveStack):
    event = await new_event(live)
    lead_id, email = await new_lead(live)
    response = await live.http.post(
        f"/events/{event['id']}/registrations", json={"lead_id": lead_id}
    )
    assert response.status_code == 201, response.text
    assert response.json()["workflow_id"] == f"event-{event['id']}-{lead_id}"

    [mail] = await live.sink.wait_for_mail(to=email)
    assert mail.subject == "You're registered: Lead journeys, live"
    assert "Ada Lovelace" in mail.text and "(Europe/Paris)" in mail.text  # in the lead's time zone
    ics = ics_of(mail)
    starts = datetime.fromisoformat(event["starts_at"]).astimezone(UTC)
    assert f"DTSTART:{starts:%Y%m%dT%H%M%SZ}\r\n" in ics
    assert f"DTEND:{starts + timedelta(minutes=45):%Y%m%dT%H%M%SZ}\r\n" in ics
    raw_ics = next(
        p
        for p in BytesParser().parsebytes(mail.raw).walk()
        if p.get_content_type() == "text/calendar"
    )
    assert raw_ics.get_filename() == "invite.ics"

    await status_when(
        live, f"event-{event['id']}-{lead_id}", lambda s: s["step"] == "waiting_for_reminder_day"
    )
    found = [
        wf.id
        async for wf in live.temporal.list_workflows(f'Journey = "event" AND LeadId = "{lead_id}"')
    ]
    assert found == [f"event-{event['id']}-{lead_id}"]

    again = await live.http.post(f"/events/{event['id']}/registrations", json={"lead_id": lead_id})
    assert (
        again.status_code == 409 and again.json()["workflow_id"] == f"event-{event['id']}-{lead_id}"
    )
    assert (await live.http.get(f"/events/{event['id']}")).json()["registrations"] == 1


async def test_reschedule_and_cancel_reach_the_running_journeys(live: LiveStack):
    event = await new_event(live)
    lead_id, email = await new_lead(live)
    assert (
        await live.http.post(f"/events/{event['id']}/registrations", json={"lead_id": lead_id})
    ).status_code == 201
    wid = f"event-{event['id']}-{lead_id}"
    await status_when(live, wid, lambda s: s["step"] == "waiting_for_reminder_day")

    new_start = datetime.fromisoformat(event["starts_at"]) + timedelta(days=1)
    response = await live.http.patch(
        f"/events/{event['id']}", json={"starts_at": new_start.isoformat()}
    )
    assert response.status_code == 200 and response.json()["sequence"] == 1
    state = await status_when(
        live,
        wid,
        lambda s: (
            s["step"] == "waiting_for_reminder_day"
            and datetime.fromisoformat(s["starts_at"]) == new_start
        ),
    )
    mails = await live.sink.wait_for_mail(to=email, count=2)
    assert mails[1].subject == "New date: Lead journeys, live" and "SEQUENCE:1" in ics_of(mails[1])

    response = await live.http.patch(f"/events/{event['id']}", json={"status": "cancelled"})
    assert response.status_code == 200
    result = await live.temporal.get_workflow_handle(wid).result()
    assert result["outcome"] == "cancelled" and state["messages"][0]["step"] == "confirmation"
    mails = await live.sink.wait_for_mail(to=email, count=3)
    assert mails[2].subject == "Cancelled: Lead journeys, live" and "METHOD:CANCEL" in ics_of(
        mails[2]
    )

    # A cancelled event takes no registration and no change.
    other_lead, _ = await new_lead(live)
    refused = await live.http.post(
        f"/events/{event['id']}/registrations", json={"lead_id": other_lead}
    )
    assert refused.status_code == 422 and "cancelled" in refused.text
    assert (await live.http.patch(f"/events/{event['id']}", json={"name": "x"})).status_code == 422


async def test_attendance_by_id_or_email(live: LiveStack):
    event = await new_event(live)
    (a, _), (b, b_email), (c, _) = [await new_lead(live) for _ in range(3)]
    for lead_id in (a, b):
        assert (
            await live.http.post(f"/events/{event['id']}/registrations", json={"lead_id": lead_id})
        ).status_code == 201
    response = await live.http.post(
        f"/events/{event['id']}/attendance",
        json={"lead_ids": [a, c], "emails": [b_email.upper(), "nobody@example.com"]},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "attended": sorted([a, b]),
        "not_registered": [c, "nobody@example.com"],
    }
    for lead_id in (a, b):
        await status_when(live, f"event-{event['id']}-{lead_id}", lambda s: s["attended"])
    with Session(live.engine) as session:
        rows = session.exec(select(Registration).where(Registration.event_id == event["id"])).all()
    assert {r.lead_id for r in rows if r.attended} == {a, b}


async def test_bad_event_input_is_refused_and_nothing_is_written(live: LiveStack):
    with Session(live.engine) as session:
        before = len(session.exec(select(Event.id)).all())
    naive = event_body(datetime(2030, 1, 1, 18, 0))
    response = await live.http.post("/events", json=naive)
    assert response.status_code == 422 and "time zone" in response.text
    nowhere = event_body(datetime(2030, 1, 1, 18, 0, tzinfo=UTC), join_url=None)
    assert (await live.http.post("/events", json=nowhere)).status_code == 422
    bad_zone = event_body(datetime(2030, 1, 1, 18, 0, tzinfo=UTC), time_zone="Paris")
    assert (await live.http.post("/events", json=bad_zone)).status_code == 422
    with Session(live.engine) as session:
        assert len(session.exec(select(Event.id)).all()) == before

    lead_id, _ = await new_lead(live)
    assert (
        await live.http.post("/events/nope/registrations", json={"lead_id": lead_id})
    ).status_code == 404
    event = await new_event(live)
    assert (
        await live.http.post(f"/events/{event['id']}/registrations", json={"lead_id": "nope"})
    ).status_code == 404
    assert (
        await live.http.patch(f"/events/{event['id']}", json={"starts_at": "2030-01-01T18:00:00"})
    ).status_code == 422
    assert (await live.http.patch("/events/nope", json={"name": "x"})).status_code == 404

    past = datetime.now(UTC) - timedelta(days=1)
    over = (await live.http.post("/events", json=event_body(past))).json()
    refused = await live.http.post(f"/events/{over['id']}/registrations", json={"lead_id": lead_id})
    assert refused.status_code == 422 and "over" in refused.text
    with Session(live.engine) as session:
        assert session.exec(select(Registration).where(Registration.lead_id == lead_id)).all() == []
