"""Lead writes and reads shared by the routes (keyword-only, one session passed in)."""

from __future__ import annotations

from datetime import datetime

import phonenumbers
from fastapi import HTTPException, status
from sqlalchemy import insert, update
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from api.schemas import CartIn, LeadCreate, LeadPublic, OrderIn
from relance.contracts.channels import CONSENT_CHANNELS
from relance.domain.consent import GRANTED, PENDING, WITHDRAWN, current_consents, has_consent
from relance.domain.db import retry_on_conflict
from relance.domain.lead_schema import AttributeProblems, merged_attributes, write_attributes
from relance.domain.models import (
    Cart,
    Consent,
    CustomEvent,
    Lead,
    LeadActivity,
    MqlNotification,
    Order,
    PromoCode,
    ScoreEvent,
    as_utc,
    utcnow,
)
from relance.domain.scoring import (
    fit_changes,
    form_change,
    new_lead_scores,
    score_fit,
    score_form,
    score_page_view,
)
from relance.domain.segments import (
    new_lead_segment_and_stage,
    segment_and_stage,
    segment_expr,
    stage_expr,
)
from relance.domain.settings import Settings, get_settings
from relance.domain.suppression import normalize_email, suppression_of
from relance.services.lead_activity import FollowUp, follow_ups, note_activity

__all__ = ["normalize_email"]  # re-exported: the routes and events use it from here


def normalize_phone(phone: str, default_region: str) -> str:
    def invalid(msg: str) -> HTTPException:
        return HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [{"loc": ["body", "phone"], "msg": msg, "type": "value_error", "input": phone}],
        )

    try:
        number = phonenumbers.parse(phone, default_region)
    except phonenumbers.NumberParseException as err:
        raise invalid(f"not a phone number: {err}") from err
    if not phonenumbers.is_valid_number(number):
        raise invalid("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def get_lead_by_email(*, session: Session, email: str) -> Lead | None:
    return session.exec(select(Lead).where(Lead.email == normalize_email(email))).first()


@retry_on_conflict
def upsert_lead(
    *,
    session: Session,
    data: LeadCreate,
    default_phone_region: str,
    suppression_key: str = "",
    settings: Settings | None = None,
    form: bool = True,
    consented_at: datetime | None = None,
    double_opt_in: bool = False,
) -> tuple[Lead, bool]:
    """Create the lead, or update the one with the same normalised email. Commits. A concurrent
    sign-up of the same address that inserted it first makes this one an update, as if it came
    second (``retry_on_conflict``).

    With ``suppression_key`` (Settings.suppression_hash_key), an address erased at the person's
    request (on the suppression list) is refused with 409 and nothing is stored; an address
    suppressed by an unsubscribe comes off the list when the sign-up grants email consent again.

    With ``double_opt_in``, an email consent granted by a lead whose email consent is not granted
    already is recorded ``pending`` (same evidence): it counts once the lead confirms
    (relance/confirmation.py), and an unsubscribed address stays suppressed until then. A lead
    who confirmed before is not asked again.

    With ``settings``, the lead is scored per the scoring rules: the form (``form``: a sign-up,
    not an import) and the demographic fit rules it now matches.

    A new lead is written without the ORM's unit of work (``_insert_new_lead``): the same rows,
    computed first, then one insert per table; an existing one is updated through the ORM."""
    if suppression_key:
        entry = suppression_of(session, suppression_key, data.email)
        if entry is not None and entry.reason == "erased":
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                "this address was erased at the person's request and is on "
                "the suppression list: it is not signed up or contacted again",
            )
    else:
        entry = None
    phone = normalize_phone(data.phone, default_phone_region) if data.phone else None
    now = utcnow()
    lead = get_lead_by_email(session=session, email=data.email)
    created = lead is None
    # Double opt-in: a new email consent waits for the lead's confirmation.
    pending = double_opt_in and not (lead is not None and has_consent(session, lead.id, "email"))
    if (
        entry is not None
        and not pending
        and any(c.channel == "email" and c.granted for c in data.consents)
    ):
        session.delete(
            entry
        )  # unsubscribed, and now opts in again explicitly (recorded in the ledger below)
    if lead is None:
        lead = _insert_new_lead(
            session,
            data,
            phone=phone,
            now=now,
            form=form,
            consented_at=consented_at,
            pending=pending,
            settings=settings,
        )
        return lead, True
    for field in ("first_name", "locale", "time_zone", "country"):
        if field in data.model_fields_set or created:
            setattr(lead, field, getattr(data, field))
    if phone:
        lead.phone = phone
    if data.attributes:  # checked against the lead schema by the caller (checked_attributes)
        lead.attributes = merged_attributes(lead.attributes, data.attributes)
    lead.updated_at = now
    # an import is not a sign-up; a sign-up is the lead's activity (note_activity, in the same
    # write)
    if form:
        lead.last_signup_at = lead.last_activity_at = now
    session.add(lead)
    session.flush()
    if form:
        session.add(LeadActivity(lead_id=lead.id, kind="form", at=now))
    for consent in _consent_rows(data, lead.id, pending=pending, at=consented_at or now):
        session.add(consent)
    if settings is not None:
        rules = settings.scoring_rules()
        if form:
            source = next((str(c.source_url) for c in data.consents if c.source_url), None)
            score_form(
                session,
                rules,
                lead_id=lead.id,
                source_url=source,
                mql_threshold=settings.score_mql_threshold,
                now=now,
            )
        score_fit(session, rules, lead=lead, mql_threshold=settings.score_mql_threshold, now=now)
    session.commit()
    session.refresh(lead)
    return lead, created


