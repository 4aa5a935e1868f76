"""Double opt-in: a sign-up's email consent is "pending" until the lead
clicks the signed link of the confirmation email; the welcome journey sends that email and waits
48 h for the click before any marketing email.

The journey tests run on the time-skipping server with the real activities, database and mail
sink; the confirmation is stored by the same code as ``POST /confirm/{token}`` (record_hits) and
signalled as the outbox does. The HTTP tests go through the real API on the dev server.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlmodel import Session, col, select
from temporalio.client import Client, WorkflowHandle

from relance.contracts import search_attributes as sa
from relance.contracts.signals import EMAIL_CONFIRMED, OPENED, UNSUBSCRIBED, TrackingSignal
from relance.dev.seeding import unique_id
from relance.domain.db import session_scope
from relance.domain.models import Consent, Message, TrackingEvent
from relance.domain.send_window import SendWindow
from relance.domain.tokens import TokenSigner
from relance.services.tracking import Hit, record_hits
from tests.conftest import LiveStack
from tests.test_api_welcome_e2e import (
    CONFIRMATION_SUBJECT,
    confirm,
    confirm_link,
    double_opt_in,  # noqa: F401 (the fixture)
    journey_when,  # noqa: F401 (the fixture)
    new_email,
    press_confirm,
    sign_up_body,
)
from tests.test_welcome_journey import wait_for_step
from tests.waiting import stored_hits
from workflows.welcome import WelcomeInput, WelcomeJourney, WelcomeResult


def pending_lead(make_lead, engine):
    """A lead who signed up with double opt-in: the email consent is pending, with its evidence."""
    lead = make_lead(consents=())
    with session_scope(engine) as session:
        session.add(
            Consent(
                lead_id=lead.id,
                channel="email",
                status="pending",
                source_url="https://example.com/form",
                ip="203.0.113.7",
                user_agent="the form's browser",
                wording_version="v2",
            )
        )
    return lead


async def start(client: Client, settings, lead, **knobs) -> WorkflowHandle:
    return await client.start_workflow(
        WelcomeJourney.run,
        WelcomeInput(lead_id=lead.id, **knobs),
        id=unique_id(f"welcome-{lead.id}"),
        task_queue=settings.temporal_task_queue,
    )


def steps(messages) -> list[str]:
    """The journey's steps, the confirmation's ("confirm-<pending ledger row>") as "confirm"."""
    return [
        re.sub(r"^confirm-\d+$", "confirm", m["step"] if isinstance(m, dict) else m.step)
        for m in messages
    ]


def ledger(engine, lead_id: str) -> list[Consent]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(Consent).where(Consent.lead_id == lead_id).order_by(col(Consent.id))
            ).all()
        )


async def click_confirmation(settings, engine, handle: WorkflowHandle, mail) -> None:
    """What POST /confirm/{token} and the outbox do: verify the link, store the grant, signal."""
    signer = TokenSigner(
        settings.secret_key,
        max_age_seconds=60,
        max_age_by_kind={"confirm": settings.confirm_link_max_age_seconds()},
    )
    url = re.search(r'href="([^"]+/confirm/[^"]+)"', mail.html).group(1)
    token = signer.verify("confirm", url.rsplit("/", 1)[1])
    assert token is not None and token.workflow_id == handle.id
    record_hits(
        engine,
        [Hit(token, EMAIL_CONFIRMED, "Mozilla/5.0 (the lead's phone)", "198.51.100.4")],
        suppression_key=settings.secret_key,
    )
    await handle.signal(EMAIL_CONFIRMED, TrackingSignal(message_id=token.message_id))


# The journey -------------------------------------------------------------------------------------
async def test_confirmed_within_48h_the_welcome_follows_and_the_ledger_holds_the_proof(
    client, settings, worker, sink, make_lead, engine, time_skipping_env
):
    lead = pending_lead(make_lead, engine)
    handle = await start(client, settings, lead)
    [confirmation] = await sink.wait_for_mail(to=lead.email)
    assert confirmation.subject == CONFIRMATION_SUBJECT
    status = await wait_for_step(handle, "awaiting_confirmation")
    [pending] = ledger(engine, lead.id)
    assert [(m.step, m.status) for m in status.messages] == [
        (f"confirm-{pending.id}", "sent")
    ]  # one per sign-up

    # Opening the confirmation email (a mail privacy proxy, say) is not engagement with the welcome.
    await handle.signal(OPENED, TrackingSignal(message_id=status.messages[0].message_id))
    await time_skipping_env.sleep(timedelta(hours=30))
    assert sink.mails_to(lead.email) == [confirmation]  # 30 h later: still nothing else
    await click_confirmation(settings, engine, handle, confirmation)
    result: WelcomeResult = await handle.result()

    # Confirmed: the normal welcome, then (no open) the relance; nothing counted the confirmation's
    # open.
    assert result.outcome == "no_reaction" and not result.opened and result.relanced_by == "email"
    assert steps(result.messages) == ["confirm", "welcome", "relance_email"]
    assert result.messages[1].at - result.messages[0].at == pytest.approx(
        timedelta(hours=30), abs=timedelta(minutes=1)
    )
    mails = await sink.wait_for_mail(to=lead.email, count=3)
    assert [m.subject for m in mails] == [
        CONFIRMATION_SUBJECT,
        "Welcome to Relance, Ada!",
        "Ada, did you see your welcome guide?",
    ]
    pending, granted = ledger(engine, lead.id)
    assert (pending.status, granted.status) == ("pending", "granted")
    assert (granted.ip, granted.user_agent, granted.wording_version) == (
        "198.51.100.4",
        "Mozilla/5.0 (the lead's phone)",
        "v2",
    )
    assert (
        granted.source_url
        == f"double opt-in confirmation link, message {result.messages[0].message_id}"
    )
    with Session(engine) as session:
        kinds = session.exec(
            select(Message.step, Message.kind)
            .where(Message.lead_id == lead.id)
            .order_by(col(Message.created_at))
        ).all()
    assert [tuple(k) for k in kinds] == [
        (f"confirm-{pending.id}", "transactional"),
        ("welcome", "marketing"),
        ("relance_email", "marketing"),
    ]


async def test_never_confirmed_the_journey_ends_after_48h_without_any_marketing_email(
    client, settings, worker, sink, make_lead, engine
):
    lead = pending_lead(make_lead, engine)
    handle = await start(client, settings, lead)
    result: WelcomeResult = await handle.result()

    assert result.outcome == "not_confirmed" and "did not confirm" in result.reason
    [confirm_sent] = result.messages
    assert steps([confirm_sent]) == ["confirm"]
    description = await handle.describe()
    assert description.close_time - description.start_time == pytest.approx(
        timedelta(hours=48), abs=timedelta(minutes=1)
    )
    # The journey is over: every send it made was accepted by the sink before its activity ended.
    assert [m.subject for m in sink.mails_to(lead.email)] == [CONFIRMATION_SUBJECT]
    assert [c.status for c in ledger(engine, lead.id)] == ["pending"]  # stays pending: no consent


async def test_an_unsubscribe_while_waiting_for_the_confirmation_ends_the_journey(
    client, settings, worker, sink, make_lead, engine
):
    lead = pending_lead(make_lead, engine)
    handle = await start(client, settings, lead)
    status = await wait_for_step(handle, "awaiting_confirmation")
    await handle.signal(UNSUBSCRIBED, TrackingSignal(message_id=status.messages[0].message_id))
    result = await handle.result()
    assert result.outcome == "unsubscribed" and steps(result.messages) == ["confirm"]


async def test_the_confirmation_ignores_the_send_window_the_welcome_waits_for_it(
    client, settings, worker, sink, make_lead, engine, time_skipping_env
):
    """Transactional: a window closed all of today does not hold the confirmation email."""
    lead = pending_lead(make_lead, engine)
    today = (
        (await time_skipping_env.get_current_time()).astimezone(UTC).isoweekday()
    )  # the server's clock
    window = SendWindow(days=[d for d in range(1, 8) if d != today], start="00:00", end="23:59")
    handle = await start(client, settings, lead, send_window=window)
    [confirmation] = await sink.wait_for_mail(to=lead.email)
    assert confirmation.subject == CONFIRMATION_SUBJECT
    await wait_for_step(handle, "awaiting_confirmation")
    await click_confirmation(settings, engine, handle, confirmation)
    for _ in range(200):  # the Step search attribute, as the Temporal UI shows it
        step = (await handle.describe()).typed_search_attributes.get(sa.STEP)
        if step == "waiting_for_send_window":
            break
        await asyncio.sleep(0.05)
    assert step == "waiting_for_send_window"
    assert [m.subject for m in sink.mails_to(lead.email)] == [
        CONFIRMATION_SUBJECT
    ]  # the welcome is marketing: it waits
    result = await handle.result()  # runs to its end (time skips), so no activity is left running
    assert steps(result.messages)[:2] == ["confirm", "welcome"]
    assert result.messages[1].at.astimezone(UTC).isoweekday() != today


def test_other_journeys_send_no_marketing_while_the_consent_is_pending(engine, make_lead, settings):
    """Every send's consent gate needs "granted": pending is not consent, for any journey."""
    from activities.sending import SendLedger
    from relance.contracts.sending import SendRequest

    lead = pending_lead(make_lead, engine)
    gate = SendLedger(engine, suppression_key=settings.secret_key)
    cart = SendRequest(
        lead.id,
        workflow_id=unique_id("cart"),
        journey="cart",
        step="reminder_1",
        template="cart_reminder_1",
    )
    claim = gate.claim(cart, "email")
    assert claim.message is None and claim.result.status == "skipped"
    assert claim.result.reason == "no marketing consent for email"


