"""Re-engagement: find inactive leads page by page and start their journeys, record
each journey's outcome on the lead, and sunset the leads who never came back.

The sweep reads eligible leads with a keyset cursor (``id > cursor ORDER BY id``), so a page
costs the same at lead 1 and at lead 100,000, and starts one ``reengage-<lead id>`` journey per
lead from the activity (a Temporal client call), so the sweep's own history holds one activity
per page, not one event per lead.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from relance.contracts.reengagement import (
    OutcomeRecord,
    PageRequest,
    PageResult,
    PremiumRecord,
    SunsetRequest,
    SunsetResult,
)
from relance.domain.consent import latest_consent
from relance.domain.journey_rules import cooldown_of
from relance.domain.models import Consent, Lead, utcnow
from relance.domain.settings import Settings
from relance.services.erasure import erase_lead
from relance.services.journeys import rules_for, start_journey

IN_JOURNEY = "in_journey"
STARTS_IN_FLIGHT = 50  # concurrent start_workflow calls per page


class ReEngagementActivities:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine

    # The sweep -------------------------------------------------------------------------------
    def eligible_page(self, cutoff: datetime, after: str, limit: int) -> list[str]:
        """Leads inactive since ``cutoff``, with marketing email consent, not in a running
        journey."""
        latest_email_consent = (
            select(Consent.status)
            .where(
                Consent.lead_id == Lead.id,
                Consent.channel == "email",
                Consent.purpose == "marketing",
            )
            .order_by(col(Consent.id).desc())
            .limit(1)
            .correlate(Lead)
            .scalar_subquery()
        )
        # A status stuck at in_journey past the journey's longest possible run (terminated by
        # hand, say) does not keep the lead out for ever.
        stale = utcnow() - timedelta(days=sum(self.settings.reengagement_delays_days) + 2)
        # Re-enrollment cooldown (relance/domain/journey_rules.py): ``reengagement_at`` is when the
        # outcome of the lead's previous run was recorded, i.e. when the lead left it.
        cooled = utcnow() - cooldown_of(
            rules_for(self.settings, "reengage"), self.settings.reenroll_cooldown_days
        )
        query = (
            select(Lead.id)
            .where(
                col(Lead.id) > after,
                or_(
                    col(Lead.last_activity_at) < cutoff,
                    and_(col(Lead.last_activity_at).is_(None), col(Lead.created_at) < cutoff),
                ),
                or_(
                    col(Lead.reengagement_status).is_(None),
                    # Left the previous run (its outcome recorded then) longer ago than the
                    # cooldown.
                    and_(
                        col(Lead.reengagement_status) != IN_JOURNEY,
                        or_(
                            col(Lead.reengagement_at).is_(None), col(Lead.reengagement_at) < cooled
                        ),
                    ),
                    col(Lead.reengagement_at) < stale,
                ),
                latest_email_consent == "granted",
            )
            .order_by(col(Lead.id))
            .limit(limit)
        )
        with Session(self.engine) as session:
            return list(session.exec(query).all())

    def _mark_in_journey(self, lead_ids: list[str]) -> None:
        if not lead_ids:
            return
        now = utcnow()
        with Session(self.engine) as session:
            for start in range(0, len(lead_ids), 500):
                session.execute(
                    update(Lead)
                    .where(col(Lead.id).in_(lead_ids[start : start + 500]))
                    .values(reengagement_status=IN_JOURNEY, reengagement_at=now)
                )
            session.commit()

    async def start_journey(self, lead_id: str) -> bool:
        """Start ``reengage-<lead id>``; False when it is running already (then it is skipped:
        an overlapping sweep enrolled the lead; a closed one may run again)."""
        try:
            await start_journey(activity.client(), self.settings, "reengage", lead_id=lead_id)
            return True
        except WorkflowAlreadyStartedError:
            return False

    @activity.defn(name="enroll_inactive_page", no_thread_cancel_exception=True)
    async def enroll_inactive_page(self, request: PageRequest) -> PageResult:
        # One more than the page, to know whether another page follows without reading an empty one.
        found = await asyncio.to_thread(
            self.eligible_page, request.cutoff, request.after, request.limit + 1
        )
        lead_ids = found[: request.limit]
        gate = asyncio.Semaphore(STARTS_IN_FLIGHT)

        async def start(lead_id: str) -> bool:
            async with gate:
                return await self.start_journey(lead_id)

        started = await asyncio.gather(*(start(lead_id) for lead_id in lead_ids))
        await asyncio.to_thread(self._mark_in_journey, lead_ids)
        count = sum(started)
        activity.logger.info(
            "re-engagement sweep page after %r: %d leads, %d journeys started",
            request.after,
            len(lead_ids),
            count,
        )
        return PageResult(
            leads=len(lead_ids),
            started=count,
            already_enrolled=len(lead_ids) - count,
            next_cursor=lead_ids[-1] if len(found) > request.limit else None,
        )

    # The journey -----------------------------------------------------------------------------
    @activity.defn(name="record_reengagement", no_thread_cancel_exception=True)
    def record_reengagement(self, record: OutcomeRecord) -> None:
        with Session(self.engine) as session:
            session.execute(
                update(Lead)
                .where(col(Lead.id) == record.lead_id)
                .values(reengagement_status=record.status, reengagement_at=utcnow())
            )
            session.commit()

    @activity.defn(name="sunset_lead", no_thread_cancel_exception=True)
    def sunset_lead(self, request: SunsetRequest) -> SunsetResult:
        """No reaction to the whole series: stop emailing the lead (suppress) or erase it
        (delete)."""
        if request.policy == "delete":
            report = erase_lead(
                self.engine,
                request.lead_id,
                actor=request.workflow_id,
                reason="sunset: no reaction to the re-engagement emails",
                hash_key=self.settings.suppression_hash_key,
            )
            return SunsetResult("delete", report.rows_deleted)
        if request.policy != "suppress":
            raise ApplicationError(
                f"unknown sunset policy {request.policy!r}",
                type="BadSunsetPolicy",
                non_retryable=True,
            )
        with Session(self.engine) as session:
            if session.get(Lead, request.lead_id) is None:
                return SunsetResult("suppress")  # erased meanwhile: nothing left to suppress
            current = latest_consent(session, request.lead_id, "email")
            if current is None or current.status != "withdrawn" or current.reason != "sunset":
                session.add(
                    Consent(
                        lead_id=request.lead_id,
                        channel="email",
                        purpose="marketing",
                        status="withdrawn",
                        reason="sunset",
                        source_url=f"re-engagement sunset ({request.workflow_id})",
                    )
                )
            session.execute(
                update(Lead)
                .where(col(Lead.id) == request.lead_id)
                .values(reengagement_status="sunset_suppressed", reengagement_at=utcnow())
            )
            session.commit()
        return SunsetResult("suppress")

    # The premium offer -----------------------------------------------------------------------
    @activity.defn(name="record_premium_offer", no_thread_cancel_exception=True)
    def record_premium_offer(self, record: PremiumRecord) -> None:
        with Session(self.engine) as session:
            session.execute(
                update(Lead)
                .where(col(Lead.id) == record.lead_id, col(Lead.premium_offered_at).is_(None))
                .values(premium_offered_at=utcnow())
            )
            session.commit()