def unprocessable(where: list[str], problems: dict[str, str]) -> HTTPException:
    """422 with one entry per problem, its ``loc`` naming the field (``where`` + the key)."""
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        [
            {"loc": [*where, key] if key else where, "msg": msg, "type": "value_error"}
            for key, msg in problems.items()
        ],
    )


def checked_attributes(settings: Settings, values: dict | None, where: list[str]) -> dict | None:
    """Custom attribute values as stored, checked against the lead schema; 422 naming each
    attribute at fault (nothing is written)."""
    if not values:
        return values
    try:
        return settings.lead_schema().check_attributes(values)
    except AttributeProblems as err:
        raise unprocessable(where, err.problems) from None


def set_attributes(
    *, session: Session, lead_id: str, values: dict, settings: Settings
) -> LeadPublic:
    """Merge checked custom attributes into the lead's. Commits. 404 for an unknown lead."""
    lead = get_lead_or_404(session=session, lead_id=lead_id)
    write_attributes(lead, values)
    session.add(lead)
    session.commit()
    session.refresh(lead)
    return lead_public(session=session, lead=lead, settings=settings)


def save_custom_event(
    *,
    session: Session,
    lead_id: str,
    name: str,
    properties: dict,
    event_id: str | None,
    occurred_at: datetime | None,
) -> bool:
    """Keep the event (once per sender's ``event_id``) and stamp the lead's activity. Commits.
    Returns False for an event already kept; 404 for an unknown lead."""
    get_lead_or_404(session=session, lead_id=lead_id)
    if event_id is not None:
        seen = session.exec(
            select(CustomEvent.id).where(
                CustomEvent.lead_id == lead_id, CustomEvent.event_id == event_id
            )
        ).first()
        if seen is not None:
            return False
    now = utcnow()
    session.add(
        CustomEvent(
            lead_id=lead_id,
            name=name,
            properties=properties,
            event_id=event_id,
            occurred_at=occurred_at or now,
            received_at=now,
        )
    )
    note_activity(session, lead_id=lead_id, kind="custom")
    try:
        session.commit()
    except IntegrityError:  # the same event sent twice at once: the other one kept it
        session.rollback()
        return False
    return True


