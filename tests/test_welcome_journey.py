"""The welcome journey on the time-skipping server, with the real activities, database and mail
sink."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlmodel import Session, select
from temporalio.client import Client, WorkflowHandle

from relance.contracts.signals import CLICKED, OPENED, TrackingSignal
from relance.dev.devsink import DevSink
from relance.dev.seeding import unique_id
from relance.domain.models import Lead, Message, ScoreEvent
from worker import build_worker
from workflows.welcome import WelcomeInput, WelcomeJourney, WelcomeResult


async def start(client: Client, settings, lead, **knobs) -> WorkflowHandle:
    return await client.start_workflow(
        WelcomeJourney.run,
        WelcomeInput(lead_id=lead.id, **knobs),
        id=unique_id(f"welcome-{lead.id}"),
        task_queue=settings.temporal_task_queue,
    )


async def wait_for_step(handle: WorkflowHandle, step: str, timeout: float = 10.0):
    """Poll the status query until the journey reaches ``step`` (a send takes a moment)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (status := await handle.query(WelcomeJourney.status)).step != step:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"journey still at {status.step!r}, expected {step!r}")
        await asyncio.sleep(0.02)
    return status


async def test_opened_within_48h_means_no_relance(
    client, settings, worker, sink: DevSink, make_lead
):
    lead = make_lead()
    handle = await start(client, settings, lead)
    [welcome] = await sink.wait_for_mail(to=lead.email)
    assert welcome.subject == "Welcome to Relance, Ada!"
    status = await wait_for_step(handle, "waiting_for_open")
    assert not status.opened

    await handle.signal(OPENED, TrackingSignal(message_id=status.messages[0].message_id))
    result: WelcomeResult = await handle.result()

    assert result.outcome == "opened" and result.relanced_by is None
    assert [m.step for m in result.messages] == ["welcome"]
    assert len(sink.mails_to(lead.email)) == 1


async def test_never_opened_means_relance_after_exactly_48h(
    client, settings, worker, sink: DevSink, make_lead
):
    lead = make_lead()
    handle = await start(client, settings, lead)
    result: WelcomeResult = await handle.result()

    assert result.outcome == "no_reaction" and result.relanced_by == "email"
    welcome, relance = result.messages
    assert relance.at - welcome.at == pytest.approx(timedelta(hours=48), abs=timedelta(seconds=5))
    mails = await sink.wait_for_mail(to=lead.email, count=2)
    assert [m.subject for m in mails] == [
        "Welcome to Relance, Ada!",
        "Ada, did you see your welcome guide?",
    ]


async def test_relance_goes_by_sms_when_the_lead_has_a_phone_and_sms_consent(
    client, settings, worker, sink, make_lead
):
    lead = make_lead(consents=("email", "sms"), phone="+33612345678")
    result = await (await start(client, settings, lead)).result()

    assert result.relanced_by == "sms"
    [sms] = [
        s
        for s in await sink.wait_for_sms(to="+33612345678")
        if s.reference == result.messages[1].message_id
    ]
    assert "welcome guide" in sms.body and f"{settings.public_base_url}/t/c/" in sms.body
    assert len(sink.mails_to(lead.email)) == 1  # the welcome only


async def test_phone_without_sms_consent_gets_the_email_relance(
    client, settings, worker, sink, make_lead
):
    lead = make_lead(consents=("email",), phone="+33698765432")
    result = await (await start(client, settings, lead)).result()
    assert result.relanced_by == "email"
    assert not [s for s in sink.sms if s.to == "+33698765432"]


async def test_click_raises_the_score_once_per_message(
    client, settings, worker, sink, make_lead, engine
):
    lead = make_lead()
    handle = await start(client, settings, lead)
    message_id = (await wait_for_step(handle, "waiting_for_open")).messages[0].message_id

    for _ in range(3):  # a person and two link scanners
        await handle.signal(
            CLICKED,
            TrackingSignal(message_id=message_id, url="https://example.com/guides/first-journey"),
        )
    result = await handle.result()

    assert result.outcome == "clicked" and result.relanced_by is None
    assert result.score == settings.scoring_rules().events["email_clicked"]
    with Session(engine) as session:
        assert session.get(Lead, lead.id).score == settings.scoring_rules().events["email_clicked"]
        [event] = session.exec(select(ScoreEvent).where(ScoreEvent.lead_id == lead.id)).all()
        assert (
            event.points == settings.scoring_rules().events["email_clicked"]
            and "welcome" in event.reason
        )


