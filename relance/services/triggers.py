"""Entry triggers of the journeys written as data (relance/domain/definitions.py ``triggers``):
what enrolls a lead into a published, not paused, defined journey besides the API.

    event            a custom event kept by ``POST /events/track`` (new, not a retry), its
                     properties equal to the trigger's ``where``          at once, in the request
    list_joined      the lead put on the list (the API, a CSV import, a journey's update)
                                                                          at once
    date             a date attribute of the lead (its month and day every year, or the date
                     itself), ± ``offset_days``, once the lead's local time passed ``at``
                                                                          the hourly sweep,
                     which reads only the leads whose date can be due (a SQL filter on it)
    segment_entered  a lead a member of the segment now and not at the previous evaluation
                                                                          the hourly sweep, and
                     for one lead when a fact its rules read changes (``on_lead_facts``: a
                     custom event, a page view, an open or click, an attribute, a list, the
                     score), after the API answered, or the outbox stamped the hits

Every trigger enrolls through the same ``enroll`` as the API (relance/services/journeys.py): the
journey's rules hold (re-entry, cooldown, exclusions, the concurrent-journeys cap). A refusal is
recorded (``enrollment_refusals``, with the trigger as its source), never an error.

- A date trigger fires once per lead and occurrence: its idempotency key (``trigger_fires``:
  the journey, the trigger, the lead, the local date it fired for) makes the hourly sweep, or a
  retried one, enroll a lead once — once a year for a birthday, whatever the journey's rules. A
  29 February is celebrated on the 28th in the other years.
- A segment-entered trigger enrolls "from now on": its first evaluation after the journey is
  published stores the members and enrolls nobody; each later one enrolls the leads who entered
  since (``segment_trigger_states``, ``segment_trigger_members``).
- A custom event is also a signal, by its name, to the lead's running defined journeys that wait
  for it (``wait_for`` a signal, or a custom event: the signal says which of the waits' property
  filters it meets), sent before any journey it triggers starts. A download is signalled to the
  journeys that wait for one (``wait_for`` downloaded) as it is to the nurturing journey.
"""

from __future__ import annotations

import asyncio
import calendar
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import ColumnElement, delete, func, or_
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from relance.contracts.definitions import WaitedEvent, where_holds, where_key, workflow_id
from relance.contracts.signals import ASSET_DOWNLOADED, AssetSignal
from relance.domain.conditions import Test
from relance.domain.definitions import DateTrigger
from relance.domain.journey_rules import exclusion_reason
from relance.domain.models import (
    EnrollmentRefusal,
    Lead,
    Segment,
    SegmentTriggerMember,
    SegmentTriggerState,
    TriggerFire,
)
from relance.domain.segment_query import ONE_LEAD, Resolver, member_ids, stored_segments
from relance.domain.settings import Settings
from relance.services import journey_store
from relance.services.definitions import entry_for
from relance.services.journey_store import Enrollable, Triggered, TriggerIndex
from relance.services.journeys import Enrollment, enroll

log = logging.getLogger("relance.triggers")


def _index(engine: Engine) -> TriggerIndex:
    with Session(engine) as session:
        return journey_store.trigger_index(session)


# Enrolling ---------------------------------------------------------------------------------------
async def enroll_triggered(
    client: Client,
    settings: Settings,
    engine: Engine,
    *,
    lead_id: str,
    journey: Enrollable,
    source: str,
    refusal_key: str,
) -> Enrollment:
    """Enroll the lead as the API does (the journey's rules); a refusal is recorded under
    ``refusal_key`` (once) with ``source`` (e.g. ``trigger:event:trial_started``)."""

    def score() -> int:
        with Session(engine) as session:
            lead = session.get(Lead, lead_id)
            return lead.score if lead is not None else 0

    async def excluded(rules: tuple[str, ...]) -> str:
        def reason() -> str:
            with Session(engine) as session:
                return exclusion_reason(session, lead_id, rules)

        return await asyncio.to_thread(reason)

    enrollment = await enroll(
        client,
        settings,
        lead_id=lead_id,
        score=await asyncio.to_thread(score),
        journey=entry_for(journey.key),
        keys={"key": journey.key},
        inputs={"definition": journey.compiled},
        rules=journey.rules,
        excluded=excluded,
    )
    if enrollment.status == "refused":
        await asyncio.to_thread(_record_refusal, engine, enrollment, source, refusal_key)
    log.info("%s: lead %s, %s: %s", source, lead_id, journey.key, enrollment.detail)
    return enrollment