def _consent_rows(data: LeadCreate, lead_id: str, *, pending: bool, at: datetime) -> list[Consent]:
    """The consent ledger's rows of a sign-up: its evidence, each consent as given (a new email
    consent ``pending`` under double opt-in)."""
    return [
        Consent(
            lead_id=lead_id,
            channel=consent.channel,
            purpose=consent.purpose,
            status=(
                WITHDRAWN
                if not consent.granted
                else PENDING
                if pending and consent.channel == "email" and consent.purpose == "marketing"
                else GRANTED
            ),
            source_url=str(consent.source_url) if consent.source_url else None,
            ip=str(consent.ip) if consent.ip else None,
            user_agent=consent.user_agent,
            wording_version=consent.wording_version,
            recorded_at=at,
        )
        for consent in data.consents
    ]


def _insert_new_lead(
    session: Session,
    data: LeadCreate,
    *,
    phone: str | None,
    now: datetime,
    form: bool,
    consented_at: datetime | None,
    pending: bool,
    settings: Settings | None,
) -> Lead:
    """A new lead with everything its sign-up writes — its form activity, its consents, its score
    changes and any MQL notification — computed in Python and inserted table by table, then
    committed: what ``upsert_lead`` writes for a new lead through the ORM, without the unit of
    work's flushes and read-backs (most of a sign-up's CPU). An address inserted meanwhile by a
    concurrent sign-up fails the insert, and ``retry_on_conflict`` makes this one an update."""
    lead = Lead(
        email=normalize_email(data.email),
        first_name=data.first_name,
        phone=phone,
        locale=data.locale,
        time_zone=data.time_zone,
        country=data.country,
        attributes=merged_attributes({}, data.attributes or {}),
        created_at=now,
        updated_at=now,
    )
    if form:
        lead.last_signup_at = lead.last_activity_at = now
    activities = [LeadActivity(lead_id=lead.id, kind="form", at=now)] if form else []
    consents = _consent_rows(data, lead.id, pending=pending, at=consented_at or now)
    events: list[ScoreEvent] = []
    notifications: list[MqlNotification] = []
    if settings is not None:
        rules = settings.scoring_rules()
        changes = fit_changes(rules, lead)
        if form:
            source = next((str(c.source_url) for c in data.consents if c.source_url), None)
            change = form_change(rules, lead_id=lead.id, source_url=source, now=now)
            changes = ([change] if change else []) + changes  # the form first, as it is scored
        lead.score, events, notifications = new_lead_scores(
            changes, lead_id=lead.id, mql_threshold=settings.score_mql_threshold, now=now
        )
        if any(change.activity for change in changes):
            lead.last_activity_at = now
    for model, rows in (
        (Lead, [lead]),
        (LeadActivity, activities),
        (Consent, consents),
        (ScoreEvent, events),
        (MqlNotification, notifications),
    ):
        if rows:
            session.execute(insert(model.__table__), [_values(row) for row in rows])
    session.commit()
    return lead


def _values(row) -> dict:
    """A row's columns for an insert (an id the database numbers left out)."""
    values = row.model_dump()
    if values.get("id", "") is None:
        del values["id"]
    return values


def get_lead_or_404(*, session: Session, lead_id: str) -> Lead:
    lead = session.get(Lead, lead_id)
    if lead is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no lead with id {lead_id}")
    return lead


def lead_public(*, session: Session, lead: Lead, settings: Settings | None = None) -> LeadPublic:
    """The lead as the API shows it: its segment and stage in one query, its current consent per
    channel in another."""
    settings = settings or get_settings()
    segment, stage = segment_and_stage(session, lead.id, settings)
    consents = current_consents(session, lead.id, CONSENT_CHANNELS)
    return _public(lead, consents, segment, stage)


