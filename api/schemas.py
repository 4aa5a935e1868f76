"""What the API takes and returns (separate from the tables in relance/domain/models.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, available_timezones

import phonenumbers
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    HttpUrl,
    IPvAnyAddress,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from relance.contracts import catalogue
from relance.contracts.channels import CONSENT_CHANNELS
from relance.contracts.channels import NAMES as CHANNEL_NAMES

# The coded journeys the API enrolls leads into: the catalogue's enrollable entries (an enum in
# OpenAPI: what a sign-up's ``journeys`` takes).
JourneyName = Literal[catalogue.enrollable_names()]  # type: ignore[valid-type]
# What ``/leads/{id}/journeys/{journey}`` takes: a coded journey's name, or the key of a journey
# written as data (relance/domain/definitions.py), which only the database knows: a string of
# that shape, the coded names listed in its description and examples.
JOURNEY_KEY = r"^[a-z][a-z0-9_-]{0,59}$"
_REPLACED = {n: catalogue.entry(n).replaced_by for n in catalogue.enrollable_names()}
JOURNEY_EXAMPLES = [n for n, by in _REPLACED.items() if not by]
JOURNEY_KEY_DESCRIPTION = (
    "A coded journey ("
    + ", ".join(f"`{n}`" for n, by in _REPLACED.items() if not by)
    + ") or the key of a published journey written as data (`GET /journeys` lists them all). "
    + "".join(
        f"`{n}` takes no new leads (refused, 409): enroll into `{by}`. "
        for n, by in _REPLACED.items()
        if by
    )
)
JourneyKey = Annotated[
    str,
    Field(
        pattern=JOURNEY_KEY,
        max_length=60,
        description=JOURNEY_KEY_DESCRIPTION,
        examples=JOURNEY_EXAMPLES,
    ),
]

# The channels, from their one list (relance/contracts/channels.py): what a consent may be given
# on, what a message went out on.
ConsentChannel = Literal[CONSENT_CHANNELS]  # type: ignore[valid-type]
ChannelName = Literal[CHANNEL_NAMES]  # type: ignore[valid-type]
_LOCALE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")

# Every model the API takes: unknown fields refused, NaN and Infinity refused in numbers, and no
# string longer than this unless its field says less (each field names its own bound).
INPUT = ConfigDict(extra="forbid", allow_inf_nan=False, str_max_length=10_000)

# Lead and event data ends up in email headers (subjects, display names), calendar files and
# SMS: a name is one line. Control characters (CR, LF, tab, NUL, ...) and the Unicode line and
# paragraph separators are refused; joiners (U+200D, used in emoji and many scripts) are not.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Free text (an address, a note) may have line breaks, but no other control character: NUL
# cannot even be stored by PostgreSQL.
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f]")


def _one_line(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError(
            "must be one line of text, without control characters (line breaks, tabs, NUL...)"
        )
    return value


def _text(value: str) -> str:
    if _CONTROL_BUT_LINES.search(value):
        raise ValueError(
            "must be text without control characters (NUL, escape...); line breaks are fine"
        )
    return value


OneLine = Annotated[str, AfterValidator(_one_line)]
Text = Annotated[str, AfterValidator(_text)]
# A lead's id as callers send it (ours are 32 hex digits; anything else is simply not found).
# Custom attributes and event properties: scalars (the lead schema says which type each has).
PropertyValue = Annotated[
    StrictBool
    | StrictInt
    | StrictFloat
    | Annotated[str, StringConstraints(max_length=1000)]
    | None,
    Field(union_mode="left_to_right"),
]
Attributes = Annotated[dict[str, PropertyValue], Field(max_length=200)]
LeadId = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")]


# What proves a granted marketing consent (GDPR art. 7(1): the controller must be able to show
# the person consented): where it was given and the wording they agreed to. Its time is the
# server's, when the sign-up arrives (an import gives its own, ``consented_at``). The browser's
# IP and user agent are kept when the form passes them on, but not required: a server-side
# integration (a shop back end, a CRM sync) calls from its own address and has no browser.
CONSENT_PROOF = ("source_url", "wording_version")


class ConsentIn(BaseModel):
    """Consent evidence, as the sign-up form collected it (the proof kept in the ledger). A
    granted marketing consent needs ``source_url`` and ``wording_version``; ``ip`` and
    ``user_agent`` are the browser's, when the form has them. A withdrawal (``granted: false``)
    needs no evidence."""

    model_config = INPUT

    channel: ConsentChannel
    purpose: OneLine = Field(default="marketing", min_length=1, max_length=64)
    granted: StrictBool = Field(
        default=True, description='true or false (not "yes", 1...): this is the proof'
    )
    source_url: HttpUrl | None = Field(
        default=None,
        description="The page of the form (or of the app, the shop "
        "checkout...) where the consent was given: required "
        "for a granted marketing consent",
    )
    ip: IPvAnyAddress | None = Field(
        default=None,
        description="The browser's address, when the consent was given in "
        "one (not the address of the server calling the API)",
    )
    user_agent: OneLine | None = Field(
        default=None, max_length=1024, description="The browser's, as for ip"
    )
    wording_version: OneLine | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Version of the consent text shown: required for a granted marketing consent",
    )

    @model_validator(mode="after")
    def _proof(self) -> ConsentIn:
        if self.granted and self.purpose == "marketing":
            missing = [name for name in CONSENT_PROOF if getattr(self, name) is None]
            if missing:
                raise PydanticCustomError(
                    "consent_evidence_missing",
                    "a granted marketing consent needs its proof: {missing} missing (where it was "
                    "given, source_url; "
                    "the version of the wording shown, wording_version)",
                    {"missing": ", ".join(missing)},
                )
        return self


class LeadCreate(BaseModel):
    """A form submission: creates the lead, or updates the one with the same email."""

    model_config = INPUT

    email: EmailStr
    phone: str | None = Field(
        default=None, max_length=32, description="E.164, or national format in the default region"
    )
    first_name: OneLine | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="One line: control characters (CR, LF, tab...) are refused",
    )
    locale: str = Field(default="en", max_length=35, examples=["fr-FR"])
    time_zone: str = Field(default="UTC", max_length=64, examples=["Europe/Paris"])
    country: str | None = Field(
        default=None,
        max_length=2,
        examples=["FR"],
        description="ISO 3166 alpha-2 (any case; stored upper case): the sales territory",
    )
    consents: list[ConsentIn] = Field(default_factory=list, max_length=10)
    journeys: list[JourneyName] = Field(
        default_factory=list, max_length=10, description="Journeys to enroll the lead in at once"
    )
    attributes: Attributes | None = Field(
        default=None,
        examples=[{"plan": "pro", "birthday": "1990-04-12"}],
        description="Custom attributes declared in the lead schema (config/lead_schema.yaml), "
        "merged into the lead's: a given value replaces the stored one, null removes it; each is "
        "checked against its type (422 naming the attribute)",
    )

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str) -> str:
        if not _LOCALE.match(value):
            raise ValueError("locale must look like 'fr' or 'fr-FR'")
        return value.replace("_", "-")

    @field_validator("time_zone")
    @classmethod
    def _time_zone(cls, value: str) -> str:
        if value not in available_timezones():
            raise ValueError("time_zone must be an IANA zone such as 'Europe/Paris'")
        ZoneInfo(value)
        return value

    @field_validator("country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        if value is None:
            return None
        code = value.strip().upper()
        if code not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError("country must be an ISO 3166 alpha-2 code such as 'FR' or 'DE'")
        return code


class LeadPublic(BaseModel):
    id: str
    email: str
    first_name: str | None
    phone: str | None
    locale: str
    time_zone: str
    country: str | None = None
    score: int
    consents: dict[str, str] = Field(
        description="Current marketing consent per channel: granted | withdrawn | "
        "pending (double opt-in, not confirmed yet) | none"
    )
    created_at: datetime
    updated_at: datetime
    last_activity_at: datetime | None
    reengagement_status: str | None = Field(
        default=None,
        description="in_journey | re_engaged | unsubscribed | consent_withdrawn | not_sent | "
        "sunset_suppressed",
    )
    reengagement_at: datetime | None = None
    premium_offered_at: datetime | None = None
    attributes: dict[str, Any] = Field(
        default_factory=dict,
        description="Custom attributes (the lead schema), a date as YYYY-MM-DD",
    )
    segment: Literal["hot", "warm", "cold"] = Field(
        description="From the score: hot at or above RELANCE_SEGMENT_HOT_SCORE, warm at or above "
        "RELANCE_SEGMENT_WARM_SCORE"
    )
    stage: Literal["subscriber", "lead", "mql", "sql", "customer"] = Field(
        description="Lifecycle stage, derived: an order = customer; a sales task open or a meeting "
        "booked = sql; "
        "score at or above the MQL threshold = mql; a form = lead; else subscriber"
    )


class LeadPage(BaseModel):
    leads: list[LeadPublic]
    next: str | None = Field(
        description="Pass as `after` for the next page; null: this is the last page"
    )


class EnrollmentPublic(BaseModel):
    lead_id: str
    journey: JourneyKey
    workflow_id: str
    run_id: str | None = None
    status: Literal["started", "already_enrolled", "refused"]  # refused: an enrollment rule
    detail: str


class LeadSaved(BaseModel):
    lead: LeadPublic
    created: bool
    enrollments: list[EnrollmentPublic] = Field(default_factory=list)
    notes: list[str] = Field(
        default_factory=list,
        description="What the caller may not expect, e.g. a pending "
        "email consent with no journey to confirm it",
    )


class MessagePublic(BaseModel):
    id: str
    journey: str
    step: str
    channel: ChannelName
    template: str
    kind: str = Field(
        description="marketing | transactional (e.g. the double opt-in confirmation: no consent "
        "needed)"
    )
    status: str
    reason: str | None
    subject: str | None
    created_at: datetime
    sent_at: datetime | None
    opened_at: datetime | None
    clicked_at: datetime | None


class JourneyStatusPublic(BaseModel):
    lead_id: str
    journey: JourneyKey
    workflow_id: str
    run_id: str | None
    status: str = Field(
        description="Temporal's execution status: RUNNING, COMPLETED, TERMINATED, ..."
    )
    step: str | None
    opened: bool | None
    clicked: bool | None
    score: int | None = Field(
        description="The lead's score now, from the database: the authoritative one, as in "
        "GET /leads/{id}"
    )
    journey_score: int | None = Field(
        default=None,
        description=(
            "The score as the journey last saw it, and its `Score` search attribute in the "
            "Temporal UI: read when the "
            "journey reads the lead, or set when it scores a click itself. Opens, page views, "
            "forms and the daily decay "
            "change the lead's score without telling the journey, so this may lag `score`"
        ),
    )
    messages: list[dict] = Field(default_factory=list)
    gate: str | None = Field(
        default=None, description="Nurturing: the validation rule the journey waits on"
    )
    downloads: list[str] | None = Field(
        default=None, description="Nurturing: the assets the lead downloaded"
    )
    open_tasks: list[dict] | None = Field(
        default=None, description="Nurturing: the lead's open sales tasks"
    )
    result: dict | None = None


# Shop events (POST /events/track) ---------------------------------------------------------------
ShopId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:\-]{1,128}$")]


Category = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]


class LineItem(BaseModel):
    model_config = INPUT

    sku: OneLine = Field(min_length=1, max_length=128)
    name: OneLine = Field(min_length=1, max_length=300)
    qty: int = Field(ge=1, le=10_000)
    unit_price: float = Field(ge=0, le=1e9)
    url: HttpUrl | None = None
    image_url: HttpUrl | None = None
    category: Category | None = Field(
        default=None,
        description="e.g. the author: a purchase in a category "
        "suppresses its browse-abandonment email",
    )


class CartIn(BaseModel):
    model_config = INPUT

    id: ShopId
    items: list[LineItem] = Field(max_length=500, description="Empty: the cart was emptied")
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    total: float = Field(ge=0, le=1e12)


class OrderIn(BaseModel):
    model_config = INPUT

    id: ShopId
    cart_id: ShopId | None = None
    items: list[LineItem] = Field(default_factory=list, max_length=500)
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    total: float = Field(ge=0, le=1e12)
    promo_code: str | None = Field(
        default=None,
        pattern=r"^[A-Z0-9]{1,12}-[A-Z0-9]{1,16}$",
        description="A single-use promo code of the lead's, redeemed by this order (a journey "
        "asking whether it was used, e.g. the birthday reminder, then knows)",
    )


class CartUpdated(BaseModel):
    model_config = INPUT

    type: Literal["cart_updated"]
    lead: LeadId = Field(description="The lead's id")
    cart: CartIn


class Purchase(BaseModel):
    model_config = INPUT

    type: Literal["purchase"]
    lead: LeadId = Field(description="The lead's id")
    order: OrderIn


class CustomEventIn(BaseModel):
    """Anything else the site tells about the lead, declared in the lead schema
    (config/lead_schema.yaml): "attended a webinar", "started a trial". Segments count it;
    journeys wait for it or start on it."""

    model_config = INPUT

    type: Literal["custom"]
    lead: LeadId = Field(description="The lead's id")
    name: str = Field(
        pattern=r"^[a-z][a-z0-9_]{0,63}$",
        examples=["webinar_attended"],
        description="An event declared in the lead schema (422 otherwise)",
    )
    properties: dict[str, PropertyValue] = Field(
        default_factory=dict,
        max_length=50,
        examples=[{"webinar": "Lead scoring 101", "minutes": 42}],
        description="Scalars; the ones the schema declares are checked against their type",
    )
    id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Your id of the event: the same event sent again is kept once",
    )
    occurred_at: AwareDatetime | None = Field(
        default=None, description="When it happened (default: now); not in the future"
    )


class PageView(BaseModel):
    """A visit to the site (the lead's browser, through the shop or site backend)."""

    model_config = INPUT

    type: Literal["page_view"]
    lead: LeadId = Field(description="The lead's id")
    url: HttpUrl
    category: Category | None = Field(
        default=None,
        examples=["stephen-king"],
        description="What the page is about (an author, a range): 3+ views of one "
        "category within 7 days start the browse-abandonment email",
    )


AssetId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]