def _record_refusal(engine: Engine, enrollment: Enrollment, source: str, key: str) -> None:
    with Session(engine) as session:
        session.add(
            EnrollmentRefusal(
                refusal_key=key[:300],
                lead_id=enrollment.lead_id,
                workflow_id=enrollment.workflow_id,
                source=source[:64],
                target=enrollment.journey[:64],
                chain=[],
                reason=enrollment.detail[:500],
            )
        )
        try:
            session.commit()
        except IntegrityError:  # recorded already (the same trigger, run again)
            session.rollback()


# Events and lists (in the API's request) ---------------------------------------------------------
def event_matches(triggered: Triggered, name: str, properties: dict[str, Any]) -> bool:
    return any(
        t.event is not None
        and t.event.name == name
        and all(properties.get(k) == v for k, v in t.event.where.items())
        for t in triggered.triggers
    )


def list_matches(triggered: Triggered, list_name: str) -> bool:
    return any(
        t.list_joined is not None and t.list_joined.list == list_name for t in triggered.triggers
    )


async def on_custom_event(
    client: Client,
    settings: Settings,
    engine: Engine,
    *,
    lead_id: str,
    name: str,
    properties: dict[str, Any],
    event_id: str | None = None,
) -> tuple[list[str], list[Enrollment]]:
    """A custom event newly kept: signalled (by its name) to the lead's running defined journeys
    that wait for it, then the journeys it triggers entered. Returns (the journeys told, the
    enrollments)."""
    index = await asyncio.to_thread(_index, engine)
    told = await tell_waiting(client, index, lead_id=lead_id, name=name, properties=properties)
    enrollments = []
    for triggered in index.journeys:
        if event_matches(triggered, name, properties):
            enrollments.append(
                await enroll_triggered(
                    client,
                    settings,
                    engine,
                    lead_id=lead_id,
                    journey=triggered.journey,
                    source=f"trigger:event:{name}",
                    refusal_key=f"trigger:event:{triggered.journey.key}:{lead_id}:"
                    f"{event_id or datetime.now().isoformat()}",
                )
            )
    return told, enrollments


async def tell_waiting(
    client: Client,
    index: TriggerIndex,
    *,
    lead_id: str,
    name: str,
    properties: dict[str, Any] | None = None,
    payload: Any = None,
) -> list[str]:
    """Signal ``name`` to the lead's running defined journeys whose definition waits for it, one
    after the other (a signal is accepted by the server, never waits for the journey to run).
    A custom event's signal (``properties`` given) carries which of the journey's waits' property
    filters the event meets (``WaitedEvent``: the filters' keys, never the properties); another
    signal carries ``payload`` (a download: its ``AssetSignal``)."""
    told = []
    for key in index.waiting.get(name, ()):
        target = workflow_id(key, lead_id)
        args = [] if payload is None else [payload]
        if properties is not None:
            filters = index.filters.get(name, {}).get(key, ())
            args = [WaitedEvent([where_key(w) for w in filters if where_holds(w, properties)])]
        try:
            await client.get_workflow_handle(target).signal(name, *args)
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            continue
        told.append(target)
    return told


async def on_download(client: Client, engine: Engine, *, lead_id: str, asset: str) -> list[str]:
    """A download (``asset_downloaded``): signalled, as the nurturing journey gets it, to the
    lead's running defined journeys that wait for a download (``wait_for`` downloaded)."""
    index = await asyncio.to_thread(_index, engine)
    return await tell_waiting(
        client, index, lead_id=lead_id, name=ASSET_DOWNLOADED, payload=AssetSignal(asset)
    )


