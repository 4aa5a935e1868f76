"""The event journey: one per registration to an event (a webinar, a conference, a workshop).

    registration ─► read the event (already cancelled ─► end: cancelled)
                   │
                   ▼
         thank-you email: speakers, topics, date, place or link, + invite.ics
                   │ (not sent ─► end: not_sent)
                   ▼
         the day before (starts − 24 h) ─► reminder email
                   │
                   ▼
         one hour before ─► reminder: SMS if the lead has a phone and SMS consent, else email
                   │
                   ▼
         the day after (ends + 24 h) ─┬─ attended ─► thank-you, CTA, survey link
                                      └─ did not ─► replay link and resources
                   │
                   ▼
         a week after (ends + 7 days) ─► invitation to the next event of the series, if any
                   │
                   ▼
         end: completed

    A reminder whose moment has already passed is skipped (recorded), never sent late.
    Rescheduled (signal): the timers move to the new date, a "new date" email (+ updated .ics)
    goes out, reminders already sent for the old date are re-armed for the new one.
    Cancelled (signal): a cancellation email (+ .ics that removes it) and the journey ends
    (cancelled).
    An unsubscribe, at any point, ends the journey at once (unsubscribed).

Inputs are ids and knobs only; the event's schedule comes from an activity and is re-read
whenever the API says the event changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from temporalio import workflow

from relance.contracts.channels import channel_label
from relance.contracts.signals import ATTENDED, CLICKED, EVENT_CHANGED, OPENED, TrackingSignal
from workflows.journey import Journey
from workflows.steps import JourneyResult, JourneyStatus, SentMessage

with workflow.unsafe.imports_passed_through():
    from relance.contracts.events import (
        EventRef,
        EventSchedule,
        NextEventQuestion,
        find_next_event,
        get_event_schedule,
    )
    from relance.contracts.sending import SendResult

JOURNEY = "event"


# The timed steps, in order. The reminders before the event are re-armed by a reschedule.
STEPS = ("reminder_day", "reminder_hour", "follow_up", "next_event")
BEFORE_THE_EVENT = ("reminder_day", "reminder_hour")


class EventOutcome(StrEnum):
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    UNSUBSCRIBED = "unsubscribed"
    NOT_SENT = "not_sent"


@dataclass
class EventReminderInput:
    event_id: str
    lead_id: str
    day_before_hours: float = 24.0  # first reminder, before the start
    hour_before_minutes: float = 60.0  # last reminder, before the start
    follow_up_after_hours: float = 24.0  # after the end: thanks (attended) or replay (did not)
    next_event_after_days: float = 7.0  # after the end: invitation to the next of the series
    reminder_by_sms: bool = True  # the last reminder by SMS when the lead has a phone and consent


@dataclass
class EventReminderStatus(JourneyStatus):
    starts_at: datetime | None
    attended: bool


@dataclass
class EventReminderResult(JourneyResult):
    outcome: EventOutcome
    attended: bool


@workflow.defn(name="EventReminderJourney")
class EventReminderJourney(Journey):
    NAME, LOG_NAME, RESULT = JOURNEY, "event journey", EventReminderResult

    @workflow.init
    def __init__(self, input: EventReminderInput) -> None:
        super().__init__(input.lead_id)
        self.input = input
        self.schedule: EventSchedule | None = None
        self.attended = False
        self.change_pending = False
        self.done: set[str] = set()
        # How many times a step was sent (re-armed steps get a new key).
        self.sends: dict[str, int] = {}

    @workflow.run
    async def run(self, input: EventReminderInput) -> EventReminderResult:
        # 1. Registered: read the event, thank the lead with everything they need and the .ics.
        self.enter("reading_event", "Reading the event's schedule")
        self.schedule = await self._read_schedule()
        if self.schedule.status == "cancelled":
            return self.finish(
                EventOutcome.CANCELLED, "the event was cancelled before the journey started"
            )
        self.enter(
            "sending_confirmation", "Registered: sending the thank-you with the calendar invite"
        )
        confirmation = await self._send(
            "confirmation", "email", "event_confirmation", about="event"
        )
        if confirmation.status != "sent":
            return self.finish(EventOutcome.NOT_SENT, confirmation.reason)

        # 2. Each timed step in turn: wait for its moment, unless the event changes meanwhile.
        while (step := next((s for s in STEPS if s not in self.done), None)) is not None:
            due = self._due(step)
            if due <= workflow.now():
                self._skip(
                    step, f"its moment ({due:%Y-%m-%d %H:%M} UTC) had passed; never sent late"
                )
                continue
            interrupted = await self.wait(
                f"waiting_for_{step}",
                f"Next: {step} at {due:%Y-%m-%d %H:%M} UTC",
                lambda: self.unsubscribed or self.change_pending,
                due - workflow.now(),
            )
            if self.unsubscribed:
                return self.finish(EventOutcome.UNSUBSCRIBED, "the lead unsubscribed")
            if interrupted:
                if not await self._apply_change():
                    return self.finish(EventOutcome.CANCELLED, "the event was cancelled")
                continue
            await self._timed_step(step)
            self.done.add(step)

        await self.settle()
        return self.finish(EventOutcome.COMPLETED, "every step of the event journey ran")

    # What the API tells the journey --------------------------------------------------------
    @workflow.signal(name=EVENT_CHANGED)
    def on_event_changed(self) -> None:
        self.change_pending = True  # re-read the schedule: rescheduled, or cancelled

    @workflow.signal(name=ATTENDED)
    def on_attended(self) -> None:
        self.attended = True

    @workflow.signal(name=OPENED)
    def on_opened(self, signal: TrackingSignal) -> None:
        pass  # the tracking endpoints record opens and clicks; this journey does not branch on them

    @workflow.signal(name=CLICKED)
    def on_clicked(self, signal: TrackingSignal) -> None:
        pass

    @workflow.query(name="status")
    def status(self) -> EventReminderStatus:
        return EventReminderStatus(
            step=self.step,
            starts_at=self.schedule.starts_at if self.schedule else None,
            attended=self.attended,
            messages=list(self.messages),
        )

    # Steps -------------------------------------------------------------------------------
    def _due(self, step: str) -> datetime:
        s, i = self.schedule, self.input
        return {
            "reminder_day": s.starts_at - timedelta(hours=i.day_before_hours),
            "reminder_hour": s.starts_at - timedelta(minutes=i.hour_before_minutes),
            "follow_up": s.ends_at + timedelta(hours=i.follow_up_after_hours),
            "next_event": s.ends_at + timedelta(days=i.next_event_after_days),
        }[step]

    async def _timed_step(self, step: str) -> None:
        if step == "reminder_day":
            self.enter("sending_reminder_day", "The day before: reminder email")
            await self._send(step, "email", "event_reminder_day", about="event")
        elif step == "reminder_hour":
            await self._hour_reminder()
        elif step == "follow_up":
            template = "event_thanks" if self.attended else "event_replay"
            self.enter(
                "sending_follow_up",
                f"The day after: {template} ({'attended' if self.attended else 'did not attend'})",
            )
            await self._send(step, "email", template, about="event-recap")
        else:
            self.enter("finding_next_event", "A week after: is there a next event in the series?")
            found = await self.activity(
                find_next_event, NextEventQuestion(self.input.event_id, workflow.now())
            )
            if found.event_id is None:
                self._skip(step, "the series has no next event")
            else:
                await self._send(
                    step, "email", "event_next", about="event-recap", about_id=found.event_id
                )

    async def _hour_reminder(self) -> None:
        """On the best channel the lead accepts: SMS (a phone and SMS consent), else email."""
        channels = ["sms", "email"] if self.input.reminder_by_sms else ["email"]
        await self.send_best(channels, self._hour_reminder_on)

    async def _hour_reminder_on(self, channel: str) -> SendResult:
        self.enter(
            "sending_reminder_hour", f"One hour before: reminder by {channel_label(channel)}"
        )
        # Only an email carries the calendar file (``event``); the steps keep their saved names.
        if channel == "email":
            return await self._send(
                "reminder_hour_email", channel, "event_reminder_hour", about="event"
            )
        step = "reminder_hour" if channel == "sms" else f"reminder_hour_{channel}"
        return await self._send(step, channel, "event_reminder_hour", about="event-recap")

    async def _apply_change(self) -> bool:
        """Re-read the event. Cancelled: say so and return False. Moved: say so, re-arm."""
        self.change_pending = False
        self.enter("reading_event", "The event changed: reading its schedule again")
        before, self.schedule = self.schedule, await self._read_schedule()
        if self.schedule.status == "cancelled":
            self.enter("sending_cancellation", "The event is cancelled: telling the lead")
            await self._send("cancelled", "email", "event_cancelled", about="event")
            return False
        if self.schedule.starts_at != before.starts_at or self.schedule.ends_at != before.ends_at:
            self.enter(
                "sending_new_date",
                f"The event moved to {self.schedule.starts_at:%Y-%m-%d %H:%M} UTC",
            )
            await self._send(
                f"rescheduled_{self.schedule.sequence}", "email", "event_rescheduled", about="event"
            )
            for step in BEFORE_THE_EVENT:  # reminders for the old date count for nothing now
                if self._due(step) > workflow.now():
                    self.done.discard(step)
        return True

    async def _read_schedule(self) -> EventSchedule:
        return await self.activity(get_event_schedule, EventRef(self.input.event_id))

    async def _send(
        self, step: str, channel: str, template: str, *, about: str, about_id: str = ""
    ) -> SendResult:
        """The lead asked for these by registering: sent at their moment, counted by the frequency
        cap but never held by it. A re-armed reminder is a new send (a new step)."""
        count = self.sends.get(step, 0)
        self.sends[step] = count + 1
        return await self.send_now(
            step if count == 0 else f"{step}_{count + 1}",
            template,
            channel,
            about=f"{about}:{about_id or self.input.event_id}",
            over_cap="exempt",
        )

    def _skip(self, step: str, reason: str) -> None:
        self.done.add(step)
        self.messages.append(SentMessage(step, "", "", "skipped", None, workflow.now(), reason))
        workflow.logger.info(
            "event journey for lead %s: %s skipped: %s", self.input.lead_id, step, reason
        )

    def result_fields(self) -> dict:
        return dict(attended=self.attended)