class AssetDownloaded(BaseModel):
    """The lead downloaded a content asset (white paper, guide...): it may open a gated nurturing
    step."""

    model_config = INPUT

    type: Literal["asset_downloaded"]
    lead: LeadId = Field(description="The lead's id")
    asset: AssetId = Field(examples=["white-paper"])


class DemoBooked(BaseModel):
    """The lead booked a demo on their own: the nurturing journey's goal is reached."""

    model_config = INPUT

    type: Literal["demo_booked"]
    lead: LeadId = Field(description="The lead's id")


TrackedEvent = Annotated[
    CartUpdated | Purchase | PageView | AssetDownloaded | DemoBooked | CustomEventIn,
    Field(discriminator="type"),
]


class TrackedEventAccepted(BaseModel):
    type: str
    lead_id: str
    workflow_id: str | None = Field(description="The journey the event went to, when there is one")
    detail: str
    converted: list[str] = Field(
        default_factory=list,
        description="Running journeys of the lead that declare the "
        "goal this event reaches (purchase, demo_booked), told to end as converted",
    )


class ListPublic(BaseModel):
    name: str
    members: int


class ImportRejection(BaseModel):
    line: int = Field(description="The line of the file (the header is line 1)")
    email: str | None
    reason: str


class ImportReport(BaseModel):
    created: int
    updated: int
    rejected: list[ImportRejection]