# Over HTTP, with the real API, outbox and dev server ---------------------------------------------
async def sign_up_pending(live: LiveStack) -> tuple[str, str]:
    email = new_email()
    response = await live.http.post("/leads", json=sign_up_body(email, journeys=["welcome"]))
    assert response.status_code == 201, response.text
    lead = response.json()["lead"]
    assert lead["consents"]["email"] == "pending"
    return lead["id"], email.lower()


async def test_over_http_the_link_confirms_once_and_the_consents_show_the_proof(
    double_opt_in: LiveStack,
):
    live = double_opt_in
    lead_id, email = await sign_up_pending(live)
    state = await journey_when(
        live, lead_id, lambda s: s["step"] == "awaiting_confirmation" and s["messages"]
    )
    assert [m["template"] for m in state["messages"]] == ["welcome_confirm"]

    url = await confirm(live, email)
    again = await live.public.post(url, headers={"user-agent": "the lead, pressing again"})
    assert again.status_code == 200 and "confirmed already" in again.text
    scanned = await live.public.get(url, headers={"user-agent": "a link scanner"})
    assert scanned.status_code == 200 and "confirmed already" in scanned.text
    await welcome_arrives(live, email)

    consents = (await live.http.get(f"/leads/{lead_id}/consents")).json()
    assert [c["status"] for c in consents] == ["pending", "granted"]  # twice clicked, granted once
    assert (
        consents[0]["source_url"] == "https://example.com/newsletter"
        and consents[0]["ip"] == "203.0.113.9"
    )
    assert (
        consents[1]["user_agent"] == "Mozilla/5.0 (the lead)" and consents[1]["ip"] == "127.0.0.1"
    )
    assert consents[1]["wording_version"] == "2026-01"
    assert (await live.http.get(f"/leads/{lead_id}")).json()["consents"]["email"] == "granted"
    with Session(live.engine) as session:
        events = session.exec(select(TrackingEvent).where(TrackingEvent.lead_id == lead_id)).all()
    assert [e.kind for e in events] == ["email_confirmed"]  # one signal for two clicks

    # A lead who confirmed is not asked again when signing up again.
    response = await live.http.post("/leads", json=sign_up_body(email))
    assert response.status_code == 200 and response.json()["lead"]["consents"]["email"] == "granted"


