"""A broadcast's wave claims its recipients together (one transaction, every gate read for all
of them at once): each recipient must be decided exactly as a single send decides it — no
consent, the topic off, paused, suppressed, excluded, over the frequency cap, already sent — on
SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from activities.frequency import FrequencyCap
from activities.sending import Delivery, SendLedger
from relance.contracts.sending import SendFailure, SendRequest
from relance.dev.seeding import make_lead_factory
from relance.domain.consent import TOPIC_CHANNEL, topic_purpose
from relance.domain.db import make_engine, session_scope
from relance.domain.journey_rules import JourneyRules
from relance.domain.lists import add_member
from relance.domain.models import Consent, Lead, Message
from relance.domain.suppression import suppress
from relance.services import migrate
from tests.test_postgres import postgres_url  # noqa: F401  (the throwaway PostgreSQL cluster fixture)

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
KEY = "test-suppression-key"
KINDS = (
    "consented",
    "no consent",
    "topic off",
    "paused",
    "suppressed",
    "excluded",
    "capped",
    "weekly pace",
    "already sent",
)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def engine(request, tmp_path_factory):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('ledger-batch') / 'ledger.db'}"
        migrate.upgrade(url)
    else:
        url = request.getfixturevalue("postgres_url")
    return make_engine(url)


def ledger(engine) -> SendLedger:
    return SendLedger(
        engine,
        FrequencyCap(messages=2, days=7),
        suppression_key=KEY,
        rules=lambda journey: JourneyRules(exclude=("customer",)),
    )


def request_for(lead_id: str, workflow_id: str) -> SendRequest:
    return SendRequest(
        lead_id=lead_id,
        workflow_id=workflow_id,
        journey="broadcast",
        step=f"lead-{lead_id}",
        template="nurture_welcome_newsletter",
        kind="marketing",
        over_cap="skip",
        topic="newsletter",
        exclude=("list:do-not-mail",),
    )


def one_of_each(engine, workflow_id: str) -> dict[str, str]:
    """A lead of each kind: kind -> lead id."""
    make = make_lead_factory(engine)
    leads = {kind: make(consents=() if kind == "no consent" else ("email",)) for kind in KINDS}
    with session_scope(engine) as session:
        session.add(
            Consent(
                lead_id=leads["topic off"].id,
                channel=TOPIC_CHANNEL,
                purpose=topic_purpose("newsletter"),
                status="withdrawn",
            )
        )
        paused = session.get(Lead, leads["paused"].id)
        paused.marketing_paused_until = NOW + timedelta(days=3)
        weekly = session.get(Lead, leads["weekly pace"].id)
        weekly.marketing_frequency = "weekly"
        suppress(session, KEY, leads["suppressed"].email, "unsubscribed")
        add_member(session, list_name="do-not-mail", lead_id=leads["excluded"].id, reason="test")
        earlier = {"capped": 2, "weekly pace": 1}
        for kind, n in earlier.items():
            for i in range(n):
                session.add(
                    Message(
                        send_key=f"earlier-{i}-{leads[kind].id}",
                        lead_id=leads[kind].id,
                        workflow_id="earlier",
                        journey="newsletter",
                        step=f"s{i}",
                        channel="email",
                        template="newsletter",
                        kind="marketing",
                        status="sent",
                        counted_at=NOW - timedelta(days=1 + i),
                    )
                )
        done = leads["already sent"]
        session.add(
            Message(
                send_key=f"{workflow_id}:lead-{done.id}",
                lead_id=done.id,
                workflow_id=workflow_id,
                journey="broadcast",
                step=f"lead-{done.id}",
                channel="email",
                template="nurture_welcome_newsletter",
                kind="marketing",
                status="sent",
            )
        )
    return {kind: lead.id for kind, lead in leads.items()}


def decided(engine, leads: dict[str, str], claims) -> dict[str, tuple]:
    """Per kind: what the claim said and what the ledger's row says."""
    out = {}
    with Session(engine) as session:
        for (kind, lead_id), claim in zip(leads.items(), claims, strict=True):
            row = session.exec(
                select(Message).where(Message.lead_id == lead_id, Message.journey == "broadcast")
            ).one()
            result = claim.result
            out[kind] = (
                "go" if result is None else result.status,
                None if result is None else (result.reason, result.skip, result.already_sent),
                row.status,
                row.reason,
                row.counted_at is not None,
                row.attempts,
            )
    return out


def test_a_wave_decides_each_recipient_as_a_single_send_does(engine):
    single, wave = ledger(engine), ledger(engine)
    one_by_one = one_of_each(engine, "broadcast-single")
    together = one_of_each(engine, "broadcast-wave")
    claims_single = [
        single.claim(request_for(lead_id, "broadcast-single"), "email", now=NOW)
        for lead_id in one_by_one.values()
    ]
    claims_wave = wave.claim_many(
        [request_for(lead_id, "broadcast-wave") for lead_id in together.values()],
        "email",
        now=NOW,
    )
    by_single = decided(engine, one_by_one, claims_single)
    by_wave = decided(engine, together, claims_wave)
    assert by_wave == by_single
    # and each is what the product promises
    status = {kind: by_wave[kind][0] for kind in KINDS}
    assert status == {
        "consented": "go",
        "no consent": "skipped",
        "topic off": "skipped",
        "paused": "skipped",
        "suppressed": "skipped",
        "excluded": "skipped",
        "capped": "skipped",
        "weekly pace": "skipped",
        "already sent": "sent",
    }
    assert by_wave["already sent"][1][2], "the earlier send is returned, nothing goes again"
    assert by_wave["excluded"][1][0] == "excluded: the lead is in the list do-not-mail"
    assert by_wave["capped"][1][0].startswith("skipped (frequency cap: 2 email")
    assert "weekly pace" in by_wave["weekly pace"][1][0]


def test_a_wave_records_its_outcomes_as_single_sends_do(engine):
    """Sent, refused for good, failed for now: the rows say the same as after single sends, and
    a wave claimed again finds the settled ones settled."""
    make = make_lead_factory(engine)
    leads = [make() for _ in range(3)]
    wave = ledger(engine)
    requests = [request_for(lead.id, "broadcast-outcomes") for lead in leads]
    claims = wave.claim_many(requests, "email", now=NOW)
    results = wave.record_many(
        [
            Delivery(claims[0].message, subject="Hello"),
            Delivery(claims[1].message, failure=SendFailure("550 no such user", permanent=True)),
            Delivery(claims[2].message, failure=SendFailure("connection refused")),
        ]
    )
    assert [r and r.status for r in results] == ["sent", "failed", None]
    again = wave.claim_many(requests, "email", now=NOW)
    assert [c.result and c.result.status for c in again] == ["sent", "failed", None]
    assert again[2].message is not None, "the send that failed for now goes again"
    with Session(engine) as session:
        row = session.get(Message, again[2].message.id)
        assert (row.status, row.attempts, row.attempts_not_delivered) == ("sending", 2, 1)
        assert not (row.reason or "").startswith("an earlier attempt ended without")