async def test_no_consent_means_nothing_is_sent(client, settings, worker, sink, make_lead, engine):
    lead = make_lead(consents=())
    result = await (await start(client, settings, lead)).result()

    assert result.outcome == "not_sent" and result.reason == "no marketing consent for email"
    assert result.messages == []
    assert sink.mails_to(lead.email) == []
    with Session(engine) as session:
        assert session.exec(select(Message).where(Message.lead_id == lead.id)).all() == []


async def test_a_known_contact_gets_the_other_content_email(
    client, settings, worker, sink, make_lead
):
    lead = make_lead(known=True)
    handle = await start(client, settings, lead)
    [mail] = await sink.wait_for_mail(to=lead.email)
    assert mail.subject == "Ada, more from Relance for you"
    assert (await wait_for_step(handle, "waiting_for_open")).messages[0].template == "welcome_known"
    await handle.terminate("test over")


async def test_the_email_is_real_mime_with_tracking_and_unsubscribe_headers(
    client, settings, worker, sink, make_lead
):
    lead = make_lead()
    handle = await start(client, settings, lead)
    [mail] = await sink.wait_for_mail(to=lead.email)
    # Terminate only once the send activity has finished: the time-skipping server never
    # releases the time held by an activity whose journey was terminated under it.
    await wait_for_step(handle, "waiting_for_open")
    await handle.terminate("test over")

    base = settings.public_base_url
    assert mail.message.get_content_type() == "multipart/alternative"
    assert f'src="{base}/t/o/' in mail.html
    assert f'href="{base}/t/c/' in mail.html and 'href="https://example.com' not in mail.html
    assert f"{base}/t/c/" in mail.text and "https://example.com" not in mail.text
    assert mail.message["List-Unsubscribe"].startswith(f"<{base}/u/")
    assert "mailto:" in mail.message["List-Unsubscribe"]
    assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail.message["Message-ID"].endswith(f"@{settings.mail_domain}>")


async def test_with_no_unsubscribe_mailbox_the_email_offers_only_the_one_click_link(
    settings, engine, sink, make_lead
):
    """Relance reads no mailbox: an operator without one sets RELANCE_UNSUBSCRIBE_MAILTO empty, and
    no email then offers an address where an unsubscribe request would go unread."""
    from temporalio.testing import ActivityEnvironment

    from activities import build_activities
    from relance.contracts.sending import SendRequest

    no_mailbox = settings.model_copy(update={"unsubscribe_mailto": ""})
    send_email = next(a for a in build_activities(no_mailbox, engine) if a.__name__ == "send_email")
    lead = make_lead()
    request = SendRequest(
        lead.id,
        workflow_id=unique_id("welcome"),
        journey="welcome",
        step="welcome",
        template="welcome_new",
    )
    assert ActivityEnvironment().run(send_email, request).status == "sent"
    [mail] = await sink.wait_for_mail(to=lead.email)
    header = mail.message["List-Unsubscribe"]
    assert header.startswith(f"<{settings.public_base_url}/u/") and header.endswith(">")
    assert "mailto:" not in header and "," not in header


async def test_a_retried_send_does_not_send_twice(settings, engine, sink, make_lead):
    """Run the send activity twice with the same key, as a Temporal retry would."""
    from temporalio.testing import ActivityEnvironment

    from activities import build_activities
    from relance.contracts.sending import SendRequest

    run = ActivityEnvironment().run
    send_email = next(a for a in build_activities(settings, engine) if a.__name__ == "send_email")
    lead = make_lead()
    request = SendRequest(
        lead.id,
        workflow_id=unique_id("welcome"),
        journey="welcome",
        step="welcome",
        template="welcome_new",
    )
    first = run(send_email, request)
    second = run(send_email, request)

    assert first.status == "sent" and second.already_sent and second.message_id == first.message_id
    await sink.wait_for_mail(to=lead.email)
    assert len(sink.mails_to(lead.email)) == 1