class ListMembersAdd(BaseModel):
    model_config = INPUT

    lead_ids: list[LeadId] = Field(min_length=1, max_length=1000)
    reason: OneLine = Field(default="added through the API", min_length=1, max_length=300)


class ListMembersAdded(BaseModel):
    list: str
    added: int
    already: int = Field(description="Leads that were on the list already")


class ListMemberPublic(BaseModel):
    lead_id: str
    email: str
    reason: str
    added_at: datetime


# Events --------------------------------------------------------------------------------
# Dates a person can mean. Outside, a typo (year 9999) would be stored and then break every
# reading of the event (its end overflows) and its journeys' timers.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
DATE_RANGE = "from 2000-01-01 to 2100-01-01 (UTC, end excluded)"


def in_range(value: datetime, field: str = "starts_at") -> datetime:
    """The instant, checked to be in the range (raises ValueError, for the caller's 422)."""
    # By year first: converting year 1 or 9999 to UTC may itself overflow.
    if not (EARLIEST.year <= value.year < LATEST.year) or not (
        EARLIEST <= value.astimezone(UTC) < LATEST
    ):
        raise ValueError(f"{field} must be {DATE_RANGE}")
    return value


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError("starts_at needs a time zone, e.g. '2026-12-01T18:00:00+01:00' or '...Z'")
    return value if value is None else in_range(value)