def _public(lead: Lead, consents: dict[str, str], segment: str, stage: str) -> LeadPublic:
    return LeadPublic(
        id=lead.id,
        email=lead.email,
        first_name=lead.first_name,
        phone=lead.phone,
        locale=lead.locale,
        time_zone=lead.time_zone,
        country=lead.country,
        score=lead.score,
        consents=consents,
        created_at=as_utc(lead.created_at),
        updated_at=as_utc(lead.updated_at),
        last_activity_at=as_utc(lead.last_activity_at),
        reengagement_status=lead.reengagement_status,
        reengagement_at=as_utc(lead.reengagement_at),
        premium_offered_at=as_utc(lead.premium_offered_at),
        attributes=dict(lead.attributes or {}),
        segment=segment,
        stage=stage,
    )


def new_lead_public(*, lead: Lead, consents: list[Consent], settings: Settings) -> LeadPublic:
    """``lead_public`` of a lead its sign-up just inserted (``_insert_new_lead``), from what it
    wrote: the consents it recorded, the segment and stage of a lead with no order or sales task
    yet — no query."""
    current = dict.fromkeys(CONSENT_CHANNELS, "none")
    for consent in consents:  # in the ledger's order: the last row of a channel is current
        if consent.purpose == "marketing" and consent.channel in current:
            current[consent.channel] = consent.status
    segment, stage = new_lead_segment_and_stage(
        lead.score, settings, form=lead.last_signup_at is not None
    )
    return _public(lead, current, segment, stage)


def save_sign_up(
    *,
    session: Session,
    data: LeadCreate,
    default_phone_region: str,
    suppression_key: str = "",
    settings: Settings | None = None,
) -> tuple[LeadPublic, bool]:
    double_opt_in = settings is not None and settings.double_opt_in
    lead, created = upsert_lead(
        session=session,
        data=data,
        default_phone_region=default_phone_region,
        suppression_key=suppression_key,
        settings=settings,
        double_opt_in=double_opt_in,
    )
    if created:  # what it wrote, not read back
        consents = _consent_rows(data, lead.id, pending=double_opt_in, at=lead.created_at)
        return new_lead_public(
            lead=lead, consents=consents, settings=settings or get_settings()
        ), created
    return lead_public(session=session, lead=lead, settings=settings), created


def read_lead_public(
    *, session: Session, lead_id: str, settings: Settings | None = None
) -> LeadPublic:
    return lead_public(
        session=session, lead=get_lead_or_404(session=session, lead_id=lead_id), settings=settings
    )


def list_leads(
    *,
    session: Session,
    settings: Settings,
    segment: str | None,
    stage: str | None,
    limit: int,
    after: str | None,
) -> tuple[list[LeadPublic], str | None]:
    """A page of leads (by id), filtered by segment and stage; the cursor of the next page."""
    query = sa_select(Lead).where(col(Lead.id) > (after or ""))
    if segment:
        query = query.where(segment_expr(settings) == segment)
    if stage:
        query = query.where(stage_expr(settings) == stage)
    rows = session.exec(query.order_by(col(Lead.id)).limit(limit + 1)).scalars().all()
    page = [lead_public(session=session, lead=lead, settings=settings) for lead in rows[:limit]]
    return page, (rows[limit - 1].id if len(rows) > limit else None)


@retry_on_conflict
def save_cart(*, session: Session, lead_id: str, cart: CartIn) -> int:
    """Store the cart as the shop reports it now; returns its number of items. 404 for an unknown
    lead. Concurrent first updates of one new cart: the later ones update the row the first made."""
    get_lead_or_404(session=session, lead_id=lead_id)
    row = session.get(Cart, cart.id)
    if row is not None and row.lead_id != lead_id:
        raise HTTPException(status.HTTP_409_CONFLICT, f"cart {cart.id} belongs to another lead")
    row = row or Cart(id=cart.id, lead_id=lead_id)
    row.items = [item.model_dump(mode="json") for item in cart.items]
    row.currency, row.total, row.updated_at = cart.currency, cart.total, utcnow()
    row.status = "open" if cart.items else "emptied"
    session.add(row)
    note_activity(session, lead_id=lead_id, kind="cart_updated")
    session.commit()
    return len(cart.items)


