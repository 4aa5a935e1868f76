"""A lead's data rights end to end, on the real dev server: consents as proof, export of
everything held, erasure (journeys closed and deleted, no row left, the address suppressed),
and the audit log of who did it."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlmodel import Session, SQLModel
from temporalio.service import RPCError, RPCStatusCode

from activities.enrollment import EnrollmentActivities
from relance.contracts.enrollment import RefusalRecord
from relance.domain.audit import key_fingerprint
from relance.domain.models import SegmentTriggerMember, SuppressionEntry, TriggerFire
from relance.domain.suppression import email_hash
from relance.services.erasure import KEPT, erase_lead, lead_columns, tables_to_erase
from tests.conftest import LiveStack
from tests.test_api_cart_e2e import cart_event, purchase_event
from tests.test_api_events_e2e import new_event
from tests.test_api_welcome_e2e import enroll, journey_when, links, sign_up_body
from tests.waiting import eventually


async def hand_to_sales(live: LiveStack, lead_id: str) -> None:
    """Nurturing, then a white-paper download: the lead is handed to a sales rep (a sales task)."""
    assert (await live.http.post(f"/leads/{lead_id}/journeys/nurturing")).status_code == 201
    download = {"type": "asset_downloaded", "lead": lead_id, "asset": "white-paper"}
    assert (await live.http.post("/events/track", json=download)).status_code == 202

    async def a_task():
        return (await live.http.get("/tasks", params={"lead": lead_id})).json()

    await eventually(a_task, timeout=15, what="a sales task for the download")


async def a_lead_with_everything(live: LiveStack) -> tuple[str, str, object]:
    """A lead with a row in every table that can hold one, and journeys running and closed."""
    lead_id, email = await enroll(live)  # welcome journey, consent ledger
    [mail] = await live.sink.wait_for_mail(to=email)
    await journey_when(live, lead_id, lambda s: s["step"] == "waiting_for_open")
    [click, *_] = links(mail.html, "c")
    assert (await live.public.get(click)).status_code == 302  # tracking event, then a score event
    await journey_when(live, lead_id, lambda s: s["status"] == "COMPLETED")

    await hand_to_sales(live, lead_id)  # before any purchase: customers are not nurtured
    event = await new_event(live)
    registered = await live.http.post(
        f"/events/{event['id']}/registrations", json={"lead_id": lead_id}
    )
    assert registered.status_code == 201, registered.text
    for order in (
        f"o-{uuid.uuid4().hex[:8]}",
        f"o-{uuid.uuid4().hex[:8]}",
    ):  # promo code, then the loyal list
        assert (
            await live.http.post("/events/track", json=purchase_event(lead_id, order))
        ).status_code == 202
        await live.temporal.get_workflow_handle(f"purchase-{order}").result()
    assert (
        await live.http.post("/events/track", json=cart_event(lead_id, "c-" + uuid.uuid4().hex[:8]))
    ).status_code == 202
    # Custom attributes and a custom event (the lead schema).
    assert (
        await live.http.patch(
            f"/leads/{lead_id}/attributes", json={"plan": "pro", "job_title": "Head of growth"}
        )
    ).status_code == 200
    assert (
        await live.http.post(
            "/events/track",
            json={"type": "custom", "lead": lead_id, "name": "trial_started", "id": "t-1"},
        )
    ).status_code == 202
    # A scenario that refused to send the lead back where it came from (the loop guard) records it.
    EnrollmentActivities(live.engine).record_enrollment_refusal(
        RefusalRecord(
            lead_id,
            f"scenario-white_paper-{lead_id}",
            "run-1",
            "white_paper",
            "newsletter",
            "enrolling into newsletter would loop: newsletter -> white_paper -> newsletter",
            ["newsletter", "white_paper"],
        )
    )
    # A birthday trigger fired for the lead, and a segment-entered trigger counts it a member
    # (the hourly trigger sweep's idempotency and memory: relance/services/triggers.py).
    with Session(live.engine) as session:
        session.add(
            TriggerFire(fire_key=f"birthday:0:{lead_id}:2027-03-15", lead_id=lead_id, journey="bd")
        )
        session.add(SegmentTriggerMember(journey="bd", segment_id="s-1", lead_id=lead_id))
        session.commit()
    # A broadcast to a list the lead is on: its recipient row is the lead's data; the campaign's
    # workflow is not the lead's journey (an erasure leaves it to the others).
    campaign_list = f"gdpr-{uuid.uuid4().hex[:8]}"
    added = await live.http.post(
        f"/lists/{campaign_list}/members", json={"lead_ids": [lead_id], "reason": "campaign"}
    )
    assert added.status_code == 200, added.text
    broadcast = await live.http.post(
        "/broadcasts",
        json={
            "audience": {"list": campaign_list},
            "template": "nurture_welcome_newsletter",
            "per_hour": 3600,
        },
    )
    assert broadcast.status_code == 201, broadcast.text

    async def broadcast_done():
        body = (await live.http.get(f"/broadcasts/{broadcast.json()['id']}")).json()
        return body["status"] == "completed"

    await eventually(broadcast_done, timeout=30, what="the broadcast to complete")
    return lead_id, email, mail


def every_cell(live: LiveStack) -> dict[str, list[str]]:
    """Every table of the database (those of the models and any other), as text, by table."""
    out = {}
    with live.engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            rows = connection.execute(text(f'SELECT * FROM "{table}"')).all()
            out[table] = [" ".join(str(cell) for cell in row) for row in rows]
    return out


async def test_export_then_erase_a_lead_with_every_kind_of_data(live: LiveStack):
    lead_id, email, mail = await a_lead_with_everything(live)

    # Consents: the ledger, as proof.
    consents = (await live.http.get(f"/leads/{lead_id}/consents")).json()
    assert consents == [
        {
            "channel": "email",
            "purpose": "marketing",
            "status": "granted",
            "source_url": "https://example.com/newsletter",
            "ip": "203.0.113.9",
            "user_agent": "Mozilla/5.0",
            "wording_version": "2026-01",
            "recorded_at": consents[0]["recorded_at"],
        }
    ]

    # Export: every table that holds the lead's rows has them in the export, and the journeys.
    export = (await live.http.get(f"/leads/{lead_id}/export")).json()
    assert export["lead"]["email"] == email and export["lead"]["id"] == lead_id
    assert export["lead"]["attributes"] == {"plan": "pro", "job_title": "Head of growth"}
    expected = {table.name for table in tables_to_erase()}
    assert expected >= {
        "consents",
        "messages",
        "tracking_events",
        "score_events",
        "carts",
        "orders",
        "promo_codes",
        "list_members",
        "registrations",
    }
    assert set(export["data"]) == expected
    assert not [name for name in expected if not export["data"][name]], (
        "a kind of data is missing from the export"
    )
    assert export["data"]["consents"][0]["wording_version"] == "2026-01"
    assert any(e["kind"] == "clicked" for e in export["data"]["tracking_events"])
    [refusal] = export["data"]["enrollment_refusals"]
    assert (refusal["source"], refusal["target"], refusal["chain"]) == (
        "white_paper",
        "newsletter",
        ["newsletter", "white_paper"],
    )
    journeys = {j["workflow_type"]: j for j in export["journeys"]}
    assert set(journeys) == {
        "WelcomeJourney",
        "EventReminderJourney",
        "PurchaseFollowUp",
        "AbandonedCartJourney",
        "LeadNurturingJourney",
    }
    assert (
        journeys["WelcomeJourney"]["status"] == "COMPLETED"
        and journeys["WelcomeJourney"]["close_time"]
    )
    assert (
        journeys["EventReminderJourney"]["status"] == "RUNNING"
        and journeys["AbandonedCartJourney"]["status"] == "RUNNING"
    )
    assert len([j for j in export["journeys"] if j["workflow_type"] == "PurchaseFollowUp"]) == 2
    # Every journey sets the LeadId search attribute: that is how erasure and unsubscribe find them.
    expected_journeys = {(j["workflow_id"], j["workflow_type"]) for j in export["journeys"]}

    async def all_listed():  # visibility follows within moments
        found = {
            (wf.id, wf.workflow_type)
            async for wf in live.temporal.list_workflows(f'LeadId = "{lead_id}"')
        }
        return found == expected_journeys

    await eventually(
        all_listed,
        timeout=15,
        what=f"Temporal to list exactly the journeys {sorted(expected_journeys)}",
    )

    # Erasure.
    erased = await live.http.delete(
        f"/leads/{lead_id}", params={"reason": "asked by email, ticket 42"}
    )
    assert erased.status_code == 200, erased.text
    report = erased.json()
    assert set(report["journeys_closed"]) == {j["workflow_id"] for j in export["journeys"]}
    assert report["suppressed"] is True and "audit_log" in report["kept"]
    assert report["rows_deleted"]["leads"] == 1 and set(report["rows_deleted"]) == expected | {
        "leads"
    }

    # Nothing readable is left in the database: not the address, not a row with the lead's id
    # (but the audit log's), in any table, including tables no model declares.
    for table, rows in every_cell(live).items():
        assert not [r for r in rows if email in r.lower()], f"the address is still in {table}"
        if table not in KEPT:
            assert not [r for r in rows if lead_id in r], f"a row of the lead is still in {table}"
    assert (await live.http.get(f"/leads/{lead_id}")).status_code == 404
    assert (await live.http.delete(f"/leads/{lead_id}")).status_code == 404

    # The person's old emails still carry valid links: using them writes nothing about them again.
    from tests.test_api_welcome_e2e import unsubscribe_url

    [pixel] = links(mail.html, "o")
    assert (await live.public.get(pixel)).status_code == 200
    assert (await live.public.get(links(mail.html, "c")[0])).status_code == 302
    assert (
        await live.public.post(unsubscribe_url(mail), content=b"List-Unsubscribe=One-Click")
    ).status_code == 200
    for table, rows in every_cell(live).items():
        if table not in KEPT:
            assert not [r for r in rows if lead_id in r], (
                f"a row of the erased lead came back in {table}"
            )

    # Nor in Temporal: no journey of the lead runs any more, and their deletion (histories
    # included) was accepted. The server deletes asynchronously: a journey closed a moment ago
    # can take ~30 s to disappear on the dev server (it retries), so this does not wait for it.
    for workflow_id in report["journeys_closed"]:
        try:
            description = await live.temporal.get_workflow_handle(workflow_id).describe()
        except RPCError as err:
            assert err.status == RPCStatusCode.NOT_FOUND
            continue
        assert description.status.name != "RUNNING", workflow_id

    async def none_running():  # visibility follows within moments
        query = f'LeadId = "{lead_id}" AND ExecutionStatus = "Running"'
        return not [wf async for wf in live.temporal.list_workflows(query)]

    await eventually(
        none_running, timeout=15, what="Temporal to list no running journey of the erased lead"
    )

    # The address is suppressed (a keyed hash): signing it up again is refused and stores nothing.
    with Session(live.engine) as session:
        entry = session.get(SuppressionEntry, email_hash(live.settings.secret_key, email))
        assert entry is not None and entry.reason == "erased"
    again = await live.http.post("/leads", json=sign_up_body(email.upper(), journeys=["welcome"]))
    assert again.status_code == 409 and "suppression list" in again.json()["detail"]
    assert not [r for rows in every_cell(live).values() for r in rows if email in r.lower()]

    # The audit log says who read, exported and erased, by the key's fingerprint, never the key.
    log = (await live.http.get("/audit", params={"lead_id": lead_id})).json()
    actions = [entry["action"] for entry in reversed(log)]
    assert actions == ["lead.consents", "lead.export", "lead.erase"]
    assert {entry["actor"] for entry in log} == {key_fingerprint(live.settings.api_key)}
    assert live.settings.api_key not in str(log)
    assert log[0]["detail"]["reason"] == "asked by email, ticket 42"


async def test_reading_a_lead_is_audited_and_unknown_leads_are_404(live: LiveStack):
    lead_id, _ = await enroll(live)
    assert (await live.http.get(f"/leads/{lead_id}")).status_code == 200
    assert (await live.http.get(f"/leads/{lead_id}/messages")).status_code == 200
    log = (await live.http.get("/audit", params={"lead_id": lead_id})).json()
    assert [e["action"] for e in log] == ["lead.messages", "lead.read"]  # newest first
    assert all(e["actor"] == key_fingerprint(live.settings.api_key) for e in log)
    for path in ("/leads/nope", "/leads/nope/export", "/leads/nope/consents", '/leads/a"b/export'):
        assert (await live.http.get(path)).status_code == 404, path
    assert (await live.http.delete("/leads/nope")).status_code == 404
    assert (await live.public.delete(f"/leads/{lead_id}")).status_code == 401
    assert (await live.public.get("/audit")).status_code == 401
    assert (
        await live.http.get(f"/leads/{lead_id}")
    ).status_code == 200  # not erased by the refused call


def test_every_table_holding_a_lead_id_is_erased_or_kept_for_a_stated_reason():
    holding = {table.name for table in SQLModel.metadata.sorted_tables if lead_columns(table)}
    erased = {table.name for table in tables_to_erase()}
    assert holding == erased | set(KEPT)
    assert not erased & set(KEPT)
    assert all(reason for reason in KEPT.values())


def test_erase_lead_is_idempotent_and_callable_without_the_api(engine, make_lead, settings):
    lead = make_lead()
    first = erase_lead(
        engine,
        lead.id,
        actor="journey:sunset-x",
        reason="inactive for 2 years",
        hash_key=settings.secret_key,
    )
    assert first.found and first.rows_deleted == {"consents": 1, "leads": 1} and first.suppressed
    second = erase_lead(
        engine, lead.id, actor="journey:sunset-x", reason="retried", hash_key=settings.secret_key
    )
    assert not second.found and second.rows_deleted == {}
    with pytest.raises(ValueError, match="SECRET_KEY"):
        erase_lead(engine, make_lead().id, actor="x", reason="y", hash_key="")


async def test_an_unsubscribe_stops_every_journey_of_the_lead_and_suppresses_the_address(
    live: LiveStack,
):
    from tests.test_api_welcome_e2e import unsubscribe_url

    lead_id, email = await enroll(live)
    [welcome] = await live.sink.wait_for_mail(to=email)
    event = await new_event(live)
    assert (
        await live.http.post(f"/events/{event['id']}/registrations", json={"lead_id": lead_id})
    ).status_code == 201
    assert (
        await live.http.post("/events/track", json=cart_event(lead_id, "c-" + uuid.uuid4().hex[:8]))
    ).status_code == 202
    event_journey = f"event-{event['id']}-{lead_id}"
    await live.sink.wait_for_mail(to=email, count=2)  # the event's thank-you: its journey now waits

    # The welcome email's link: the other two journeys are told as well, and end.
    response = await live.public.post(
        unsubscribe_url(welcome), content=b"List-Unsubscribe=One-Click"
    )
    assert response.status_code == 200
    outcomes = {}
    for workflow_id in (f"welcome-{lead_id}", f"cart-{lead_id}", event_journey):
        outcomes[workflow_id.split("-")[0]] = (
            await asyncio.wait_for(
                live.temporal.get_workflow_handle(workflow_id).result(), timeout=15
            )
        )["outcome"]
    assert outcomes == {"welcome": "unsubscribed", "cart": "unsubscribed", "event": "unsubscribed"}

    with Session(live.engine) as session:
        entry = session.get(SuppressionEntry, email_hash(live.settings.secret_key, email))
    assert entry is not None and entry.reason == "unsubscribed"

    # Signing up again without an email opt-in leaves the address suppressed; an explicit
    # opt-in (recorded in the ledger) lifts it. An erasure's suppression is never lifted this way.
    body = sign_up_body(email)
    assert (await live.http.post("/leads", json={**body, "consents": []})).status_code == 200
    with Session(live.engine) as session:
        assert session.get(SuppressionEntry, entry.email_hash) is not None
    assert (await live.http.post("/leads", json=body)).status_code == 200
    with Session(live.engine) as session:
        assert session.get(SuppressionEntry, entry.email_hash) is None
    consents = (await live.http.get(f"/leads/{lead_id}/consents")).json()
    assert [c["status"] for c in consents] == ["granted", "withdrawn", "granted"]


def test_no_marketing_email_to_a_suppressed_address(engine, make_lead, settings):
    from activities.sending import SendLedger
    from relance.contracts.sending import SendRequest
    from relance.domain.db import session_scope
    from relance.domain.suppression import suppress

    lead = make_lead()  # email consent granted
    with session_scope(engine) as session:
        suppress(session, settings.secret_key, lead.email.upper(), "unsubscribed")
    ledger = SendLedger(engine, suppression_key=settings.secret_key)
    request = SendRequest(
        lead_id=lead.id,
        workflow_id=f"w-{lead.id}",
        journey="welcome",
        step="welcome",
        template="welcome",
    )
    claim = ledger.claim(request, "email")
    assert (
        claim.result.status == "skipped"
        and "suppression list (unsubscribed)" in claim.result.reason
    )
    receipt = SendRequest(
        lead_id=lead.id,
        workflow_id=f"w-{lead.id}",
        journey="purchase",
        step="thanks",
        template="welcome",
        kind="transactional",
    )
    assert ledger.claim(receipt, "email").message is not None  # transactional mail is not marketing


async def test_an_unsubscribe_still_reaches_the_message_journey_where_visibility_cannot_answer(
    client, settings, engine, sink, make_lead, caplog
):
    """The time-skipping server cannot list workflows: the outbox must not stall on that, and
    tells the journey the message came from. (The event is not stored: the session's shared
    outbox table belongs to the live API's dispatcher.)"""
    from relance.contracts.signals import TrackingSignal
    from relance.domain.models import TrackingEvent
    from relance.services.outbox import OutboxDispatcher
    from worker import build_worker
    from workflows.welcome import WelcomeInput, WelcomeJourney

    lead = make_lead()
    async with build_worker(client, settings, engine):
        handle = await client.start_workflow(
            WelcomeJourney.run,
            WelcomeInput(lead_id=lead.id),
            id=f"welcome-{lead.id}",
            task_queue=settings.temporal_task_queue,
        )
        await sink.wait_for_mail(to=lead.email)

        async def waiting_for_open():
            status = await handle.query(WelcomeJourney.status)
            return status if status.messages and status.step == "waiting_for_open" else None

        status = await eventually(
            waiting_for_open, timeout=15, what="the journey to wait for the open"
        )
        event = TrackingEvent(
            kind="unsubscribed",
            message_id=status.messages[0].message_id,
            lead_id=lead.id,
            workflow_id=handle.id,
        )
        told = await OutboxDispatcher(engine, client)._tell_every_journey(
            event, TrackingSignal(event.message_id)
        )
        result = await handle.result()
    assert told == 1 and result.outcome == "unsubscribed"
    assert "cannot list the journeys of lead" in caplog.text


async def test_erasure_closes_a_journey_that_neither_visibility_nor_the_database_points_to(
    live: LiveStack,
):
    """A journey started a moment ago (here: without the LeadId search attribute, which is what a
    visibility lag looks like) that has sent nothing yet is still found by its per-lead id and
    closed, instead of running on to fail on the erased lead."""
    from workflows.browse import BrowseAbandonmentJourney, BrowseInput

    email = f"late-{uuid.uuid4().hex[:10]}@example.com"
    lead_id = (await live.http.post("/leads", json=sign_up_body(email))).json()["lead"]["id"]
    handle = await live.temporal.start_workflow(
        BrowseAbandonmentJourney.run,
        BrowseInput(lead_id=lead_id),
        id=f"browse-{lead_id}",
        task_queue=live.settings.temporal_task_queue,
    )
    assert not [wf async for wf in live.temporal.list_workflows(f'LeadId = "{lead_id}"')]

    erased = await live.http.delete(f"/leads/{lead_id}")
    assert erased.status_code == 200, erased.text
    assert f"browse-{lead_id}" in erased.json()["journeys_closed"]
    try:
        description = await handle.describe()
    except RPCError as err:
        assert err.status == RPCStatusCode.NOT_FOUND
    else:
        assert description.status.name != "RUNNING"


def files_holding(folder: Path, needles: dict[str, bytes]) -> dict[str, list[str]]:
    """Which of ``needles`` (by name) each file of ``folder`` still holds, byte for byte."""
    found = {}
    for path in sorted(folder.iterdir()):
        if path.is_file():
            content = path.read_bytes()
            if hits := [name for name, needle in needles.items() if needle in content]:
                found[path.name] = hits
    return found


async def test_an_erasure_leaves_no_personal_data_in_any_file_of_the_data_folder(live: LiveStack):
    """Not only the tables: SQLite keeps recent pages in its write-ahead log (relance.db-wal)
    and deleted rows' bytes in freed space, until a checkpoint, a vacuum or a restart."""
    tag = uuid.uuid4().hex[:10]
    given_email = f"Erin.{tag}@Forget-Me.Example.COM"
    ip, user_agent, name = (
        f"2001:db8::1{tag[:3]}:1{tag[3:6]}",
        f"EraseMe-Browser/{tag}",
        f"Erin{tag}",
    )
    phone = f"+3361{int(tag, 16) % 10**7:07d}"
    body = sign_up_body(given_email, first_name=name, phone=phone, journeys=["welcome"])
    body["consents"][0].update(ip=ip, user_agent=user_agent)
    response = await live.http.post("/leads", json=body)
    assert response.status_code == 201, response.text
    lead = response.json()["lead"]
    [mail] = await live.sink.wait_for_mail(to=lead["email"].lower())
    click = links(mail.html, "c")[0]
    assert (await live.public.get(click, headers={"user-agent": user_agent})).status_code == 302
    await journey_when(live, lead["id"], lambda s: s["status"] == "COMPLETED")

    [consent] = (await live.http.get(f"/leads/{lead['id']}/consents")).json()
    assert (consent["ip"], consent["user_agent"]) == (ip, user_agent)
    folder = Path(live.engine.url.database).parent
    needles = {
        "email as given": given_email,
        "email as stored": lead["email"],
        "email lower-cased": given_email.lower(),
        "email upper-cased": given_email.upper(),
        "name": name,
        "phone": lead["phone"],
        "ip": ip,
        "user agent": user_agent,
    }
    needles = {what: value.encode() for what, value in needles.items()}
    assert files_holding(folder, needles), "the lead's data should be on disk before the erasure"

    assert (await live.http.delete(f"/leads/{lead['id']}")).status_code == 200
    assert files_holding(folder, needles) == {}
