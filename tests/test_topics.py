"""Topics: what marketing messages are about, declared in config/topics.yaml, and the send
ledger's gates that follow the lead's own choices (a topic off, a pause, the weekly pace).

A lead who turned "offers" off gets no cart reminder but still gets the newsletter; a
transactional message passes whatever the topics say; the channel's own marketing consent still
applies. Tested on the send ledger itself (the gate every journey's send goes through), with the
journeys' labels as the catalogue declares them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, func
from sqlmodel import Session, col, select

from activities.frequency import FrequencyCap
from activities.sending import SendLedger
from api.main import create_app
from api.privacy import export_rows
from relance.contracts import catalogue
from relance.contracts.sending import SendRequest
from relance.contracts.skips import SkipReason
from relance.dev.seeding import make_lead_factory, unique_id
from relance.domain.consent import TOPIC_CHANNEL, topic_consents
from relance.domain.models import Consent, Lead, Message
from relance.domain.settings import Settings
from relance.domain.topics import TopicsError, topics_from
from relance.services import preferences
from relance.services.erasure import erase_lead
from relance.services.journeys import check_topics
from worker import build_worker
from workflows.premium import PremiumInput, PremiumOfferJourney
from workflows.welcome import WelcomeInput, WelcomeJourney

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
TOPICS = topics_from(Path(__file__).resolve().parents[1] / "config" / "topics.yaml")


def request(lead_id: str, journey: str, step: str = "s", **extra) -> SendRequest:
    return SendRequest(
        lead_id=lead_id,
        workflow_id=unique_id(journey),
        journey=journey,
        step=step,
        template="welcome_new",
        **extra,
    )


def choose(engine, lead_id: str, **choices) -> preferences.Preferences:
    with Session(engine) as session:
        lead = session.get(Lead, lead_id)
        return preferences.save(
            session,
            lead,
            TOPICS,
            preferences.Change(**choices),
            preferences.Evidence("preference page, message m-1", "198.51.100.4", "Firefox"),
            now=NOW,
        )


def claim(ledger: SendLedger, req: SendRequest, when: datetime = NOW):
    return ledger.claim(req, "email", now=when)


# The topics file -------------------------------------------------------------------------------
def test_the_catalogue_gives_each_marketing_journey_a_topic_the_file_declares():
    assert catalogue.topic_of("cart") == "offers"
    assert catalogue.topic_of("reengage") == "newsletter"
    assert catalogue.topic_of("event") == "events"
    assert catalogue.topic_of("a-journey-written-as-data") == catalogue.DEFAULT_TOPIC
    TOPICS.check_named(catalogue.topics_named(), "the catalogue")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("topics: [{key: News, label: N, default: on}]", "topics.0.key"),
        ("topics: [{key: news, label: N}]", "topics.0.default"),
        (
            "topics: [{key: a, label: A, default: on}, {key: a, label: B, default: off}]",
            "a more than once",
        ),
        ("topics: [{key: a, label: A, default: on, colour: red}]", "topics.0.colour"),
        ("- just a list", "expected a mapping"),
        ("topics: [", "not valid YAML"),
    ],
)
def test_a_bad_topics_file_stops_the_start_with_the_place_of_the_mistake(
    tmp_path: Path, settings: Settings, text: str, says: str
):
    path = tmp_path / "topics.yaml"
    path.write_text(text)
    with pytest.raises(TopicsError, match=says) as raised:
        create_app(settings.model_copy(update={"topics_file": path}))
    assert str(path) in str(raised.value)


def test_a_topics_file_without_a_topic_a_journey_sends_on_stops_the_start(
    tmp_path: Path, settings: Settings
):
    path = tmp_path / "topics.yaml"
    path.write_text("topics: [{key: newsletter, label: News, default: on}]\n")
    with pytest.raises(TopicsError, match="events, offers, product"):
        check_topics(settings.model_copy(update={"topics_file": path}))


# The ledger's gates ------------------------------------------------------------------------------
def test_a_lead_who_turned_offers_off_gets_the_newsletter_but_no_offer(engine):
    lead = make_lead_factory(engine)()
    choose(engine, lead.id, topics={"offers": False})
    ledger = SendLedger(engine)

    cart = request(lead.id, "cart")
    offer = claim(ledger, cart)
    assert offer.message is None and offer.result.status == "skipped"
    assert offer.result.skip == SkipReason.NO_TOPIC_CONSENT
    assert offer.result.reason == "the lead turned this topic off: offers"
    # A send naming its own topic is gated on that one (a broadcast's, say).
    named = claim(ledger, request(lead.id, "reengage", topic="offers"))
    assert named.result.skip == SkipReason.NO_TOPIC_CONSENT

    newsletter = claim(ledger, request(lead.id, "reengage"))
    assert newsletter.message is not None and newsletter.result is None
    # A retried send finds its row skipped: the same kind, from the row.
    again = claim(ledger, cart)
    assert again.result.already_sent and again.result.skip == SkipReason.NO_TOPIC_CONSENT
    with Session(engine) as session:
        rows = session.exec(
            select(Message.journey, Message.topic, Message.status).where(Message.lead_id == lead.id)
        ).all()
    assert sorted(rows) == [
        ("cart", "offers", "skipped"),
        ("reengage", "newsletter", "sending"),
        ("reengage", "offers", "skipped"),
    ]


def test_a_transactional_message_has_no_topic_gate_and_the_channel_consent_still_applies(engine):
    lead = make_lead_factory(engine)()
    choose(engine, lead.id, topics={k: False for k in TOPICS.keys})
    ledger = SendLedger(engine)
    receipt = claim(ledger, request(lead.id, "cart", kind="transactional"))
    assert receipt.message is not None and receipt.message.topic is None

    no_email = make_lead_factory(engine)(consents=())
    refused = claim(ledger, request(no_email.id, "reengage"))
    assert refused.result.skip == SkipReason.NO_CONSENT  # topic on by default, consent missing


def test_a_topic_off_by_default_is_sent_only_once_the_lead_turns_it_on(engine, tmp_path: Path):
    path = tmp_path / "topics.yaml"
    path.write_text(
        "topics:\n"
        "  - {key: newsletter, label: News, default: on}\n"
        "  - {key: offers, label: Offers, default: off}\n"
    )
    ledger = SendLedger(engine, topics=lambda: topics_from(path))
    lead = make_lead_factory(engine)()
    assert claim(ledger, request(lead.id, "cart")).result.skip == SkipReason.NO_TOPIC_CONSENT
    with Session(engine) as session:
        preferences.save(
            session,
            session.get(Lead, lead.id),
            topics_from(path),
            preferences.Change(topics={"offers": True}),
            preferences.Evidence("api"),
        )
    assert claim(ledger, request(lead.id, "cart")).message is not None


def test_the_lead_s_choices_are_in_the_consent_ledger_with_their_evidence(engine):
    lead = make_lead_factory(engine)()
    choose(engine, lead.id, topics={"offers": False, "events": True})
    choose(engine, lead.id, topics={"offers": False, "events": True})  # saved again: no new row
    choose(engine, lead.id, topics={"offers": True})
    with Session(engine) as session:
        rows = session.exec(
            select(Consent)
            .where(Consent.lead_id == lead.id, Consent.channel == TOPIC_CHANNEL)
            .order_by(col(Consent.id))
        ).all()
        assert [(r.purpose, r.status) for r in rows] == [
            ("topic:offers", "withdrawn"),
            ("topic:events", "granted"),
            ("topic:offers", "granted"),
        ]
        assert {(r.source_url, r.ip, r.user_agent) for r in rows} == {
            ("preference page, message m-1", "198.51.100.4", "Firefox")
        }
        assert topic_consents(session, lead.id, TOPICS) == dict.fromkeys(TOPICS.keys, True)
        # The channel's own consent is untouched by topic rows.
        email = session.exec(
            select(Consent.status).where(Consent.lead_id == lead.id, Consent.channel == "email")
        ).all()
        assert email == ["granted"]


def test_a_pause_of_n_weeks_skips_marketing_until_it_ends(engine):
    lead = make_lead_factory(engine)()
    chosen = choose(engine, lead.id, pause_weeks=2)
    assert chosen.paused_until == NOW + timedelta(weeks=2)
    ledger = SendLedger(engine)
    held = claim(ledger, request(lead.id, "reengage"), NOW + timedelta(days=13))
    assert held.result.skip == SkipReason.PAUSED
    assert held.result.reason == "the lead paused marketing messages until 2026-12-08 10:00 UTC"
    assert claim(ledger, request(lead.id, "cart", kind="transactional")).message is not None
    after = claim(ledger, request(lead.id, "reengage"), NOW + timedelta(weeks=2, seconds=1))
    assert after.message is not None
    # Choosing a pace again ends a pause at once.
    choose(engine, lead.id, pause_weeks=4)
    choose(engine, lead.id, frequency="as_sent", pause_weeks=0)
    assert claim(ledger, request(lead.id, "reengage"), NOW + timedelta(days=1)).message is not None


def test_the_weekly_pace_allows_one_marketing_message_per_channel_per_week(engine):
    lead = make_lead_factory(engine)()
    choose(engine, lead.id, frequency="weekly")
    ledger = SendLedger(engine, FrequencyCap(messages=3, days=7))
    first = claim(ledger, request(lead.id, "reengage"))
    assert first.message is not None
    second = claim(ledger, request(lead.id, "cart", over_cap="defer"), NOW + timedelta(days=2))
    assert second.result.status == "deferred"
    assert second.result.retry_at == NOW + timedelta(days=7)
    assert "the lead's weekly pace, 1 email messages per 7 days" in second.result.reason
    skipped = claim(ledger, request(lead.id, "cart"), NOW + timedelta(days=3))
    assert skipped.result.skip == SkipReason.FREQUENCY_CAP
    # A reminder the lead asked for is counted, never held; a week later the next one goes.
    assert claim(ledger, request(lead.id, "event", over_cap="exempt")).message is not None
    later = claim(ledger, request(lead.id, "cart"), NOW + timedelta(days=7, seconds=1))
    assert later.message is not None
    # Without the weekly pace the global cap (3 a week) alone holds.
    other = make_lead_factory(engine)()
    assert all(
        claim(ledger, request(other.id, "reengage"), NOW + timedelta(hours=h)).message
        for h in range(3)
    )


def test_the_gates_read_the_consent_ledger_once(engine):
    """The channel's consent and the topic's choice come from one query."""
    lead = make_lead_factory(engine)()
    choose(engine, lead.id, topics={"offers": False})
    reads: list[str] = []

    def count(conn, cursor, statement, *args):
        if "FROM consents" in statement:
            reads.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        claim(SendLedger(engine), request(lead.id, "reengage"))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(reads) == 1


# Export and erasure ---------------------------------------------------------------------------
def test_an_export_holds_the_topic_choices_and_an_erasure_removes_them(engine):
    lead = make_lead_factory(engine)()
    choose(engine, lead.id, topics={"offers": False}, frequency="weekly", pause_weeks=1)
    with Session(engine) as session:
        profile, data = export_rows(session=session, lead_id=lead.id, actor="test")
    assert profile["marketing_frequency"] == "weekly" and profile["marketing_paused_until"]
    assert {(r["purpose"], r["status"]) for r in data["consents"]} >= {
        ("topic:offers", "withdrawn"),
        ("marketing", "granted"),
    }
    erase_lead(engine, lead.id, actor="test", reason="asked", hash_key="k")
    with Session(engine) as session:
        left = session.exec(
            select(func.count()).select_from(Consent).where(Consent.lead_id == lead.id)
        ).one()
    assert left == 0


# In journeys ------------------------------------------------------------------------------------
async def test_journeys_follow_the_lead_s_topics(client, settings, engine, sink):
    """Product off: the premium offer (a product message) is not sent, and says why; the welcome
    (the newsletter) still goes out."""
    lead = make_lead_factory(engine)()
    choose(engine, lead.id, topics={"product": False})
    queue = settings.model_copy(update={"temporal_task_queue": unique_id("topics")})
    async with build_worker(client, queue, engine):
        premium = await client.execute_workflow(
            PremiumOfferJourney.run,
            PremiumInput(lead.id),
            id=unique_id(f"premium-{lead.id}"),
            task_queue=queue.temporal_task_queue,
        )
        welcome = await client.start_workflow(
            WelcomeJourney.run,
            WelcomeInput(lead_id=lead.id, relance_after_hours=24 * 30, engagement_window_days=0.5),
            id=unique_id(f"welcome-{lead.id}"),
            task_queue=queue.temporal_task_queue,
        )
        [mail] = await sink.wait_for_mail(to=lead.email, subject_contains="Relance")
        await welcome.terminate("the test saw its email")
    assert premium.status == "skipped"
    assert premium.reason == "the lead turned this topic off: product"
    assert "/p/" in mail.text  # and it carries the preference page's link
