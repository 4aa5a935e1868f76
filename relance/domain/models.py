"""The app database's tables (SQLModel). API request/response shapes live in ``api/schemas.py``.

Ids are random (uuid4 hex), never sequential, so a lead id cannot be guessed from another.
Times are stored in UTC.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import JSON, Column, DateTime, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back without a zone; they are UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _when(*, nullable: bool = True, index: bool = False) -> Column:
    return Column(DateTime(timezone=True), nullable=nullable, index=index)


class Lead(SQLModel, table=True):
    __tablename__ = "leads"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    # Normalised (trimmed, domain lower-cased): the deduplication key.
    email: str = Field(unique=True, index=True, max_length=320)
    first_name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=32)  # E.164
    locale: str = Field(default="en", max_length=35)
    time_zone: str = Field(default="UTC", max_length=64)
    country: str | None = Field(
        default=None, max_length=2
    )  # ISO 3166 alpha-2, upper case: the sales territory
    score: int = 0
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))
    # The latest sign-up form: a lead created before it was "already a contact" (the welcome does
    # not greet them twice).
    last_signup_at: datetime | None = Field(default=None, sa_column=_when())
    last_activity_at: datetime | None = Field(default=None, sa_column=_when())
    # Re-engagement: null (never in it), in_journey, re_engaged, unsubscribed,
    # consent_withdrawn, not_sent (no consent when it started), sunset_suppressed. A lead sunset
    # with the ``delete`` policy is erased, so it has no row.
    reengagement_status: str | None = Field(default=None, max_length=32)
    reengagement_at: datetime | None = Field(
        default=None, sa_column=_when()
    )  # when the status last changed
    premium_offered_at: datetime | None = Field(
        default=None, sa_column=_when()
    )  # the premium offer goes once
    # The lowest lifecycle stage the lead may show (a defined journey's update: "sales accepted
    # this lead", stage sql): the stage derived from the facts wins when it is higher
    # (relance/domain/segments.py), so stages only move forward. None: the facts alone.
    stage_floor: str | None = Field(default=None, max_length=16)
    # Custom attributes (relance/domain/lead_schema.py: declared, typed, checked on write): name ->
    # value, a date as YYYY-MM-DD.
    attributes: dict = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False, server_default="{}")
    )
    # The lead's own pace for marketing messages (the preference page, PUT /leads/{id}/preferences):
    # as_sent, or weekly (a digest's pace: at most one marketing message per channel per 7 days,
    # through the frequency cap). Paused until a time: no marketing message before it.
    marketing_frequency: str = Field(
        default="as_sent", max_length=16, sa_column_kwargs={"server_default": "as_sent"}
    )
    marketing_paused_until: datetime | None = Field(default=None, sa_column=_when())


class Consent(SQLModel, table=True):
    """Append-only consent ledger: the current state is the latest row per channel/purpose."""

    __tablename__ = "consents"

    id: int | None = Field(default=None, primary_key=True)
    lead_id: str = Field(foreign_key="leads.id", index=True, max_length=32)
    # a channel of relance/contracts/channels.py, or "all" for a topic's choice (purpose
    # "topic:<key>", relance/domain/consent.py)
    channel: str = Field(max_length=16)
    purpose: str = Field(default="marketing", max_length=64)
    status: str = Field(
        max_length=16
    )  # granted | withdrawn | pending (double opt-in, not confirmed yet)
    source_url: str | None = Field(default=None, max_length=2048)
    ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=1024)
    wording_version: str | None = Field(default=None, max_length=64)
    reason: str | None = Field(default=None, max_length=200)  # why it changed, e.g. "sunset"
    recorded_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))


class Message(SQLModel, table=True):
    """Every email or SMS a journey sends, keyed by its idempotency key (workflow id + step)."""

    __tablename__ = "messages"
    __table_args__ = (
        # The reports: a journey's or a template's messages over a date range.
        Index("ix_messages_journey_created", "journey", "created_at"),
        Index("ix_messages_template_created", "template", "created_at"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    send_key: str = Field(unique=True, max_length=300)
    lead_id: str = Field(foreign_key="leads.id", index=True, max_length=32)
    workflow_id: str = Field(index=True, max_length=255)
    journey: str = Field(max_length=64)
    step: str = Field(max_length=64)
    channel: str = Field(max_length=16)  # a channel of relance/contracts/channels.py
    template: str = Field(max_length=128)
    kind: str = Field(default="marketing", max_length=16)  # marketing | transactional
    topic: str | None = Field(default=None, max_length=64)  # marketing: relance/domain/topics.py
    status: str = Field(max_length=16)  # sending | sent | skipped | failed
    reason: str | None = Field(default=None, max_length=500)
    subject: str | None = Field(default=None, max_length=500)
    provider_id: str | None = Field(default=None, max_length=255)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=_when())
    # indexed: segments read "opened / clicked within D days" over every lead
    opened_at: datetime | None = Field(default=None, sa_column=_when(index=True))
    clicked_at: datetime | None = Field(default=None, sa_column=_when(index=True))
    # Frequency cap: when the message counted against the lead's cap, and, while it is
    # ``deferred``, when the cap allows it again.
    counted_at: datetime | None = Field(default=None, sa_column=_when(index=True))
    deferred_until: datetime | None = Field(default=None, sa_column=_when())
    # What the send's attempts did, so the row tells the truth about a retried send: how many
    # attempts went to the provider, and how many of them certainly did not hand the message over
    # (connection refused, a 4xx answer). Any other attempt (killed, connection lost after the
    # message went out) may have reached the provider: a later send is then noted as sent again.
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    attempts_not_delivered: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # What its reader did, machines' hits left out (relance/domain/engagement.py): the reports'
    # unique human opens and clicks, and the unsubscribes that came from this message.
    human_opened_at: datetime | None = Field(default=None, sa_column=_when())
    human_clicked_at: datetime | None = Field(default=None, sa_column=_when())
    unsubscribed_at: datetime | None = Field(default=None, sa_column=_when())


class ScoreEvent(SQLModel, table=True):
    """Every change to a lead's score, with its reason. ``key`` makes a retried change count
    once."""

    __tablename__ = "score_events"
    __table_args__ = (UniqueConstraint("key", name="uq_score_events_key"),)

    id: int | None = Field(default=None, primary_key=True)
    lead_id: str = Field(foreign_key="leads.id", index=True, max_length=32)
    key: str = Field(max_length=300)
    event: str = Field(max_length=64)
    points: int
    reason: str = Field(max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))


class TrackingEvent(SQLModel, table=True):
    """A tracking hit (open, click), kept durably first and then signalled to its journey.

    This is the outbox between the public tracking endpoints and Temporal: the endpoint answers
    at once; ``relance.services.outbox`` settles each hit in order, once, and stamps
    ``delivered_at``. Every hit is kept for reporting, but a journey is told only what it can use:
    hits with the same ``signal_key`` (an open of a message, a click of a message's link) tell it
    nothing new. The one hit that told the journey (or found it closed, or was refused for good)
    carries ``signal_outcome``; the others are settled with a ``delivery_note`` saying why they
    were not
    signalled. ``retry_at``: the journey refused this hit and is left alone until then.
    """

    __tablename__ = "tracking_events"
    __table_args__ = (
        # The outbox's queue: the pending hits, in order (the settled ones, nearly all, are not in
        # it).
        Index(
            "ix_tracking_events_pending",
            "id",
            "workflow_id",
            sqlite_where=text("delivered_at IS NULL"),
            postgresql_where=text("delivered_at IS NULL"),
        ),
        # What each journey was already told (a few rows per journey, however big the flood).
        Index(
            "ix_tracking_events_told",
            "workflow_id",
            "signal_key",
            sqlite_where=text("signal_outcome IS NOT NULL"),
            postgresql_where=text("signal_outcome IS NOT NULL"),
        ),
        # The journeys waiting out a refusal.
        Index(
            "ix_tracking_events_retry_at",
            "retry_at",
            sqlite_where=text("retry_at IS NOT NULL"),
            postgresql_where=text("retry_at IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)  # opened | clicked | unsubscribed | email_confirmed
    message_id: str = Field(index=True, max_length=32)
    lead_id: str = Field(index=True, max_length=32)
    workflow_id: str = Field(max_length=255)
    url: str | None = Field(default=None, max_length=2048)
    user_agent: str | None = Field(default=None, max_length=1024)
    ip: str | None = Field(default=None, max_length=64)
    received_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))
    delivered_at: datetime | None = Field(default=None, sa_column=_when(index=True))
    attempts: int = 0
    delivery_note: str | None = Field(default=None, max_length=500)
    signal_key: str | None = Field(
        default=None, max_length=120
    )  # relance.services.tracking.signal_key
    signal_outcome: str | None = Field(default=None, max_length=16)  # signalled | closed | refused
    retry_at: datetime | None = Field(default=None, sa_column=_when())
    # A proxy's or a scanner's hit (relance/domain/engagement.py), and why it is thought so.
    machine: bool = Field(default=False, sa_column_kwargs={"server_default": text("false")})
    machine_reason: str | None = Field(default=None, max_length=32)


class Cart(SQLModel, table=True):
    """The shop's cart as last reported (``cart_updated``); ``id`` is the shop's own cart id."""

    __tablename__ = "carts"

    id: str = Field(primary_key=True, max_length=128)
    lead_id: str = Field(foreign_key="leads.id", index=True, max_length=32)
    currency: str = Field(default="EUR", max_length=3)
    total: float = 0.0
    items: list[dict] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="open", max_length=16)  # open | purchased | emptied
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))


class Order(SQLModel, table=True):
    """A purchase reported by the shop; ``id`` is the shop's order id (a retried event counts
    once)."""

    __tablename__ = "orders"

    id: str = Field(primary_key=True, max_length=128)
    lead_id: str = Field(foreign_key="leads.id", index=True, max_length=32)
    cart_id: str | None = Field(default=None, max_length=128)
    currency: str = Field(default="EUR", max_length=3)
    total: float = 0.0
    items: list[dict] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))


class PromoCode(SQLModel, table=True):
    """A single-use promo code, generated for one lead by one journey step."""

    __tablename__ = "promo_codes"

    code: str = Field(primary_key=True, max_length=32)
    lead_id: str = Field(foreign_key="leads.id", index=True, max_length=32)
    issued_for: str = Field(unique=True, max_length=300)  # workflow id + step: one code per step
    percent_off: int
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))
    expires_at: datetime | None = Field(default=None, sa_column=_when())  # None: no end
    redeemed_at: datetime | None = Field(default=None, sa_column=_when())


class ListMember(SQLModel, table=True):
    """Membership of a named list ("loyal-customers", ...). Lists are data: a list exists while it
    has members."""

    __tablename__ = "list_members"
    __table_args__ = (UniqueConstraint("list_name", "lead_id", name="uq_list_members"),)

    id: int | None = Field(default=None, primary_key=True)
    list_name: str = Field(index=True, max_length=64)
    lead_id: str = Field(foreign_key="leads.id", index=True, max_length=32)
    reason: str = Field(max_length=300)
    added_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))


class Event(SQLModel, table=True):
    """An event leads register to (webinar, workshop, breakfast...). Data, not a journey:
    each registration runs its own ``EventReminderJourney`` (the event journey: registration,
    reminders, follow-up)."""

    __tablename__ = "events"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    name: str = Field(max_length=200)
    starts_at: datetime = Field(sa_column=_when(nullable=False, index=True))  # UTC
    time_zone: str = Field(default="UTC", max_length=64)  # IANA, the organiser's, for display
    duration_minutes: int = 60
    join_url: str | None = Field(default=None, max_length=2048)  # online events
    address: str | None = Field(default=None, max_length=500)  # in-person events
    speakers: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    topics: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    replay_url: str | None = Field(default=None, max_length=2048)
    survey_url: str | None = Field(default=None, max_length=2048)
    series: str | None = Field(
        default=None, max_length=100, index=True
    )  # the next one is invited to
    status: str = Field(default="scheduled", max_length=16)  # scheduled | cancelled
    sequence: int = 0  # bumped at each reschedule: the .ics SEQUENCE, so calendars update
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))


class Registration(SQLModel, table=True):
    """A lead registered to an event, and the journey that accompanies them."""

    __tablename__ = "registrations"
    __table_args__ = (UniqueConstraint("event_id", "lead_id", name="uq_registrations_event_lead"),)

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(foreign_key="events.id", index=True, max_length=32)
    lead_id: str = Field(foreign_key="leads.id", index=True, max_length=32)
    workflow_id: str = Field(max_length=255)
    registered_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))
    attended: bool = False
    attended_at: datetime | None = Field(default=None, sa_column=_when())


class CustomEvent(SQLModel, table=True):
    """Something the site told about a lead beyond carts and page views (``POST /events/track``
    with ``type: custom``), declared in the lead schema: "attended a webinar", "started a trial".
    Segments count them ("at least 2 within 7 days") and journeys wait for or start on them.
    ``event_id``: the sender's id of the event, so a retried event is kept once."""

    __tablename__ = "custom_events"
    __table_args__ = (
        UniqueConstraint("lead_id", "event_id", name="uq_custom_events_lead_event_id"),
        # a lead's events of one name in a period (a condition about one lead)
        Index("ix_custom_events_lead_name_at", "lead_id", "name", "occurred_at"),
        # the leads who did one event in a period (a segment over all leads)
        Index("ix_custom_events_name_at", "name", "occurred_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    lead_id: str = Field(foreign_key="leads.id", max_length=32)
    name: str = Field(max_length=64)
    properties: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    event_id: str | None = Field(default=None, max_length=64)
    occurred_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))
    received_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))