async def on_list_joined(
    client: Client, settings: Settings, engine: Engine, *, lead_ids: list[str], list_name: str
) -> list[Enrollment]:
    """Leads newly put on ``list_name``: the journeys with a ``list_joined`` trigger of it."""
    if not lead_ids:
        return []
    index = await asyncio.to_thread(_index, engine)
    enrollments = []
    stamp = datetime.now().isoformat()
    for triggered in index.journeys:
        if not list_matches(triggered, list_name):
            continue
        for lead_id in lead_ids:
            enrollments.append(
                await enroll_triggered(
                    client,
                    settings,
                    engine,
                    lead_id=lead_id,
                    journey=triggered.journey,
                    source=f"trigger:list:{list_name}",
                    refusal_key=f"trigger:list:{triggered.journey.key}:{lead_id}:{stamp}",
                )
            )
    return enrollments


# Dates and segments (the hourly sweep) ----------------------------------------------------------
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _anniversary(value: date, year: int) -> date:
    """The date's month and day in ``year``: a 29 February is the 28th in the other years."""
    try:
        return value.replace(year=year)
    except ValueError:
        return date(year, 2, 28)


def occurrence(trigger: DateTrigger, value: date, now_local: datetime) -> date | None:
    """The date the trigger fires for today in the lead's zone (its idempotency), or None when
    today is not the day or the local time has not passed ``at`` yet."""
    hour, minute = (int(p) for p in trigger.at.split(":"))
    if now_local.time() < time(hour, minute):
        return None
    today = now_local.date()
    offset = timedelta(days=trigger.offset_days)
    if not trigger.every_year:
        return today if value + offset == today else None
    for year in (today.year - 1, today.year, today.year + 1):
        if _anniversary(value, year) + offset == today:
            return today
    return None


@dataclass
class SweepResult:
    date_enrolled: int = 0
    segment_enrolled: int = 0
    refused: int = 0
    segments_evaluated: int = 0


def local_dates(now: datetime) -> list[date]:
    """The calendar dates it is somewhere at ``now``: time zones run from UTC−12 to UTC+14, so a
    lead's local date is the UTC date, the day before or the day after."""
    today = now.astimezone(UTC).date()
    return [today - timedelta(days=1), today, today + timedelta(days=1)]


def can_be_due(trigger: DateTrigger, now: datetime) -> ColumnElement[bool]:
    """Whether the lead's date attribute can make the trigger due at ``now`` in some time zone:
    the date itself (± the offset) on one of ``local_dates``, or for ``every_year`` its month
    and day (a 29 February on a 28 February of a year with none). A SQL filter read by the JSON
    accessors (SQLite and PostgreSQL alike); ``occurrence`` decides in the lead's own zone and
    at its local time among the leads it lets through."""
    value = col(Lead.attributes)[trigger.attribute].as_string()
    targets = [d - timedelta(days=trigger.offset_days) for d in local_dates(now)]
    if not trigger.every_year:
        return value.in_(sorted({t.isoformat() for t in targets}))
    days = {t.strftime("%m-%d") for t in targets}
    if any((t.month, t.day) == (2, 28) and not calendar.isleap(t.year) for t in targets):
        days.add("02-29")
    return func.substr(value, 6, 5).in_(sorted(days))


def date_candidates(
    session: Session, triggers: list[DateTrigger], now: datetime
) -> list[tuple[str, str, dict]]:
    """(lead id, time zone, attributes) of the leads some of ``triggers`` can be due for at
    ``now`` (``can_be_due``): what the sweep reads instead of every lead."""
    if not triggers:
        return []
    query = select(Lead.id, Lead.time_zone, Lead.attributes).where(
        or_(*(can_be_due(t, now) for t in triggers))
    )
    return [tuple(row) for row in session.exec(query).all()]