async def test_consent_withdrawn_during_the_wait_blocks_the_relance(
    client, settings, worker, sink, make_lead, engine
):
    """No signal reaches the journey here: the send activity itself refuses."""
    from relance.domain.db import session_scope
    from relance.domain.models import Consent

    lead = make_lead()
    handle = await start(client, settings, lead)
    await wait_for_step(handle, "waiting_for_open")
    with session_scope(engine) as session:
        session.add(
            Consent(
                lead_id=lead.id, channel="email", status="withdrawn", source_url="support ticket"
            )
        )
    result = await handle.result()

    assert result.relanced_by is None
    assert [(m.step, m.status, m.reason) for m in result.messages] == [
        ("welcome", "sent", ""),
        ("relance_email", "skipped", "no marketing consent for email"),
    ]
    assert len(sink.mails_to(lead.email)) == 1


async def test_unsubscribe_during_the_wait_ends_the_journey_at_once(
    client, settings, worker, sink, make_lead
):
    from relance.contracts.signals import UNSUBSCRIBED

    lead = make_lead()
    handle = await start(client, settings, lead)
    status = await wait_for_step(handle, "waiting_for_open")
    await handle.signal(UNSUBSCRIBED, TrackingSignal(message_id=status.messages[0].message_id))
    result = await handle.result()
    assert result.outcome == "unsubscribed" and [m.step for m in result.messages] == ["welcome"]


async def test_without_an_sms_provider_the_relance_falls_back_to_email(
    client, worker, settings, engine, sink, make_lead
):
    no_sms = settings.model_copy(
        update={"sms_provider_url": "", "temporal_task_queue": unique_id("no-sms")}
    )
    lead = make_lead(consents=("email", "sms"), phone="+33611223344")
    async with build_worker(client, no_sms, engine):
        handle = await client.start_workflow(
            WelcomeJourney.run,
            WelcomeInput(lead_id=lead.id),
            id=unique_id(f"welcome-{lead.id}"),
            task_queue=no_sms.temporal_task_queue,
        )
        result = await handle.result()
    assert result.relanced_by == "email"
    assert [(m.step, m.status) for m in result.messages] == [
        ("welcome", "sent"),
        ("relance_sms", "skipped"),
        ("relance_email", "sent"),
    ]
    assert result.messages[1].reason == "no SMS provider is configured"


async def test_a_worker_that_keeps_no_journey_in_memory_still_carries_them_through(
    client, settings, engine, sink, make_lead
):
    """RELANCE_WORKER_MAX_CACHED_WORKFLOWS bounds the worker's memory: a journey out of the cache
    replays its history at its next timer or signal. With a cache of 0 every step replays: the
    48 h relance, and an open that ends another journey, still happen exactly once."""
    no_cache = settings.model_copy(update={"worker_max_cached_workflows": 0})
    async with build_worker(client, no_cache, engine):
        waiting, opening = make_lead(), make_lead()
        first, second = (
            await start(client, settings, waiting),
            await start(client, settings, opening),
        )
        message_id = (await wait_for_step(second, "waiting_for_open")).messages[0].message_id
        await second.signal(OPENED, TrackingSignal(message_id=message_id))
        relanced, opened = await first.result(), await second.result()

    assert relanced.outcome == "no_reaction" and relanced.relanced_by == "email"
    assert opened.outcome == "opened" and opened.relanced_by is None
    assert [m.subject for m in await sink.wait_for_mail(to=waiting.email, count=2)] == [
        "Welcome to Relance, Ada!",
        "Ada, did you see your welcome guide?",
    ]
    assert len(sink.mails_to(waiting.email)) == 2 and len(sink.mails_to(opening.email)) == 1