class LeadActivity(SQLModel, table=True):
    """What a lead did outside email: a page view, a form, a purchase (opens and clicks are in
    ``tracking_events``). Counted, with clicks, for the "very active" premium offer."""

    __tablename__ = "lead_activities"

    id: int | None = Field(default=None, primary_key=True)
    lead_id: str = Field(foreign_key="leads.id", index=True, max_length=32)
    kind: str = Field(max_length=16)  # page_view | form | purchase
    url: str | None = Field(default=None, max_length=2048)
    category: str | None = Field(
        default=None, max_length=64
    )  # page views: what the page is about (browse abandonment)
    at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False, index=True))


class SalesTask(SQLModel, table=True):
    """A hand-off to a sales rep (the nurturing journey's hand-off to sales): call this lead, with
    the reason and a due date.

    ``task_key`` (workflow id + reason) makes a retried creation find the task it made.
    """

    __tablename__ = "sales_tasks"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    task_key: str = Field(unique=True, max_length=300)
    lead_id: str = Field(foreign_key="leads.id", index=True, max_length=32)
    workflow_id: str = Field(max_length=255)
    reason: str = Field(max_length=300)
    assignee: str | None = Field(
        default=None, index=True, max_length=320
    )  # the rep's email; None: no rep configured
    territory: str | None = Field(
        default=None, max_length=2
    )  # the lead country that chose the rep, if any
    due_at: datetime = Field(sa_column=_when(nullable=False))
    status: str = Field(default="open", max_length=16, index=True)  # open | done | escalated
    outcome: str | None = Field(
        default=None, max_length=32
    )  # called | meeting_booked | not_interested
    note: str | None = Field(default=None, max_length=2000)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))
    # What to do (a defined journey's task node), rendered from its template; None: the reason
    description: str | None = Field(default=None, max_length=2000)
    notified_at: datetime | None = Field(
        default=None, sa_column=_when()
    )  # the rep's email went out
    escalated_at: datetime | None = Field(default=None, sa_column=_when())
    escalation_notified_at: datetime | None = Field(
        default=None, sa_column=_when()
    )  # the manager's email
    completed_at: datetime | None = Field(default=None, sa_column=_when())


