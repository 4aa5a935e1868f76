"""Broadcasts: one campaign to a list, in waves, through the same send ledger as journeys.

The pace and the send windows run on the time-skipping server (hours of waves in seconds); the
API's answers on the live stack (tests/conftest.py ``live``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, select
from temporalio.converter import value_to_type

from api.privacy import workflow_ids_of
from relance.contracts.broadcasts import BroadcastResult
from relance.domain.audiences import Audience
from relance.domain.db import session_scope
from relance.domain.lists import add_member
from relance.domain.models import Broadcast, Lead, Message, as_utc
from relance.services import broadcasts
from relance.services.broadcasts import BroadcastSpec
from tests.waiting import eventually
from worker import build_worker

TEMPLATE = "nurture_welcome_newsletter"


def new_list(engine, leads) -> str:
    name = f"bc-{uuid.uuid4().hex[:10]}"
    with session_scope(engine) as session:
        for lead in leads:
            add_member(session, list_name=name, lead_id=lead.id, reason="test")
    return name


async def run_broadcast(
    client, settings, engine, spec: BroadcastSpec
) -> tuple[str, BroadcastResult]:
    queue = f"bc-{uuid.uuid4().hex[:8]}"
    s = settings.model_copy(update={"temporal_task_queue": queue})
    with Session(engine) as session:
        broadcast = broadcasts.create(session, spec)
    async with build_worker(client, s, engine):
        handle = await broadcasts.start(client, s, broadcast)
        result = value_to_type(BroadcastResult, await handle.result())
    return handle.id, result


def messages_of(engine, workflow_id: str) -> list[Message]:
    with Session(engine) as session:
        return list(session.exec(select(Message).where(Message.workflow_id == workflow_id)).all())


async def test_a_broadcast_goes_out_once_to_each_lead_at_the_pace_asked(
    client, settings, engine, sink, make_lead
):
    """30 leads with consent and 5 without at 360 an hour: every consenting lead gets the message
    once, the others are skipped for want of consent, and the sends are spread over the run at
    the pace asked (within 5 %), not sent at once."""
    consenting = [make_lead() for _ in range(30)]
    refusing = [make_lead(consents=()) for _ in range(5)]
    name = new_list(engine, consenting + refusing)
    workflow_id, result = await run_broadcast(
        client, settings, engine, BroadcastSpec(Audience("list", name), TEMPLATE, per_hour=360)
    )
    assert result.status == "completed"
    assert (result.counts.sent, result.counts.skipped) == (30, {"no_consent": 5})
    for lead in consenting:
        assert len(sink.mails_to(lead.email)) == 1
    for lead in refusing:
        assert sink.mails_to(lead.email) == []
    sent = sorted(m.counted_at for m in messages_of(engine, workflow_id) if m.status == "sent")
    span = (sent[-1] - sent[0]).total_seconds()
    assert abs(span - 29 * 10) <= 0.05 * 29 * 10, span
    with Session(engine) as session:
        row = session.get(Broadcast, workflow_id.removeprefix("broadcast-"))
    assert (row.status, row.sent, row.skipped_by_reason) == ("completed", 30, {"no_consent": 5})


# The API ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"audience": {"list": "no-such-list"}}, "no members"),
        ({"audience": {"segment": "s-1"}}, "there is no segment 's-1'"),
        ({"per_hour": 0}, "per_hour"),
        ({"per_hour": -5}, "per_hour"),
        ({"template": "no_such_template"}, "no email template named 'no_such_template'"),
        ({"template": "event_cancelled"}, "needs event"),
        ({"channel": "fax"}, "'fax' is not a channel"),
        ({"send_at": "next tuesday-ish"}, "send_at"),
    ],
)
async def test_bad_broadcasts_are_refused_naming_the_problem_and_nothing_starts(
    live, make_lead, change, named
):
    name = new_list(live.engine, [make_lead()])
    with Session(live.engine) as session:
        before = len(session.exec(select(Broadcast)).all())
    body = {"audience": {"list": name}, "template": TEMPLATE, "per_hour": 100, **change}
    response = await live.http.post("/broadcasts", json=body)
    assert response.status_code == 422, response.text
    assert named in response.text
    with Session(live.engine) as session:
        assert len(session.exec(select(Broadcast)).all()) == before


async def test_a_broadcast_to_a_segment_goes_to_its_members_as_of_the_start(live, make_lead):
    """ "This newsletter to every pro-plan lead in France": the segment's rules pick the
    recipients when the broadcast starts; a lead who matches later is not in it."""
    plan = f"pro-{uuid.uuid4().hex[:6]}"  # a value of this test alone (a string attribute)
    fr_pro, fr_free, de_pro = (make_lead() for _ in range(3))
    for lead, country, title in ((fr_pro, "FR", plan), (fr_free, "FR", "x"), (de_pro, "DE", plan)):
        with session_scope(live.engine) as session:
            row = session.get(Lead, lead.id)
            row.country, row.attributes = country, {"job_title": title}
    segment = await live.http.post(
        "/segments",
        json={
            "name": "Pro leads in France",
            "rules": {
                "all": [
                    {"attribute": {"name": "country", "op": "eq", "value": "FR"}},
                    {"attribute": {"name": "job_title", "op": "eq", "value": plan}},
                ]
            },
        },
    )
    assert segment.status_code == 201, segment.text
    response = await live.http.post(
        "/broadcasts",
        json={
            "audience": {"segment": segment.json()["id"]},
            "template": TEMPLATE,
            "per_hour": 360_000,
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["audience"] == 1

    async def done():
        r = await live.http.get(f"/broadcasts/{response.json()['id']}")
        return r.json() if r.json()["status"] == "completed" else None

    final = await eventually(done, timeout=30, what="the broadcast to complete")
    assert final["sent"] == 1
    assert len(live.sink.mails_to(fr_pro.email)) == 1
    assert live.sink.mails_to(fr_free.email) == [] and live.sink.mails_to(de_pro.email) == []


async def test_post_then_follow_pause_resume_and_finish(live, make_lead):
    leads = [make_lead() for _ in range(4)]
    name = new_list(live.engine, leads)
    response = await live.http.post(
        "/broadcasts",
        json={"audience": {"list": name}, "template": TEMPLATE, "per_hour": 360_000},
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["audience"] == 4

    async def done():
        r = await live.http.get(f"/broadcasts/{created['id']}")
        return r.json() if r.json()["status"] == "completed" else None

    final = await eventually(done, timeout=30, what="the broadcast to complete")
    assert (final["sent"], final["remaining"], final["failed"]) == (4, 0, 0)
    for lead in leads:
        assert len(live.sink.mails_to(lead.email)) == 1
    again = await live.http.post(f"/broadcasts/{created['id']}/pause")
    assert again.status_code == 409


async def test_a_paused_broadcast_sends_nothing_until_resumed_and_a_cancelled_one_stops(
    live, make_lead
):
    leads = [make_lead() for _ in range(40)]
    name = new_list(live.engine, leads)
    send_at = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    created = (
        await live.http.post(
            "/broadcasts",
            json={
                "audience": {"list": name},
                "template": TEMPLATE,
                "per_hour": 3600,
                "send_at": send_at,
            },
        )
    ).json()
    paused = await live.http.post(f"/broadcasts/{created['id']}/pause")
    assert paused.status_code == 200

    await eventually(
        lambda: _status(live, created["id"], "paused"), timeout=20, what="the broadcast paused"
    )
    assert sum(len(live.sink.mails_to(lead.email)) for lead in leads) == 0
    await live.http.post(f"/broadcasts/{created['id']}/resume")
    await eventually(
        lambda: sum(len(live.sink.mails_to(lead.email)) for lead in leads) >= 1,
        timeout=20,
        what="a first wave after the resume",
    )
    await live.http.post(f"/broadcasts/{created['id']}/cancel")
    final = await eventually(
        lambda: _status(live, created["id"], "cancelled"), timeout=20, what="cancelled"
    )
    assert final["sent"] < 40
    assert sum(len(live.sink.mails_to(lead.email)) for lead in leads) == final["sent"]


async def _status(live, broadcast_id: str, wanted: str):
    body = (await live.http.get(f"/broadcasts/{broadcast_id}")).json()
    return body if body["status"] == wanted else None


async def test_preview_is_untracked_and_test_send_counts_nowhere(live, make_lead):
    lead = make_lead(first_name="Grace")
    preview = await live.http.post(
        "/broadcasts/preview", json={"template": TEMPLATE, "lead_id": lead.id}
    )
    assert preview.status_code == 200, preview.text
    assert "Hi Grace" in preview.json()["text"]
    assert "/t/o/" not in preview.json()["html"] and "/t/c/" not in preview.json()["html"]
    to = f"tester-{uuid.uuid4().hex[:8]}@example.com"
    sent = await live.http.post("/broadcasts/test-send", json={"template": TEMPLATE, "to": to})
    assert sent.status_code == 200, sent.text
    [mail] = await live.sink.wait_for_mail(to=to)
    assert mail.subject.startswith("[Test] ")
    with Session(live.engine) as session:
        assert session.exec(select(Message).where(Message.template == TEMPLATE)).all() is not None
        assert not session.exec(select(Message).where(Message.subject == mail.subject)).all()
    missing = await live.http.post("/broadcasts/test-send", json={"template": "nope", "to": to})
    assert missing.status_code == 422
    # a template about an event cannot be filled for a lead alone: 422, not a server error
    for path, body in (
        ("/broadcasts/preview", {"template": "event_cancelled", "lead_id": lead.id}),
        ("/broadcasts/test-send", {"template": "event_cancelled", "to": to}),
    ):
        answer = await live.http.post(path, json=body)
        assert answer.status_code == 422 and "needs event" in answer.text, answer.text


async def test_leads_outside_their_send_window_wait_for_it_without_holding_up_the_others(
    client, settings, engine, sink, make_lead
):
    """One lead in each of 24 time zones, a window of 09:00-19:00 every day: whatever the hour,
    the leads inside their window get the message in the first waves, the others at their own
    09:00, each once."""
    leads = [make_lead() for _ in range(24)]
    with session_scope(engine) as session:
        for lead, offset in zip(leads, range(-11, 13), strict=True):
            session.get(Lead, lead.id).time_zone = f"Etc/GMT{-offset:+d}"  # Etc/GMT-3 is UTC+3
    name = new_list(engine, leads)
    windowed = settings.model_copy(
        update={"send_window_enabled": True, "send_window_days": [1, 2, 3, 4, 5, 6, 7]}
    )
    workflow_id, result = await run_broadcast(
        client, windowed, engine, BroadcastSpec(Audience("list", name), TEMPLATE, per_hour=360_000)
    )
    assert (result.status, result.counts.sent) == ("completed", 24)
    rows = messages_of(engine, workflow_id)
    first = min(m.counted_at for m in rows)
    zones = {
        lead.id: ZoneInfo(f"Etc/GMT{-offset:+d}")
        for lead, offset in zip(leads, range(-11, 13), strict=True)
    }
    on_time = deferred = 0
    for m in rows:
        local = as_utc(m.counted_at).astimezone(zones[m.lead_id])
        assert 9 <= local.hour < 19, (m.lead_id, local)
        if (m.counted_at - first).total_seconds() < 60:
            on_time += 1
        else:
            deferred += 1
            assert (local.hour, local.minute) < (9, 5), local  # sent as its window opened
    assert on_time >= 9 and deferred >= 13, (on_time, deferred)
    for lead in leads:
        assert len(sink.mails_to(lead.email)) == 1


async def test_erasing_a_recipient_leaves_the_broadcast_to_the_others(
    client, settings, engine, sink, make_lead
):
    """The broadcast's workflow is not the lead's: an erasure closes the lead's journeys, never
    the campaign (whose history holds no lead's id)."""

    leads = [make_lead() for _ in range(2)]
    workflow_id, _ = await run_broadcast(
        client,
        settings,
        engine,
        BroadcastSpec(Audience("list", new_list(engine, leads)), TEMPLATE, per_hour=3600),
    )
    assert len(messages_of(engine, workflow_id)) == 2
    with Session(engine) as session:
        assert workflow_id not in workflow_ids_of(session=session, lead_id=leads[0].id)


# A batch, a part at a time -----------------------------------------------------------------------


async def test_a_batch_stopped_by_a_refusal_for_now_leaves_the_rest_pending_and_unsent(
    settings, engine, sink, make_lead
):
    """A batch claims its next part while a part's messages go out. When the mail server refuses
    one for now (451), the batch stops: the recipients claimed ahead stay pending, their rows
    say no attempt reached the server (not "sent again"), and the next batch sends each of them
    once."""
    from temporalio.testing import ActivityEnvironment

    from activities import build_activities
    from relance.contracts.broadcasts import BatchRequest, FreezeRequest

    leads = [make_lead() for _ in range(12)]
    with Session(engine) as session:
        row = broadcasts.create(
            session,
            BroadcastSpec(Audience("list", new_list(engine, leads)), TEMPLATE, per_hour=3600),
        )
        broadcast_id = row.id
    by_name = {getattr(a, "__name__", ""): a for a in build_activities(settings, engine)}
    env = ActivityEnvironment()
    workflow_id = f"broadcast-{broadcast_id}"
    env.run(by_name["freeze_audience"], FreezeRequest(broadcast_id))

    sink.fail_next("", "451 4.3.0 Try again later")  # the second message is refused for now
    first = env.run(by_name["send_broadcast_batch"], BatchRequest(broadcast_id, workflow_id, 12))
    assert "451" in first.temporary_failure
    assert 0 < first.counts.sent < 12 and first.counts.remaining == 12 - first.counts.sent
    unsent = [m for m in messages_of(engine, workflow_id) if m.status != "sent"]
    assert unsent and all(m.status == "sending" for m in unsent)
    assert all(m.attempts_not_delivered == m.attempts for m in unsent), [m.reason for m in unsent]

    second = env.run(by_name["send_broadcast_batch"], BatchRequest(broadcast_id, workflow_id, 12))
    assert (second.temporary_failure, second.counts.sent, second.counts.remaining) == ("", 12, 0)
    for lead in leads:
        assert len(sink.mails_to(lead.email)) == 1
    for message in messages_of(engine, workflow_id):
        assert message.status == "sent"
        assert "sent again" not in (message.reason or ""), message.reason