def _due_dates(
    engine: Engine, index: TriggerIndex, now: datetime
) -> list[tuple[Triggered, str, str]]:
    """(journey, lead id, fire key) for each date trigger due now, its fire recorded (the
    idempotency key: a lead fires once per occurrence). Only the leads whose date can be due
    today somewhere are read (``date_candidates``)."""
    dated = [
        (t, i, trigger.date)
        for t in index.journeys
        for i, trigger in enumerate(t.triggers)
        if trigger.date is not None
    ]
    if not dated:
        return []
    due = []
    with Session(engine) as session:
        leads = date_candidates(session, [trigger for _, _, trigger in dated], now)
        for lead_id, zone, attributes in leads:
            local = now.astimezone(_zone(zone))
            for triggered, i, trigger in dated:
                raw = (attributes or {}).get(trigger.attribute)
                if not isinstance(raw, str):
                    continue
                try:
                    value = date.fromisoformat(raw)
                except ValueError:
                    continue
                fired_for = occurrence(trigger, value, local)
                if fired_for is None:
                    continue
                key = f"{triggered.journey.key}:{i}:{lead_id}:{fired_for.isoformat()}"
                if session.get(TriggerFire, key) is not None:
                    continue
                session.add(
                    TriggerFire(fire_key=key, lead_id=lead_id, journey=triggered.journey.key)
                )
                try:
                    session.commit()
                except IntegrityError:  # another sweep fired it
                    session.rollback()
                    continue
                due.append((triggered, lead_id, key))
    return due


def _unfire(engine: Engine, key: str) -> None:
    with Session(engine) as session:
        row = session.get(TriggerFire, key)
        if row is not None:
            session.delete(row)
            session.commit()


def _segment_entries(
    engine: Engine, settings: Settings, index: TriggerIndex, now: datetime
) -> tuple[int, list[tuple[Triggered, str, str]]]:
    """(segments evaluated, [(journey, lead id, segment id)] for the leads who entered each
    segment since its previous evaluation). The first evaluation enrolls nobody."""
    entries, evaluated = [], 0
    with Session(engine) as session:
        for triggered in index.journeys:
            for trigger in triggered.triggers:
                if trigger.segment_entered is None:
                    continue
                segment_id = trigger.segment_entered.segment
                for _ in range(3):  # a member the lead's own facts recorded meanwhile: again
                    try:
                        found = _evaluate_segment(session, settings, triggered, segment_id, now)
                    except IntegrityError:
                        session.rollback()
                        continue
                    break
                else:
                    log.warning("segment %s of %s: not evaluated", segment_id, triggered.journey)
                    continue
                if found is not None:
                    evaluated += 1
                    entries += found
    return evaluated, entries


def _evaluate_segment(
    session: Session, settings: Settings, triggered: Triggered, segment_id: str, now: datetime
) -> list[tuple[Triggered, str, str]] | None:
    """The segment evaluated for the journey's trigger, its members stored: the leads who
    entered since the previous evaluation (none at the first), None if the segment is gone."""
    row = session.get(Segment, segment_id)
    if row is None:  # deleted since: nobody enters it
        return None
    members = member_ids(session, Test.model_validate(row.rules), settings, now=now)
    key = triggered.journey.key
    where = (
        col(SegmentTriggerMember.journey) == key,
        col(SegmentTriggerMember.segment_id) == segment_id,
    )
    before = set(session.exec(select(SegmentTriggerMember.lead_id).where(*where)))
    now_in = set(members)
    entries = []
    state = session.get(SegmentTriggerState, (key, segment_id))
    if state is None:  # the first evaluation: "from now on"
        state = SegmentTriggerState(journey=key, segment_id=segment_id)
    else:
        entries = [(triggered, m, segment_id) for m in members if m not in before]
    left = before - now_in
    if left:
        session.execute(
            delete(SegmentTriggerMember).where(*where, col(SegmentTriggerMember.lead_id).in_(left))
        )
    session.add_all(
        SegmentTriggerMember(journey=key, segment_id=segment_id, lead_id=m)
        for m in members
        if m not in before
    )
    state.evaluated_at = now
    session.add(state)
    session.commit()
    return entries