def _iana(value: str | None) -> str | None:
    if value is not None and value not in available_timezones():
        raise ValueError("time_zone must be an IANA zone such as 'Europe/Paris'")
    return value


def _not_null(schema: dict) -> None:
    schema.pop("default", None)  # leaving the field out changes nothing; null is refused


def _patch(**constraints):
    """A PATCH field: may be left out (unchanged), not set to null."""
    return Field(default=None, json_schema_extra=_not_null, **constraints)


def _cleared(value: list | None) -> list:
    return [] if value is None else value


STARTS_AT = f"With its time zone, {DATE_RANGE}; stored in UTC"
Speaker = Annotated[OneLine, StringConstraints(min_length=1, max_length=200)]
Topic = Annotated[OneLine, StringConstraints(min_length=1, max_length=100)]


class EventCreate(BaseModel):
    """A webinar, workshop, breakfast... Online (``join_url``), in person (``address``), or both."""

    model_config = INPUT

    name: OneLine = Field(min_length=1, max_length=200)
    starts_at: datetime = Field(description=STARTS_AT, examples=["2026-12-01T18:00:00+01:00"])
    time_zone: str = Field(
        default="UTC",
        max_length=64,
        examples=["Europe/Paris"],
        description="The organiser's zone, for display; each lead sees their own",
    )
    duration_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)
    join_url: HttpUrl | None = None
    address: Text | None = Field(default=None, min_length=1, max_length=500)
    speakers: list[Speaker] = Field(default_factory=list, max_length=50)
    topics: list[Topic] = Field(default_factory=list, max_length=50)
    replay_url: HttpUrl | None = None
    survey_url: HttpUrl | None = None
    series: OneLine | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="Events of one series invite each other's registrants",
    )

    _starts_at = field_validator("starts_at")(classmethod(lambda cls, v: _aware(v)))
    _time_zone = field_validator("time_zone")(classmethod(lambda cls, v: _iana(v)))

    @model_validator(mode="after")
    def _somewhere(self) -> EventCreate:
        if not (self.join_url or self.address):
            raise ValueError("an event needs a join_url, an address, or both")
        return self