async def test_a_pending_sign_up_without_the_welcome_journey_says_who_will_confirm_it(
    double_opt_in: LiveStack,
):
    live = double_opt_in
    response = await live.http.post(
        "/leads", json=sign_up_body(new_email(), journeys=["nurturing"])
    )
    assert response.status_code == 201 and response.json()["lead"]["consents"]["email"] == "pending"
    [note] = response.json()["notes"]
    assert "confirmation email is the welcome journey's first step" in note
    with_welcome = await live.http.post(
        "/leads", json=sign_up_body(new_email(), journeys=["welcome"])
    )
    assert with_welcome.json()["notes"] == []


async def welcome_arrives(live: LiveStack, email: str):
    [mail] = await live.sink.wait_for_mail(to=email, subject_contains="Welcome to")
    return mail


async def test_forged_tampered_or_expired_links_confirm_nothing_and_signal_nothing(
    double_opt_in: LiveStack,
):
    live = double_opt_in
    lead_id, email = await sign_up_pending(live)
    other_id, other_email = await sign_up_pending(live)
    [mail] = await live.sink.wait_for_mail(to=email, subject_contains=CONFIRMATION_SUBJECT)
    url = confirm_link(mail)
    base, token = url.rsplit("/", 1)
    secret = live.settings.secret_key
    click_token = re.findall(r"/t/o/([^\"]+)\"", mail.html)[
        0
    ]  # the pixel: an open token, not a confirm token

    real = URLSafeTimedSerializer(secret, salt="relance.confirm")
    expired_at = datetime.now(UTC) - timedelta(
        seconds=live.settings.confirm_link_max_age_seconds() + 60
    )

    class SignedLongAgo(TimestampSigner):
        def get_timestamp(self) -> int:  # older than a confirmation link may be
            return int(expired_at.timestamp())

    payload = real.loads(token)
    bad = [
        token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"),  # signature
        real.dumps({**payload, "l": other_id, "w": f"welcome-{other_id}"}).replace(".", "..", 1),
        URLSafeTimedSerializer("guessed-secret", salt="relance.confirm").dumps(
            {**payload, "l": other_id}
        ),
        URLSafeTimedSerializer(secret, salt="relance.click").dumps(payload),  # another kind of link
        click_token,
        URLSafeTimedSerializer(secret, salt="relance.confirm", signer=SignedLongAgo).dumps(
            payload
        ),  # expired
        "not-a-token",
        "x" * 3000,
    ]
    for value in bad:
        for method in ("GET", "POST"):  # the page and its button
            response = await live.public.request(method, f"{base}/{value}")
            assert response.status_code == 404 and "not valid" in response.text, (method, value)
    # A confirmation is stored before it is answered: a wrongly kept one would be in the outbox
    # now. None is, so none can reach a journey or grant a consent.
    assert stored_hits(live.engine, [lead_id, other_id]) == []
    for lead in (lead_id, other_id):
        assert [c["status"] for c in (await live.http.get(f"/leads/{lead}/consents")).json()] == [
            "pending"
        ]
        state = await journey_when(live, lead, lambda s: s["step"] == "awaiting_confirmation")
        assert state["status"] == "RUNNING"
    assert live.sink.mails_to(email) == [mail] and len(live.sink.mails_to(other_email)) == 1

    # A valid link after the lead unsubscribed (or was erased) confirms nothing either.
    unsubscribe = re.search(r"<(http[^>]+/u/[^>]+)>", mail.message["List-Unsubscribe"]).group(1)
    assert (
        await live.public.post(unsubscribe, content=b"List-Unsubscribe=One-Click")
    ).status_code == 200
    for method in ("GET", "POST"):
        response = await live.public.request(method, url)
        assert response.status_code == 409 and "Nothing to confirm" in response.text, method
    assert [c["status"] for c in (await live.http.get(f"/leads/{lead_id}/consents")).json()] == [
        "pending",
        "withdrawn",
    ]
    state = await journey_when(live, lead_id, lambda s: s["status"] == "COMPLETED")
    assert state["result"]["outcome"] == "unsubscribed" and steps(state["messages"]) == ["confirm"]
    assert (await live.http.delete(f"/leads/{other_id}")).status_code == 200
    [other_mail] = live.sink.mails_to(other_email)
    assert (await live.public.get(confirm_link(other_mail))).status_code == 404
    assert (await live.public.post(confirm_link(other_mail))).status_code == 404