async def sweep(client: Client, settings: Settings, engine: Engine, now: datetime) -> SweepResult:
    """The hourly sweep at ``now``: the date triggers due, the segments' new members."""
    journey_store.invalidate_triggers()  # the sweep reads the journeys as they are now
    index = await asyncio.to_thread(_index, engine)
    result = SweepResult()
    for triggered, lead_id, key in await asyncio.to_thread(_due_dates, engine, index, now):
        try:
            enrollment = await enroll_triggered(
                client,
                settings,
                engine,
                lead_id=lead_id,
                journey=triggered.journey,
                source="trigger:date",
                refusal_key=f"trigger:date:{key}",
            )
        except BaseException:
            await asyncio.to_thread(_unfire, engine, key)  # a retried sweep fires it again
            raise
        result.date_enrolled += enrollment.status == "started"
        result.refused += enrollment.status == "refused"
    evaluated, entries = await asyncio.to_thread(_segment_entries, engine, settings, index, now)
    result.segments_evaluated = evaluated
    for triggered, lead_id, segment_id in entries:
        enrollment = await enroll_triggered(
            client,
            settings,
            engine,
            lead_id=lead_id,
            journey=triggered.journey,
            source=f"trigger:segment:{segment_id}",
            refusal_key=f"trigger:segment:{triggered.journey.key}:{lead_id}:{now.isoformat()}",
        )
        result.segment_enrolled += enrollment.status == "started"
        result.refused += enrollment.status == "refused"
    return result


# Segments, on the facts they read (off the request's path) --------------------------------------
# What changed about a lead, and the rule tests that read it.
TRACKED, EVENT, ATTRIBUTE, LIST, SCORE = "tracked", "event", "attribute", "list", "score"
READ_BY = {
    "message": TRACKED,  # an email opened or clicked (the tracking outbox)
    "page": TRACKED,  # a page view told to POST /events/track
    "event": EVENT,
    "attribute": ATTRIBUTE,
    "in_list": LIST,
    "score": SCORE,
    "segment": SCORE,  # hot / warm / cold: score ranges
    "stage": SCORE,  # mql is a score threshold
}


def facts_read(test: Test, resolve: Resolver, trail: tuple[str, ...] = ()) -> set[str]:
    """The kinds of facts the rule tree reads (``READ_BY``), through the segments it names."""
    found: set[str] = set()
    for _, leaf in test.walk():
        if leaf.in_segment is not None:
            inner = None if leaf.in_segment in trail else resolve(leaf.in_segment)
            if inner is not None:
                found |= facts_read(inner, resolve, (*trail, leaf.in_segment))
        elif leaf.kind in READ_BY:
            found.add(READ_BY[leaf.kind])
    return found


