"""What a lead's activity sets in motion, beyond stamping ``leads.last_activity_at``.

Every open, click, page view, form and purchase stamps ``last_activity_at`` where it is
stored (opens and clicks in the tracking group commit, the others in their own write). Then:

- a lead in a re-engagement journey has come back: ``reengage-<lead id>`` gets an ``activity``
  signal (opens and clicks of the re-engagement emails reach it directly, as any journey's);
- a lead whose clicks, page views, forms and purchases over the last 30 days reach the threshold
  gets the premium-content offer: ``premium-<lead id>`` is started, once per lead ever.

``follow_ups`` reads what is due in one query per group of leads (the outbox dispatcher calls it
once per batch); ``act_on`` does it on Temporal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, or_, update
from sqlmodel import Session, col, select
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from relance.contracts import catalogue
from relance.contracts.signals import ACTIVITY, ActivitySignal
from relance.domain.models import Lead, LeadActivity, TrackingEvent, utcnow
from relance.domain.settings import Settings
from relance.services.journeys import start_journey

log = logging.getLogger("relance.activity")

REENGAGE = catalogue.entry("reengage")

COUNTED_KINDS = (
    "page_view",
    "form",
    "purchase",
)  # stored in lead_activities; clicks come from tracking_events


@dataclass(frozen=True)
class FollowUp:
    lead_id: str
    kind: str  # what the lead did: page_view | form | purchase | cart_updated | opened | clicked
    reengaging: bool  # the lead is in a re-engagement journey: tell it
    premium_due: bool  # the lead just became "very active": offer premium content


def note_activity(
    session: Session,
    *,
    lead_id: str,
    kind: str,
    url: str | None = None,
    category: str | None = None,
) -> None:
    """Stamp the lead's last activity and, for counted kinds, keep the activity (no commit)."""
    now = utcnow()
    if kind in COUNTED_KINDS:
        session.add(LeadActivity(lead_id=lead_id, kind=kind, url=url, category=category, at=now))
    session.execute(update(Lead).where(col(Lead.id) == lead_id).values(last_activity_at=now))


def follow_ups(session: Session, settings: Settings, activity: dict[str, str]) -> list[FollowUp]:
    """``activity``: lead id -> what it did. Returns the leads for which something is due."""
    if not activity:
        return []
    rows = session.exec(
        select(Lead.id, Lead.reengagement_status, Lead.premium_offered_at).where(
            col(Lead.id).in_(list(activity))
        )
    ).all()
    threshold = settings.premium_offer_threshold
    candidates = [lead_id for lead_id, _, offered in rows if offered is None and threshold > 0]
    counts: dict[str, int] = {}
    if candidates:
        since = utcnow() - timedelta(days=settings.premium_offer_window_days)
        for lead_id, n in session.exec(
            select(LeadActivity.lead_id, func.count())
            .where(col(LeadActivity.lead_id).in_(candidates), col(LeadActivity.at) >= since)
            .group_by(LeadActivity.lead_id)
        ):
            counts[lead_id] = counts.get(lead_id, 0) + n
        # A click counts once per message and destination (the hit the outbox signalled; rows from
        # before the outbox settled them that way count each): a link requested 1,000 times by a
        # script or a link scanner is one click, not a very active lead.
        for lead_id, n in session.exec(
            select(TrackingEvent.lead_id, func.count())
            .where(
                col(TrackingEvent.lead_id).in_(candidates),
                TrackingEvent.kind == "clicked",
                or_(
                    col(TrackingEvent.signal_outcome).is_not(None),
                    col(TrackingEvent.signal_key).is_(None),
                ),
                col(TrackingEvent.received_at) >= since,
            )
            .group_by(TrackingEvent.lead_id)
        ):
            counts[lead_id] = counts.get(lead_id, 0) + n
    due = [
        FollowUp(
            lead_id,
            activity[lead_id],
            status == "in_journey",
            threshold > 0 and counts.get(lead_id, 0) >= threshold,
        )
        for lead_id, status, _ in rows
    ]
    return [f for f in due if f.reengaging or f.premium_due]


async def act_on(client: Client, settings: Settings, due: list[FollowUp]) -> None:
    """Signal re-engagement journeys (one that just ended is fine) and start premium offers
    (one already started or done is fine). Raises RPCError when Temporal is unreachable."""
    for follow_up in due:
        if follow_up.reengaging:
            try:
                await client.get_workflow_handle(
                    REENGAGE.workflow_id(lead_id=follow_up.lead_id)
                ).signal(ACTIVITY, ActivitySignal(kind=follow_up.kind))
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
        if follow_up.premium_due:
            try:
                await start_journey(client, settings, "premium", lead_id=follow_up.lead_id)
                log.info("lead %s is very active: premium offer started", follow_up.lead_id)
            except WorkflowAlreadyStartedError:
                pass  # offered already (or being offered)
