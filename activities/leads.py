"""Read what a journey needs to decide its path: consent and a few facts about the lead.

Results carry booleans and numbers only, never the lead's email or phone, so workflow
histories hold no readable personal data.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from relance.contracts.leads import (
    ConsentAnswer,
    ConsentQuestion,
    LeadFacts,
    LeadQuestion,
    LeadReading,
    LeadRef,
    SendProfile,
)
from relance.domain.consent import PENDING, has_consent, latest_consent
from relance.domain.models import Lead, Message, as_utc
from relance.domain.send_window import SendWindow, zone_or_utc


class LeadActivities:
    def __init__(self, engine: Engine, send_window: SendWindow | None = None) -> None:
        self.engine = engine
        self.send_window = send_window

    def _lead(self, session: Session, lead_id: str) -> Lead:
        lead = session.get(Lead, lead_id)
        if lead is None:
            raise ApplicationError(
                f"lead {lead_id} does not exist", type="LeadNotFound", non_retryable=True
            )
        return lead

    @activity.defn(name="check_consent", no_thread_cancel_exception=True)
    def check_consent(self, question: ConsentQuestion) -> ConsentAnswer:
        with Session(self.engine) as session:
            self._lead(session, question.lead_id)
            return self._consent(session, question)

    @activity.defn(name="get_lead_facts", no_thread_cancel_exception=True)
    def get_lead_facts(self, ref: LeadRef) -> LeadFacts:
        with Session(self.engine) as session:
            return self._facts(session, self._lead(session, ref.lead_id))

    @activity.defn(name="get_send_profile", no_thread_cancel_exception=True)
    def get_send_profile(self, ref: LeadRef) -> SendProfile:
        with Session(self.engine) as session:
            return self._profile(self._lead(session, ref.lead_id))

    @activity.defn(name="read_lead", no_thread_cancel_exception=True)
    def read_lead(self, question: LeadQuestion) -> LeadReading:
        """The three reads above in one activity, one session, the lead loaded once."""
        with Session(self.engine) as session:
            lead = self._lead(session, question.lead_id)
            consent = self._consent(session, ConsentQuestion(question.lead_id, question.channel))
            return LeadReading(consent, self._facts(session, lead), self._profile(lead))

    @staticmethod
    def _consent(session: Session, question: ConsentQuestion) -> ConsentAnswer:
        if has_consent(session, question.lead_id, question.channel, question.purpose):
            return ConsentAnswer(
                True, f"{question.purpose} consent for {question.channel} is granted"
            )
        latest = latest_consent(session, question.lead_id, question.channel, question.purpose)
        if latest is not None and latest.status == PENDING:
            return ConsentAnswer(
                False,
                f"{question.purpose} consent for {question.channel} is pending the lead's "
                "confirmation (double opt-in)",
                pending=True,
                pending_id=latest.id,
            )
        return ConsentAnswer(False, f"no {question.purpose} consent for {question.channel}")

    @staticmethod
    def _facts(session: Session, lead: Lead) -> LeadFacts:
        signed_up = as_utc(lead.last_signup_at)
        created_before_signup = signed_up is not None and as_utc(lead.created_at) < signed_up
        # Messages of other journeys (not this one's double opt-in confirmation) make a known
        # contact.
        earlier = select(Message.id).where(Message.lead_id == lead.id)
        if (me := _workflow_id()) is not None:
            earlier = earlier.where(Message.workflow_id != me)
        earlier_message = session.exec(earlier.limit(1)).first()
        return LeadFacts(
            known_contact=created_before_signup or earlier_message is not None,
            has_phone=bool(lead.phone),
            score=lead.score,
        )

    def _profile(self, lead: Lead) -> SendProfile:
        return SendProfile(time_zone=zone_or_utc(lead.time_zone).key, window=self.send_window)


def _workflow_id() -> str | None:
    """The calling journey's workflow id (None outside an activity)."""
    try:
        return activity.info().workflow_id
    except RuntimeError:
        return None