def _entries_of_leads(
    engine: Engine,
    settings: Settings,
    index: TriggerIndex,
    lead_ids: list[str],
    facts: frozenset[str],
    now: datetime,
) -> list[tuple[Triggered, str, str]]:
    """[(journey, lead id, segment id)] for the leads who are members now of a segment-entered
    trigger's segment whose rules read one of ``facts``, and were not at its last evaluation.
    Their member rows are written first, one at a time: a row the sweep (or another fact) wrote
    meanwhile means the lead entered there, and it is not entered again. A trigger the sweep has
    not evaluated yet enrolls nobody ("from now on" starts at its first evaluation)."""
    entries = []
    with Session(engine) as session:
        resolve = stored_segments(session)
        for triggered in index.journeys:
            key = triggered.journey.key
            for trigger in triggered.triggers:
                if trigger.segment_entered is None:
                    continue
                segment_id = trigger.segment_entered.segment
                rules = resolve(segment_id)
                if rules is None or not facts & facts_read(rules, resolve):
                    continue
                if session.get(SegmentTriggerState, (key, segment_id)) is None:
                    continue
                members = set(
                    member_ids(
                        session, rules, settings, now=now, lead_ids=lead_ids, strategy=ONE_LEAD
                    )
                )
                where = (
                    col(SegmentTriggerMember.journey) == key,
                    col(SegmentTriggerMember.segment_id) == segment_id,
                    col(SegmentTriggerMember.lead_id).in_(lead_ids),
                )
                before = set(session.exec(select(SegmentTriggerMember.lead_id).where(*where)))
                left = before - members
                if left:  # they may enter again later
                    session.execute(
                        delete(SegmentTriggerMember).where(
                            *where, col(SegmentTriggerMember.lead_id).in_(left)
                        )
                    )
                    session.commit()
                for lead_id in sorted(members - before):
                    session.add(
                        SegmentTriggerMember(journey=key, segment_id=segment_id, lead_id=lead_id)
                    )
                    try:
                        session.commit()
                    except IntegrityError:  # the sweep recorded it: it entered there
                        session.rollback()
                        continue
                    entries.append((triggered, lead_id, segment_id))
    return entries


def _forget_member(engine: Engine, journey: str, segment_id: str, lead_id: str) -> None:
    with Session(engine) as session:
        row = session.get(SegmentTriggerMember, (journey, segment_id, lead_id))
        if row is not None:
            session.delete(row)
            session.commit()


async def on_lead_facts(
    client: Client,
    settings: Settings,
    engine: Engine,
    *,
    lead_ids: list[str],
    facts: tuple[str, ...] | frozenset[str],
    now: datetime | None = None,
) -> list[Enrollment]:
    """Something of ``facts`` (``READ_BY``'s kinds) changed about these leads: the
    segment-entered triggers whose rules read it are evaluated for these leads alone, and the
    leads who entered the segment enter the journey (its rules hold, as in the sweep). Called
    after the change is stored, off the public endpoints' path: by the tracking outbox (opens,
    clicks, their scores), by the worker's activities (a journey's list change or score), and
    in a background task after the API has answered (custom events, page views, attributes,
    lists). A lead missed here (the process stopped) enters at the next hourly sweep."""
    wanted = sorted(set(lead_ids))
    if not wanted:
        return []
    index = await asyncio.to_thread(_index, engine)
    if not any(t.segment_entered for j in index.journeys for t in j.triggers):
        return []
    at = now or datetime.now(UTC)
    entries = await asyncio.to_thread(
        _entries_of_leads, engine, settings, index, wanted, frozenset(facts), at
    )
    enrollments = []
    for triggered, lead_id, segment_id in entries:
        try:
            enrollment = await enroll_triggered(
                client,
                settings,
                engine,
                lead_id=lead_id,
                journey=triggered.journey,
                source=f"trigger:segment:{segment_id}",
                refusal_key=f"trigger:segment:{triggered.journey.key}:{lead_id}:{at.isoformat()}",
            )
        except BaseException:  # not entered: the next sweep finds it a new member again
            await asyncio.to_thread(
                _forget_member, engine, triggered.journey.key, segment_id, lead_id
            )
            raise
        enrollments.append(enrollment)
    return enrollments


async def reevaluate_segments(
    client: Client,
    settings: Settings,
    engine: Engine,
    *,
    lead_ids: list[str],
    facts: tuple[str, ...],
) -> list[Enrollment]:
    """``on_lead_facts`` for a caller that has answered already (a background task, the
    outbox): a failure is logged, never raised; the hourly sweep makes up for it."""
    try:
        return await on_lead_facts(client, settings, engine, lead_ids=lead_ids, facts=facts)
    except Exception:  # noqa: BLE001 - best effort; the sweep enrolls whoever was missed
        log.exception("segment triggers on %s of %d leads: not evaluated", facts, len(lead_ids))
        return []