class Counter(SQLModel, table=True):
    """Named counters, incremented atomically (round-robin assignment of sales tasks)."""

    __tablename__ = "counters"

    name: str = Field(primary_key=True, max_length=100)
    value: int = 0


class SuppressionEntry(SQLModel, table=True):
    """An address that must not be contacted or signed up again, kept as a keyed hash only
    (HMAC-SHA256 of the normalised email, keyed with RELANCE_SUPPRESSION_KEY, by default the
    secret key): after an erasure nothing readable remains, yet a re-import or re-sign-up of the
    same address is recognised."""

    __tablename__ = "suppression_list"

    email_hash: str = Field(primary_key=True, max_length=64)
    reason: str = Field(max_length=32)  # erased | unsubscribed
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))


class AuditEntry(SQLModel, table=True):
    """Who read, exported or erased which lead's data, and when. ``actor`` is never a secret:
    ``api-key:<fingerprint>`` (the first hex digits of the key's SHA-256) or ``journey:<workflow
    id>``.
    ``lead_id`` is kept after an erasure on purpose (a random id, not personal data once the
    lead's rows are gone): it proves the request was carried out."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False, index=True))
    actor: str = Field(max_length=128)
    action: str = Field(
        max_length=32
    )  # lead.read | lead.messages | lead.consents | lead.export | lead.erase
    lead_id: str = Field(index=True, max_length=32)
    detail: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class FrequencyLock(SQLModel, table=True):
    """One row per lead and channel, locked (updated) by every marketing send's claim, so the
    frequency cap counts concurrent sends one after the other (activities/frequency.py)."""

    __tablename__ = "frequency_locks"

    lead_id: str = Field(foreign_key="leads.id", primary_key=True, max_length=32)
    channel: str = Field(primary_key=True, max_length=16)
    version: int = 0


class MqlNotification(SQLModel, table=True):
    """A crossing of the MQL threshold, to tell sales about (relance/services/mql.py): a durable
    outbox.

    Written in the transaction that raised the score; delivered (CRM webhook, HMAC-signed, and/or
    an internal email to the sales address) by the worker's notifier, retried with backoff, and
    stamped ``sent_at`` once. Falling below the threshold and crossing again makes a new row."""

    __tablename__ = "mql_notifications"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    lead_id: str = Field(foreign_key="leads.id", index=True, max_length=32)
    score: int
    threshold: int
    reason: str = Field(max_length=500)  # the score change that crossed
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))
    status: str = Field(
        default="pending", max_length=16, index=True
    )  # pending | sent | failed | skipped
    attempts: int = 0
    next_attempt_at: datetime = Field(
        default_factory=utcnow, sa_column=_when(nullable=False, index=True)
    )
    claimed_until: datetime | None = Field(
        default=None, sa_column=_when()
    )  # a notifier is delivering it
    webhook_sent_at: datetime | None = Field(default=None, sa_column=_when())
    email_sent_at: datetime | None = Field(default=None, sa_column=_when())
    sent_at: datetime | None = Field(default=None, sa_column=_when())
    last_error: str | None = Field(default=None, max_length=500)


class EnrollmentRefusal(SQLModel, table=True):
    """A journey-to-journey enrollment refused at run time (the loop guard): which journey
    meant to enroll the lead into which, the chain that led there, and why. The lead's data: in
    the export, removed by the erasure. One row per refusal (``refusal_key``: a retried activity
    records it once)."""

    __tablename__ = "enrollment_refusals"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    refusal_key: str = Field(unique=True, max_length=300)  # workflow id + run id + target
    lead_id: str = Field(foreign_key="leads.id", index=True, max_length=32)
    workflow_id: str = Field(max_length=200)  # the journey that refused the redirect
    source: str = Field(max_length=64)  # e.g. white_paper
    target: str = Field(max_length=64)  # e.g. newsletter
    chain: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    reason: str = Field(max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))


class JourneyRun(SQLModel, table=True):
    """One run of a journey for a lead: when it entered, and when and how it ended (outcome,
    reason, the goal reached, the checkpoints passed, the experiments' arms). Written for the
    journey itself (workflows/recording.py): its entry by the worker with its first activity,
    its end by the ``record_journey_run`` activity, so it holds for every journey however it was
    started; a retried activity writes the same row again. The reports' funnels come from
    here, never from Temporal."""

    __tablename__ = "journey_runs"
    __table_args__ = (
        UniqueConstraint("workflow_id", "run_id", name="uq_journey_runs_run"),
        Index("ix_journey_runs_journey_entered", "journey", "entered_at"),
        Index("ix_journey_runs_lead", "lead_id", "entered_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    workflow_id: str = Field(max_length=255)
    run_id: str = Field(max_length=64)
    lead_id: str = Field(max_length=32)
    journey: str = Field(max_length=64)  # the journey's name in the send ledger
    entered_at: datetime = Field(sa_column=_when(nullable=False))
    closed_at: datetime | None = Field(default=None, sa_column=_when())
    outcome: str | None = Field(default=None, max_length=32)
    reason: str | None = Field(default=None, max_length=500)
    goal: str | None = Field(default=None, max_length=64)  # set when a goal converted the lead
    checkpoints: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # The experiments' arms it was placed on: experiment node -> arm (journeys written as data).
    arms: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Broadcast(SQLModel, table=True):
    """A campaign sent once to an audience (a list or a saved segment), in waves of ``per_hour``
    (workflows/broadcast.py). The counts are the workflow's, as of its last batch; the
    recipients' rows (``broadcast_recipients``) are the truth they are counted from."""

    __tablename__ = "broadcasts"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    audience_kind: str = Field(max_length=16)  # list | segment
    audience_id: str = Field(max_length=64)  # the list's name, the segment's id
    template: str = Field(max_length=128)
    channel: str = Field(max_length=16)  # a channel of relance/contracts/channels.py
    topic: str | None = Field(default=None, max_length=64)
    send_at: datetime = Field(sa_column=_when(nullable=False))
    per_hour: int
    # scheduled | running | paused | cancelled | completed
    status: str = Field(default="scheduled", max_length=16)
    audience_size: int = Field(default=0)
    sent: int = Field(default=0)
    skipped: int = Field(default=0)
    failed: int = Field(default=0)
    skipped_by_reason: dict[str, int] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))
    started_at: datetime | None = Field(default=None, sa_column=_when())
    finished_at: datetime | None = Field(default=None, sa_column=_when())