class EventUpdate(BaseModel):
    """Only the fields given change. A new ``starts_at`` reschedules every registration's journey;
    ``"status": "cancelled"`` cancels the event and ends them (cancelling cannot be undone).
    ``null`` clears a field that may be empty (join_url, address, replay_url, survey_url, series;
    ``speakers`` and ``topics`` become ``[]``); ``name``, ``starts_at``, ``time_zone``,
    ``duration_minutes`` and ``status`` cannot be null."""

    model_config = INPUT

    name: OneLine = _patch(min_length=1, max_length=200)
    starts_at: datetime = _patch(description=STARTS_AT)
    time_zone: str = _patch(max_length=64)
    duration_minutes: int = _patch(ge=1, le=7 * 24 * 60)
    join_url: HttpUrl | None = None
    address: Text | None = Field(default=None, min_length=1, max_length=500)
    speakers: list[Speaker] | None = Field(
        default=None, max_length=50, description="null or []: no speakers"
    )
    topics: list[Topic] | None = Field(
        default=None, max_length=50, description="null or []: no topics"
    )
    replay_url: HttpUrl | None = None
    survey_url: HttpUrl | None = None
    series: OneLine | None = Field(default=None, min_length=1, max_length=100)
    status: Literal["scheduled", "cancelled"] = _patch()

    _starts_at = field_validator("starts_at")(classmethod(lambda cls, v: _aware(v)))
    _time_zone = field_validator("time_zone")(classmethod(lambda cls, v: _iana(v)))
    _lists = field_validator("speakers", "topics")(classmethod(lambda cls, v: _cleared(v)))


