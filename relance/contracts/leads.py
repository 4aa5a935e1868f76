"""What a journey reads about its lead to decide its path: consent and a few facts.

Answers carry booleans, numbers and a time zone only, never the lead's email or phone, so
workflow histories hold no readable personal data.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import activity

from relance.domain.send_window import SendWindow


@dataclass
class ConsentQuestion:
    lead_id: str
    channel: str  # email | sms
    purpose: str = "marketing"


@dataclass
class ConsentAnswer:
    granted: bool
    reason: str
    pending: bool = False  # double opt-in: granted at sign-up, waiting for the lead's confirmation
    pending_id: int = 0  # the pending ledger row: each sign-up's confirmation email is its own send


@dataclass
class LeadRef:
    lead_id: str


@dataclass
class LeadFacts:
    known_contact: bool  # was already a contact before this sign-up
    has_phone: bool
    score: int


@dataclass
class SendProfile:
    """When marketing may reach the lead: their IANA zone and the global send window (None: no
    window, send at any time). No personal data beyond the zone."""

    time_zone: str
    window: SendWindow | None


@dataclass
class LeadQuestion:
    """What a journey asks when it reads its lead: the consent for one channel, and the rest."""

    lead_id: str
    channel: str = "email"  # whose marketing consent is asked


@dataclass
class LeadReading:
    """All a journey reads of its lead at one moment, in one activity: the consent for the
    channel asked, the facts, and the send profile (instead of three activities reading the same
    lead one after the other)."""

    consent: ConsentAnswer
    facts: LeadFacts
    profile: SendProfile


# The activities, as journeys call them (``workflow.execute_activity(check_consent, ...)``):
# only the name and the types count here; the worker runs the implementation registered under
# the same name (activities/leads.py LeadActivities). tests/test_layers.py checks both agree.


@activity.defn(name="check_consent")
def check_consent(question: ConsentQuestion) -> ConsentAnswer:
    raise NotImplementedError("run by the worker: LeadActivities.check_consent")


@activity.defn(name="get_lead_facts")
def get_lead_facts(ref: LeadRef) -> LeadFacts:
    raise NotImplementedError("run by the worker: LeadActivities.get_lead_facts")


@activity.defn(name="get_send_profile")
def get_send_profile(ref: LeadRef) -> SendProfile:
    raise NotImplementedError("run by the worker: LeadActivities.get_send_profile")


@activity.defn(name="read_lead")
def read_lead(question: LeadQuestion) -> LeadReading:
    raise NotImplementedError("run by the worker: LeadActivities.read_lead")