class BroadcastRecipient(SQLModel, table=True):
    """One lead of a broadcast's audience, frozen when the broadcast starts: a lead who joins the
    list later is not in it. ``outcome``: pending, deferred (outside the lead's send window until
    ``not_before``), sent, failed, or ``skipped:<reason>``."""

    __tablename__ = "broadcast_recipients"
    __table_args__ = (
        Index("ix_broadcast_recipients_outcome", "broadcast_id", "outcome", "position"),
    )

    broadcast_id: str = Field(foreign_key="broadcasts.id", primary_key=True, max_length=32)
    position: int = Field(primary_key=True)
    lead_id: str = Field(foreign_key="leads.id", index=True, max_length=32)
    outcome: str = Field(default="pending", max_length=32)
    not_before: datetime | None = Field(default=None, sa_column=_when())
    message_id: str | None = Field(default=None, max_length=32)


class JourneyDefinition(SQLModel, table=True):
    """A journey written as data (relance/domain/definitions.py), one row per key: its draft
    (the body being edited, always a checked one) and where it is in its life:

    draft      never published: nobody can be enrolled
    published  leads are enrolled into its current version (``version``)
    paused     no new entries; the leads in it go on
    archived   no new entries, never published again (its versions and messages keep the key)
    """

    __tablename__ = "journey_definitions"

    key: str = Field(primary_key=True, max_length=40)
    status: str = Field(default="draft", max_length=16)
    draft: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    draft_hash: str = Field(max_length=64)  # the draft's content hash (as a version's)
    version: int | None = Field(default=None)  # the current published version
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))