async def test_with_double_opt_in_off_the_welcome_goes_out_at_once(live: LiveStack):
    assert live.settings.double_opt_in is False  # the shared test settings
    email = new_email()
    response = await live.http.post("/leads", json=sign_up_body(email, journeys=["welcome"]))
    assert response.json()["lead"]["consents"]["email"] == "granted"
    [mail] = await live.sink.wait_for_mail(to=email.lower())
    assert mail.subject == "Welcome to Relance, Grace!" and "/confirm/" not in mail.html


async def test_an_unsubscribed_address_stays_suppressed_until_it_confirms_again(
    double_opt_in: LiveStack,
):
    """Re-signing up after an unsubscribe needs the confirmation too: someone else may have typed
    the address. The suppression list keeps it until the owner clicks."""
    from relance.domain.suppression import suppression_of

    live = double_opt_in
    lead_id, email = await sign_up_pending(live)
    url = await confirm(live, email)
    welcome = await welcome_arrives(live, email)
    unsubscribe = re.search(r"<(http[^>]+/u/[^>]+)>", welcome.message["List-Unsubscribe"]).group(1)
    assert (
        await live.public.post(unsubscribe, content=b"List-Unsubscribe=One-Click")
    ).status_code == 200

    again = await live.http.post("/leads", json=sign_up_body(email))
    assert again.json()["lead"]["consents"]["email"] == "pending"
    with Session(live.engine) as session:
        assert suppression_of(session, live.settings.secret_key, email) is not None
    response = await press_confirm(live, url)  # the first confirmation email's link, still valid
    assert response.status_code == 200 and "your subscription is confirmed" in response.text
    with Session(live.engine) as session:
        assert suppression_of(session, live.settings.secret_key, email) is None
    statuses = [c["status"] for c in (await live.http.get(f"/leads/{lead_id}/consents")).json()]
    assert statuses == ["pending", "granted", "withdrawn", "pending", "granted"]