class EventPublic(BaseModel):
    id: str
    name: str
    starts_at: datetime
    ends_at: datetime
    time_zone: str
    duration_minutes: int
    join_url: str | None
    address: str | None
    speakers: list[str]
    topics: list[str]
    replay_url: str | None
    survey_url: str | None
    series: str | None
    status: str
    sequence: int = Field(description="How many times the event was rescheduled")
    registrations: int
    created_at: datetime
    updated_at: datetime


class RegistrationCreate(BaseModel):
    model_config = INPUT

    lead_id: LeadId


class RegistrationPublic(BaseModel):
    event_id: str
    lead_id: str
    workflow_id: str
    run_id: str | None = None
    registered_at: datetime
    attended: bool
    detail: str


class AttendanceIn(BaseModel):
    """Who was there: lead ids, emails, or both."""

    model_config = INPUT

    lead_ids: list[LeadId] = Field(default_factory=list, max_length=10_000)
    emails: list[Annotated[OneLine, StringConstraints(max_length=320)]] = Field(
        default_factory=list, max_length=10_000
    )


class AttendancePublic(BaseModel):
    attended: list[str] = Field(
        description="Lead ids marked as attended (their journeys were told)"
    )
    not_registered: list[str] = Field(
        description="Ids or emails given that match no registration to this event"
    )


# Re-engagement sweeps --------------------------------------------------------------------
class SweepCreate(BaseModel):
    """A one-shot re-engagement campaign. Empty body: the daily sweep's settings."""

    model_config = INPUT

    # Strict: `true` is not "1 day" (it started a sweep of everyone inactive for a day), and a
    # campaign's knob is a number, not the text "60".
    inactive_days: StrictInt | None = Field(
        default=None,
        ge=1,
        le=3650,
        description="Leads inactive this many days (default: RELANCE_REENGAGEMENT_INACTIVE_DAYS)",
    )


class SweepPublic(BaseModel):
    workflow_id: str
    run_id: str | None = None
    status: str = Field(
        description="Temporal's execution status of the sweep's latest run: RUNNING, COMPLETED, ..."
    )
    inactive_days: float | None = Field(default=None, description="Given when the sweep is started")
    result: dict | None = Field(
        default=None, description="When completed: pages, leads, started, already_enrolled, runs"
    )


# Sales hand-off tasks -------------------------------------------------------------------
TaskOutcome = Literal["called", "meeting_booked", "not_interested"]
TaskStatus = Literal["open", "done", "escalated"]


class SalesTaskPublic(BaseModel):
    id: str
    lead_id: str
    workflow_id: str
    reason: str
    description: str | None = Field(
        default=None, description="What to do (a defined journey's task node); null: the reason"
    )
    assignee: str | None = Field(description="The rep's email; null when no rep is configured")
    territory: str | None = Field(
        description="The lead country that chose the rep; null: round-robin"
    )
    due_at: datetime
    status: TaskStatus
    outcome: TaskOutcome | None
    note: str | None
    created_at: datetime
    escalated_at: datetime | None
    completed_at: datetime | None