class JourneyVersion(SQLModel, table=True):
    """A published version of a defined journey: written once, never changed. ``compiled``:
    what the interpreter receives (relance/contracts/definitions.py), as enrollment sends it."""

    __tablename__ = "journey_versions"
    __table_args__ = (UniqueConstraint("key", "version", name="uq_journey_versions_key_version"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    key: str = Field(foreign_key="journey_definitions.key", index=True, max_length=40)
    version: int
    body: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    compiled: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    content_hash: str = Field(max_length=64)
    published_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))


class Segment(SQLModel, table=True):
    """A saved rule tree (relance/domain/conditions.py) over the leads: counted, listed and
    exported on demand, never stored as members (relance/domain/segment_query.py)."""

    __tablename__ = "segments"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    name: str = Field(max_length=200)
    rules: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))


class TriggerFire(SQLModel, table=True):
    """A date trigger that fired for a lead (relance/services/triggers.py): its idempotency key
    (the journey, the trigger, the lead and the local date it fired for), so the hourly sweep
    enrolls a lead once per occurrence — once a year for a birthday — however often it runs."""

    __tablename__ = "trigger_fires"

    fire_key: str = Field(primary_key=True, max_length=200)
    lead_id: str = Field(foreign_key="leads.id", index=True, max_length=32)
    journey: str = Field(max_length=40)
    fired_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))


class SegmentTriggerState(SQLModel, table=True):
    """A segment-entered trigger's last evaluation (relance/services/triggers.py): none yet, and
    the next evaluation enrolls nobody (it stores the members: "from now on")."""

    __tablename__ = "segment_trigger_states"

    journey: str = Field(primary_key=True, max_length=40)
    segment_id: str = Field(primary_key=True, max_length=32)
    evaluated_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))


class SegmentTriggerMember(SQLModel, table=True):
    """A member of the segment at a segment-entered trigger's last evaluation: the next one
    enrolls the members who are not here (they entered since)."""

    __tablename__ = "segment_trigger_members"

    journey: str = Field(primary_key=True, max_length=40)
    segment_id: str = Field(primary_key=True, max_length=32)
    lead_id: str = Field(foreign_key="leads.id", primary_key=True, max_length=32)
