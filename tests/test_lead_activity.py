"""What a lead's activity sets in motion (relance/services/lead_activity.py), on the migrated test
database."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from sqlmodel import Session, col

from relance.contracts.signals import CLICKED
from relance.dev.seeding import make_lead_factory
from relance.domain.db import make_engine
from relance.domain.models import Lead, LeadActivity, TrackingEvent, as_utc, utcnow
from relance.domain.tokens import TrackingToken
from relance.services import migrate
from relance.services.lead_activity import follow_ups, note_activity
from relance.services.outbox import OutboxDispatcher
from relance.services.tracking import Hit, record_hits


def activities(engine, lead_id: str, kind: str, count: int, *, days_ago: float = 0) -> None:
    with Session(engine) as session:
        for _ in range(count):
            note_activity(session, lead_id=lead_id, kind=kind, url="https://example.com/")
        session.commit()
        if days_ago:
            session.execute(
                update(LeadActivity)
                .where(col(LeadActivity.lead_id) == lead_id)
                .values(at=utcnow() - timedelta(days=days_ago))
            )
            session.commit()


def hits(engine, lead_id: str, kind: str, count: int) -> None:
    with Session(engine) as session:
        for _ in range(count):
            session.add(
                TrackingEvent(kind=kind, message_id="m", lead_id=lead_id, workflow_id="welcome-x")
            )
        session.commit()


def due(engine, settings, lead_id: str, kind: str = "page_view"):
    with Session(engine) as session:
        return follow_ups(session, settings, {lead_id: kind})


def test_clicks_page_views_forms_and_purchases_count_toward_the_premium_offer_opens_do_not(
    engine, settings, make_lead
):
    lead = make_lead()
    activities(engine, lead.id, "page_view", settings.premium_offer_threshold - 3)
    activities(engine, lead.id, "purchase", 1)
    hits(engine, lead.id, "opened", 50)
    hits(engine, lead.id, "clicked", 1)
    assert due(engine, settings, lead.id) == []  # threshold - 1
    activities(engine, lead.id, "cart_updated", 5)  # stamps the last activity, not counted
    assert due(engine, settings, lead.id) == []
    activities(engine, lead.id, "form", 1)
    [follow_up] = due(engine, settings, lead.id)
    assert follow_up.premium_due and not follow_up.reengaging
    with Session(engine) as session:
        assert utcnow() - as_utc(session.get(Lead, lead.id).last_activity_at) < timedelta(minutes=1)


def test_old_activity_does_not_count_and_an_offer_is_made_once(engine, settings, make_lead):
    lead = make_lead()
    activities(engine, lead.id, "page_view", settings.premium_offer_threshold, days_ago=31)
    assert due(engine, settings, lead.id) == []
    activities(engine, lead.id, "page_view", settings.premium_offer_threshold)
    assert due(engine, settings, lead.id)[0].premium_due
    with Session(engine) as session:
        session.execute(
            update(Lead).where(col(Lead.id) == lead.id).values(premium_offered_at=utcnow())
        )
        session.commit()
    assert due(engine, settings, lead.id) == []


def test_a_lead_in_a_re_engagement_journey_is_told(engine, settings, make_lead):
    lead = make_lead()
    with Session(engine) as session:
        session.execute(
            update(Lead).where(col(Lead.id) == lead.id).values(reengagement_status="in_journey")
        )
        session.commit()
    [follow_up] = due(engine, settings, lead.id, "purchase")
    assert follow_up.reengaging and follow_up.kind == "purchase" and not follow_up.premium_due


async def test_one_link_clicked_again_and_again_is_one_click_toward_the_premium_offer(
    settings, client, tmp_path
):
    """A script or a link scanner requesting one link many times does not make a lead very active.
    (Its own database: this outbox must settle no other test's hits.)"""
    database_url = f"sqlite:///{tmp_path / 'relance.db'}"
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    lead = make_lead_factory(engine)()
    token = TrackingToken(
        "click", "m-1", lead.id, f"welcome-{lead.id}", url="https://example.com/guide"
    )
    record_hits(
        engine,
        [Hit(token, CLICKED, "curl", "198.51.100.7")] * (settings.premium_offer_threshold + 5),
    )
    await OutboxDispatcher(
        engine, client
    ).deliver_batch()  # the journey has ended: it is told nothing
    assert due(engine, settings, lead.id) == []