async def test_a_lead_who_let_the_confirmation_lapse_gets_a_new_one_when_signing_up_again(
    double_opt_in: LiveStack, monkeypatch: pytest.MonkeyPatch
):
    live = double_opt_in
    monkeypatch.setattr(
        live.settings, "double_opt_in_hours", 1 / 3600
    )  # this journey waits one second
    lead_id, email = await sign_up_pending(live)
    state = await journey_when(live, lead_id, lambda s: s["status"] == "COMPLETED")
    assert state["result"]["outcome"] == "not_confirmed"
    [first] = live.sink.mails_to(email)
    assert first.subject == CONFIRMATION_SUBJECT

    monkeypatch.setattr(live.settings, "double_opt_in_hours", 48.0)
    response = await live.http.post("/leads", json=sign_up_body(email, journeys=["welcome"]))
    assert response.status_code == 200 and response.json()["enrollments"][0]["status"] == "started"
    second = (
        await live.sink.wait_for_mail(to=email, subject_contains=CONFIRMATION_SUBJECT, count=2)
    )[1]
    assert confirm_link(second) != confirm_link(first)
    assert (await press_confirm(live, confirm_link(second))).status_code == 200
    mails = await live.sink.wait_for_mail(
        to=email, count=3
    )  # then the welcome (for a known contact: signed up before)
    assert mails[2].subject == "Grace, more from Relance for you"
    assert [c["status"] for c in (await live.http.get(f"/leads/{lead_id}/consents")).json()] == [
        "pending",
        "pending",
        "granted",
    ]

    # A welcome that ran its course is still once per lead.
    again = await live.http.post(f"/leads/{lead_id}/journeys/welcome")
    assert again.status_code == 409 and "already in the welcome journey" in again.json()["detail"]