class TaskCompletion(BaseModel):
    model_config = INPUT

    outcome: TaskOutcome = Field(
        description="meeting_booked ends the nurturing as converted; "
        "not_interested stops its marketing emails"
    )
    note: Text | None = Field(default=None, max_length=2000)


# Lead data rights: consents as proof, export, erasure, audit ----------------------
class ConsentPublic(BaseModel):
    """One row of the append-only consent ledger: the proof of a grant or a withdrawal."""

    channel: ConsentChannel
    purpose: str
    status: str = Field(
        description="granted | withdrawn | pending (double opt-in: granted at sign-up, not "
        "confirmed yet; the confirmation is the next row, granted)"
    )
    source_url: str | None = Field(description="The form's page, or how it was withdrawn")
    ip: str | None
    user_agent: str | None
    wording_version: str | None
    recorded_at: datetime


class JourneyRecord(BaseModel):
    """A Temporal execution of one of the lead's journeys (from Temporal's visibility)."""

    workflow_id: str
    run_id: str | None
    workflow_type: str
    status: str = Field(description="RUNNING, COMPLETED, TERMINATED, ...")
    start_time: datetime | None
    close_time: datetime | None


class LeadExport(BaseModel):
    """Everything Relance holds about a lead (right of access)."""

    exported_at: datetime
    lead: dict = Field(description="The profile, as stored")
    data: dict[str, list[dict]] = Field(
        description="Every table holding the lead's rows, by table name: consents (the "
        "ledger), messages, tracking_events, score_events, list_members, "
        "carts, orders, promo_codes, registrations, ..."
    )
    journeys: list[JourneyRecord]


class ErasurePublic(BaseModel):
    lead_id: str
    erased_at: datetime
    journeys_closed: list[str] = Field(
        description="Workflow ids of the journeys terminated and deleted from Temporal"
    )
    rows_deleted: dict[str, int] = Field(description="Rows deleted, by table")
    suppressed: bool = Field(description="The address's keyed hash is on the suppression list")
    kept: dict[str, str] = Field(description="What is kept, and why")


class AuditEntryPublic(BaseModel):
    at: datetime
    actor: str = Field(
        description="api-key:<first 16 hex digits of the key's SHA-256>, or journey:<workflow id>"
    )
    action: str = Field(
        description="lead.read | lead.messages | lead.consents | lead.export | lead.erase"
    )
    lead_id: str
    detail: dict


# Topics and preferences (relance/domain/topics.py, relance/services/preferences.py) --------------
class TopicPublic(BaseModel):
    key: str
    label: str
    description: str
    default: bool = Field(description="On or off for a lead who has not chosen for this topic")


class PreferencesPublic(BaseModel):
    """What the lead receives: their topics (their choice, else the topic's default), their pace,
    and their channels (the channel's marketing consent)."""

    topics: dict[str, bool]
    frequency: Literal["as_sent", "weekly"] = Field(
        description="weekly: at most one marketing message per channel per 7 days"
    )
    paused_until: datetime | None = Field(
        description="No marketing message before this time (null: not paused)"
    )
    channels: dict[str, bool]


class PreferencesUpdate(BaseModel):
    """A change of the lead's preferences, recorded with the evidence "api" (the consent ledger
    for topics and channels, the audit log for all). A field left out is left as it is."""

    model_config = INPUT

    topics: dict[str, StrictBool] | None = Field(
        default=None, description="Topic key (GET /topics) to on or off"
    )
    frequency: Literal["as_sent", "weekly"] | None = None
    pause_weeks: int | None = Field(
        default=None,
        ge=0,
        le=52,
        description="Pause marketing messages this many weeks; 0 ends a pause",
    )
    channels: dict[Literal["email", "sms"], Literal[False]] | None = Field(
        default=None,
        description="Turn a channel's marketing consent off (false). Turning one on needs the "
        "consent's proof (where, which wording): POST /leads with its consents",
    )