@retry_on_conflict
def save_order(*, session: Session, lead_id: str, order: OrderIn) -> bool:
    """Store the order (once: a retried event finds it, a concurrent one too) and close the
    lead's open carts. Returns whether it was new."""
    get_lead_or_404(session=session, lead_id=lead_id)
    existing = session.get(Order, order.id)
    if existing is not None:
        if existing.lead_id != lead_id:
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"order {order.id} belongs to another lead"
            )
        return False
    if order.promo_code is not None:
        _redeem(session, lead_id, order.promo_code)
    session.add(
        Order(
            id=order.id,
            lead_id=lead_id,
            cart_id=order.cart_id,
            currency=order.currency,
            total=order.total,
            items=[item.model_dump(mode="json") for item in order.items],
        )
    )
    session.execute(
        update(Cart)
        .where(col(Cart.lead_id) == lead_id, col(Cart.status) == "open")
        .values(status="purchased")
    )
    note_activity(session, lead_id=lead_id, kind="purchase")
    session.commit()
    return True


def _redeem(session: Session, lead_id: str, code: str) -> None:
    """The order uses the lead's single-use promo code: once, before it expires; 422 naming the
    code otherwise (and nothing is stored)."""
    promo = session.get(PromoCode, code)
    where = ["body", "order", "promo_code"]
    if promo is None or promo.lead_id != lead_id:
        raise unprocessable(where, {"": f"{code} is no promo code of this lead"})
    if promo.redeemed_at is not None:
        raise unprocessable(where, {"": f"{code} was already used (single use)"})
    if promo.expires_at is not None and as_utc(promo.expires_at) < utcnow():
        raise unprocessable(where, {"": f"{code} expired on {promo.expires_at:%Y-%m-%d}"})
    used = session.execute(  # at most once, even with two orders at the same moment
        update(PromoCode)
        .where(col(PromoCode.code) == code, col(PromoCode.redeemed_at).is_(None))
        .values(redeemed_at=utcnow())
    )
    if used.rowcount != 1:
        raise unprocessable(where, {"": f"{code} was already used (single use)"})


def save_page_view(
    *,
    session: Session,
    lead_id: str,
    url: str,
    category: str | None = None,
    settings: Settings | None = None,
) -> None:
    """A visit: stamps the lead's last activity and keeps it (counted for the premium offer, with
    its category for browse abandonment), and scores it per the page rules (with ``settings``).
    404 for an unknown lead."""
    get_lead_or_404(session=session, lead_id=lead_id)
    note_activity(session, lead_id=lead_id, kind="page_view", url=url[:2048], category=category)
    if settings is not None:
        try:
            score_page_view(
                session,
                settings.scoring_rules(),
                lead_id=lead_id,
                url=url,
                mql_threshold=settings.score_mql_threshold,
            )
            session.commit()
            return
        except IntegrityError:  # the same view, scored by a concurrent request a moment ago
            session.rollback()
            note_activity(
                session, lead_id=lead_id, kind="page_view", url=url[:2048], category=category
            )
    session.commit()


def activity_follow_ups(
    *, session: Session, settings: Settings, lead_id: str, kind: str
) -> list[FollowUp]:
    """What the lead's activity sets in motion (re-engagement journey told, premium offer due)."""
    return follow_ups(session, settings, {lead_id: kind})


def touch_lead(*, session: Session, lead_id: str, kind: str) -> None:
    """The lead did something (a download, a booking): stamps its last activity. 404 for an unknown
    lead."""
    get_lead_or_404(session=session, lead_id=lead_id)
    note_activity(session, lead_id=lead_id, kind=kind)
    session.commit()
