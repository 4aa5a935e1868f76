"""What the event journey reads about its event, and what event messages show.

* ``get_event_schedule``: when the event starts and ends and whether it still holds; the journey
  places its timers on it and re-reads it when the event changes (reschedule, cancellation).
* ``find_next_event``: the next scheduled event of the same series, to invite the lead to.
* The ``event`` context loader: the event's details for a template, in the lead's time zone, and
  its ``invite.ics`` (``event-recap`` is the same without the calendar file, for after the event).

Results hold ids, times and statuses only: nothing about the lead.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.message_context import Attachment, MessageExtras, context_loader
from relance.contracts.events import EventRef, EventSchedule, NextEvent, NextEventQuestion
from relance.domain.models import Event, Lead, as_utc, utcnow

ICS_UID_DOMAIN = "events.relance"


class EventActivities:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @activity.defn(name="get_event_schedule", no_thread_cancel_exception=True)
    def get_event_schedule(self, ref: EventRef) -> EventSchedule:
        with Session(self.engine) as session:
            event = _event(session, ref.event_id)
            starts_at = as_utc(event.starts_at)
            return EventSchedule(
                event.id,
                starts_at,
                starts_at + timedelta(minutes=event.duration_minutes),
                event.status,
                event.series,
                event.sequence,
            )

    @activity.defn(name="find_next_event", no_thread_cancel_exception=True)
    def find_next_event(self, question: NextEventQuestion) -> NextEvent:
        with Session(self.engine) as session:
            event = _event(session, question.event_id)
            if not event.series:
                return NextEvent(None)
            after = max(as_utc(event.starts_at), question.after)
            next_id = session.exec(
                select(Event.id)
                .where(
                    Event.series == event.series,
                    Event.status == "scheduled",
                    Event.id != event.id,
                    col(Event.starts_at) > after,
                )
                .order_by(col(Event.starts_at))
                .limit(1)
            ).first()
            return NextEvent(next_id)


def _event(session: Session, event_id: str) -> Event:
    event = session.get(Event, event_id)
    if event is None:
        raise ApplicationError(
            f"event {event_id} does not exist", type="EventNotFound", non_retryable=True
        )
    return event


# What templates see ------------------------------------------------------------------------
@context_loader("event")
def event_with_invite(session: Session, lead: Lead, event_id: str) -> MessageExtras:
    event = _event(session, event_id)
    return MessageExtras(
        context=event_context(event, lead),
        attachments=[Attachment("invite.ics", "text/calendar", ics(event).encode())],
    )


@context_loader("event-recap")
def event_without_invite(session: Session, lead: Lead, event_id: str) -> MessageExtras:
    return MessageExtras(context=event_context(_event(session, event_id), lead))


def event_context(event: Event, lead: Lead) -> dict:
    zone = _zone(lead.time_zone) or _zone(event.time_zone) or UTC
    starts = as_utc(event.starts_at).astimezone(zone)
    return {
        "event": {
            "id": event.id,
            "name": event.name,
            "when": f"{starts:%A %-d %B %Y, %H:%M} ({getattr(zone, 'key', 'UTC')})",
            "date": f"{starts:%A %-d %B}",
            "time": f"{starts:%H:%M}",
            "duration_minutes": event.duration_minutes,
            "speakers": list(event.speakers or []),
            "topics": list(event.topics or []),
            "join_url": event.join_url,
            "address": event.address,
            "replay_url": event.replay_url,
            "survey_url": event.survey_url,
            "status": event.status,
        }
    }


def _zone(name: str | None) -> ZoneInfo | None:
    try:
        return ZoneInfo(name) if name else None
    except (KeyError, ValueError):
        return None


# The calendar file (RFC 5545, written by hand) ------------------------------------------------
def ics(event: Event) -> str:
    """One VEVENT. A cancelled event is sent as ``METHOD:CANCEL`` so calendars remove it; a
    rescheduled one carries a higher ``SEQUENCE`` so calendars move it."""
    starts = as_utc(event.starts_at)
    cancelled = event.status == "cancelled"
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//Relance//Event journey//EN",
        "CALSCALE:GREGORIAN",
        f"METHOD:{'CANCEL' if cancelled else 'PUBLISH'}",
        "BEGIN:VEVENT",
        f"UID:{event.id}@{ICS_UID_DOMAIN}",
        f"SEQUENCE:{event.sequence}",
        f"DTSTAMP:{_utc(utcnow())}",
        f"DTSTART:{_utc(starts)}",
        f"DTEND:{_utc(starts + timedelta(minutes=event.duration_minutes))}",
        f"SUMMARY:{_text(event.name)}",
        f"STATUS:{'CANCELLED' if cancelled else 'CONFIRMED'}",
    ]
    location = event.address or event.join_url
    if location:
        lines.append(f"LOCATION:{_text(location)}")
    if event.join_url:
        lines.append(f"URL:{event.join_url}")
    description = "\n".join(
        filter(
            None,
            [
                f"Speakers: {', '.join(event.speakers)}" if event.speakers else "",
                f"Topics: {', '.join(event.topics)}" if event.topics else "",
                f"Join: {event.join_url}" if event.join_url else "",
            ],
        )
    )
    if description:
        lines.append(f"DESCRIPTION:{_text(description)}")
    lines += ["END:VEVENT", "END:VCALENDAR"]
    return "".join(_fold(line) + "\r\n" for line in lines)


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _text(value: str) -> str:
    return (
        value.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
    )


def _fold(line: str) -> str:
    """Lines longer than 75 octets continue on the next line after a space (RFC 5545 3.1)."""
    out, current = [], b""
    for char in line:
        encoded = char.encode()
        if len(current) + len(encoded) > (75 if not out else 74):
            out.append(current.decode())
            current = b""
        current += encoded
    out.append(current.decode())
    return "\r\n ".join(out)
