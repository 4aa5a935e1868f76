"""What every send shares: the idempotency ledger (``messages`` table) and the consent gate.

A send is keyed by ``<workflow id>:<step>``. Before talking to a provider, the activity claims
that key; a retried activity that finds the key already ``sent`` returns the earlier result
and sends nothing. Marketing sends re-check consent here, at the moment of sending, so no
journey can bypass a withdrawal; so are the journey's exclusions
(relance/domain/journey_rules.py): a send they refuse is recorded ``skipped`` with the reason
``excluded: ...``.

A marketing message has a topic (``SendRequest.topic``, else its journey's from the catalogue):
the lead must have it on (the consent ledger, read with the channel's consent in one query), and
must not have paused marketing messages (``leads.marketing_paused_until``). The lead's weekly
pace is a frequency cap of their own (activities/frequency.py). Transactional messages pass
none of these gates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.frequency import FrequencyCap
from activities.message_context import MessageExtras, load_extras
from relance.contracts.catalogue import topic_of
from relance.contracts.channels import channel as channel_of
from relance.contracts.sending import SendFailure, SendRequest, SendResult
from relance.contracts.skips import SkipReason
from relance.domain.consent import GRANTED, marketing_gate
from relance.domain.db import session_scope
from relance.domain.journey_rules import (
    EXCLUDED,
    JourneyRules,
    exclusion_reason,
)
from relance.domain.models import Lead, Message, as_utc, utcnow
from relance.domain.suppression import suppression_of
from relance.domain.topics import DEFAULT_TOPICS_FILE, Topics, topics_from
from relance.services.journeys import default_rules

# The start of the reasons of the lead's own choices (a retried send tells the kind from them).
TOPIC_OFF = "the lead turned this topic off: "
PAUSED_UNTIL = "the lead paused marketing messages until "


# The notes a retried send leaves on its row: they say what happened. "Sent again" only when an
# earlier attempt may really have reached the provider (the worker died mid-send, the connection
# dropped after the message went out); an attempt that failed before the provider took anything
# (connection refused, SMTP down, a 4xx answer) is recorded as such.
def resent_note(channel_name: str) -> str:
    """The row's note when a send goes again under the same key (the channel's Message-ID,
    reference or delivery id), after an attempt that may have reached the provider."""
    return (
        "an earlier attempt ended without the provider's confirmation; sent again with the same "
        + channel_of(channel_name).idempotency_key
    )


RESENT = resent_note("email")
RESENT_SMS = resent_note("sms")


def sent_after_failed_attempts(attempt: int, last_failure: str) -> str:
    """The note of a send whose earlier attempts all failed before the provider accepted
    anything."""
    return (
        f"sent on attempt {attempt}; the earlier attempts did not reach the provider or were "
        f"refused for now ({last_failure})"
    )


@dataclass
class Claim:
    """The outcome of claiming a send key: either a message to send now, or a final result."""

    message: Message | None
    lead: Lead | None
    result: SendResult | None
    extras: MessageExtras | None = None


def _now() -> datetime:
    """The send's time: the attempt's scheduled time on the Temporal server (the journey's clock,
    also under the time-skipping test server), else the wall clock."""
    try:
        return activity.info().current_attempt_scheduled_time
    except RuntimeError:
        return utcnow()


class SendLedger:
    def __init__(
        self,
        engine: Engine,
        cap: FrequencyCap | None = None,
        *,
        suppression_key: str = "",
        rules: Callable[[str], JourneyRules] | None = None,
        topics: Callable[[], Topics] | None = None,
    ) -> None:
        self.engine = engine
        self.cap = cap or FrequencyCap(messages=0)
        # Settings.suppression_hash_key: suppressed addresses get no marketing email
        self.suppression_key = suppression_key
        # journey name -> its enrollment rules, read at each send (services.journeys.rules_for): the
        # journey's exclusions are checked again before each of its marketing messages.
        self.rules = rules or default_rules
        # The declared topics (Settings.topics: the topics file, re-read when it changes).
        self.topics = topics or (lambda: topics_from(DEFAULT_TOPICS_FILE))

    def claim(
        self,
        request: SendRequest,
        channel: str,
        *,
        channel_blocked: str = "",
        now: datetime | None = None,
    ) -> Claim:
        """``channel_blocked``: why this channel cannot send at all (e.g. no SMS provider set
        up)."""
        key = f"{request.workflow_id}:{request.step}"
        topic = (
            (request.topic or topic_of(request.journey)) if request.kind == "marketing" else None
        )
        when = now or _now()
        with session_scope(self.engine) as session:
            message = session.exec(select(Message).where(Message.send_key == key)).first()
            if message is not None and message.status in ("sent", "skipped", "failed"):
                result = SendResult(message.status, message.id, message.reason or "", True)
                if message.status == "skipped":
                    result.skip = self._skip_of_settled(session, request, result.reason)
                return Claim(None, None, result)
            lead = session.get(Lead, request.lead_id)
            if lead is None:
                raise ApplicationError(
                    f"lead {request.lead_id} does not exist",
                    type="LeadNotFound",
                    non_retryable=True,
                )
            if message is None:
                message = Message(
                    send_key=key,
                    lead_id=lead.id,
                    workflow_id=request.workflow_id,
                    journey=request.journey,
                    step=request.step,
                    channel=channel,
                    template=request.template,
                    kind=request.kind,
                    topic=topic,
                    status="sending",
                )
                session.add(message)
                try:
                    session.flush()
                except IntegrityError as race:
                    # A concurrent attempt claimed it first: let Temporal retry.
                    raise ApplicationError(
                        f"send {key} is being claimed concurrently", type="SendRace"
                    ) from race
            elif (
                message.status == "deferred"
            ):  # the journey waited for the frequency cap: count again
                message.status = (
                    "sending"  # reason and deferred_until stay: the row says it was held
                )
            elif message.status == "sending" and (
                message.attempts == 0 or message.attempts > message.attempts_not_delivered
            ):
                # An earlier attempt died between claiming and recording the provider's answer
                # (worker killed, connection dropped after the message went out). The provider may
                # have the message already; SMTP cannot tell. Sending again reuses the same
                # Message-ID, by which mailboxes recognise a second copy; the row says it happened.
                # (Attempts that certainly did not reach the provider are counted apart: those
                # alone make no "sent again".)
                message.reason = resent_note(channel)
            extras = load_extras(session, lead, request.about)
            no_consent, topic_off = self._no_consent(session, lead, channel, request, topic)
            skip, reason = next(
                (
                    (kind, reason)
                    for kind, reason in (
                        (SkipReason.NO_CHANNEL, channel_blocked),
                        (SkipReason.NO_CHANNEL, self._unreachable(lead, channel)),
                        (SkipReason.NO_CONSENT, no_consent),
                        (SkipReason.NO_TOPIC_CONSENT, topic_off),
                        (SkipReason.PAUSED, self._paused(lead, request, when)),
                        (
                            SkipReason.SUPPRESSED,
                            self._suppressed(session, lead, channel, request.kind),
                        ),
                        (SkipReason.NOT_RELEVANT, extras.skip_reason),
                        (SkipReason.EXCLUDED, self._excluded(session, lead, request)),
                    )
                    if reason
                ),
                (None, ""),
            )
            if skip is not None:
                message.status, message.reason = "skipped", reason
                return Claim(None, None, SendResult("skipped", message.id, reason, skip=skip))
            verdict = self.cap.check(
                session,
                message,
                over_cap=request.over_cap,
                now=when,
                weekly=lead.marketing_frequency == "weekly",
            )
            if verdict.status != "go":
                return Claim(
                    None,
                    None,
                    SendResult(
                        verdict.status,
                        message.id,
                        verdict.reason,
                        retry_at=verdict.retry_at,
                        skip=SkipReason.FREQUENCY_CAP if verdict.status == "skipped" else None,
                    ),
                )
            message.attempts += 1  # this attempt goes to the provider
            session.expunge(lead)
            return Claim(message, lead, None, extras)

    @staticmethod
    def _unreachable(lead: Lead, channel_name: str) -> str:
        """The channel's address (relance/contracts/channels.py): the lead has one on it."""
        c = channel_of(channel_name)
        return c.no_address if c.address and not getattr(lead, c.address) else ""

    def _no_consent(
        self,
        session: Session,
        lead: Lead,
        channel_name: str,
        request: SendRequest,
        topic: str | None,
    ) -> tuple[str, str]:
        """A marketing send needs consent on the channel's consent channel, and its topic on
        (the lead's choice, else the topic's default): why not, for each (one read)."""
        if request.kind != "marketing":
            return "", ""
        consent = channel_of(channel_name).consent
        status, chosen = marketing_gate(session, lead.id, consent, topic)
        no_consent = "" if status == GRANTED else f"no marketing consent for {consent}"
        declared = self.topics().get(topic or "")
        if declared is None:
            return no_consent, f"{TOPIC_OFF}{topic} (not a topic of the topics file)"
        on = declared.default if chosen is None else chosen == GRANTED
        return no_consent, "" if on else f"{TOPIC_OFF}{topic}"

    @staticmethod
    def _paused(lead: Lead, request: SendRequest, now: datetime) -> str:
        """The lead paused marketing messages (the preference page) and the pause still runs."""
        until = as_utc(lead.marketing_paused_until)
        if request.kind != "marketing" or until is None or until <= now:
            return ""
        return f"{PAUSED_UNTIL}{until:%Y-%m-%d %H:%M} UTC"

    @staticmethod
    def _skip_of_settled(session: Session, request: SendRequest, reason: str) -> SkipReason | None:
        """A retried send finds its row skipped already: the kind of that skip, from the row (the
        exclusions' reasons start with ``EXCLUDED``; the message's own context says it again)."""
        if reason.startswith(EXCLUDED):
            return SkipReason.EXCLUDED
        if reason.startswith(TOPIC_OFF):
            return SkipReason.NO_TOPIC_CONSENT
        if reason.startswith(PAUSED_UNTIL):
            return SkipReason.PAUSED
        lead = session.get(Lead, request.lead_id)
        if (
            lead is not None
            and reason
            and load_extras(session, lead, request.about).skip_reason == reason
        ):
            return SkipReason.NOT_RELEVANT
        return None

    def _excluded(self, session: Session, lead: Lead, request: SendRequest) -> str:
        """The journey's exclusions, checked at the moment of sending (marketing only): a lead who
        became a customer or joined an excluded list mid-journey gets no more of its messages."""
        if request.kind != "marketing":
            return ""
        rules = self.rules(request.journey).exclude
        if request.exclude:  # the journey's own (a definition's), besides its name's rules
            rules = (*rules, *(r for r in request.exclude if r not in rules))
        reason = exclusion_reason(session, lead.id, rules) if rules else ""
        return f"{EXCLUDED}{reason}" if reason else ""

    def _suppressed(self, session: Session, lead: Lead, channel_name: str, kind: str) -> str:
        """The suppression list holds email addresses: it stops the channels that use one."""
        if kind != "marketing" or channel_of(channel_name).address != "email":
            return ""
        if not self.suppression_key:
            return ""
        entry = suppression_of(session, self.suppression_key, lead.email)
        return f"the address is on the suppression list ({entry.reason})" if entry else ""

    def mark_sent(
        self, message: Message, *, subject: str | None = None, provider_id: str | None = None
    ) -> SendResult:
        with session_scope(self.engine) as session:
            row = session.get(Message, message.id)
            row.status, row.sent_at = "sent", utcnow()
            row.subject, row.provider_id = subject, provider_id
            if row.attempts > 1 and row.attempts_not_delivered == row.attempts - 1:
                row.reason = sent_after_failed_attempts(row.attempts, _last_failure(row.reason))[
                    :500
                ]
        return SendResult("sent", message.id)

    def mark_attempt_failed(self, message: Message, failure: SendFailure) -> SendResult | None:
        """Record how an attempt ended without the provider's acceptance. Permanent: the send is
        failed for good (returned, the journey goes on). Otherwise the row stays ``sending``,
        says what happened, and the caller raises so that Temporal retries."""
        if failure.permanent:
            return self.mark_failed(message, failure.reason)
        with session_scope(self.engine) as session:
            row = session.get(Message, message.id)
            if failure.maybe_delivered:
                row.reason = (
                    f"attempt {row.attempts} ended without the provider's answer "
                    f"({failure.reason}); retrying"
                )[:500]
            else:
                row.attempts_not_delivered += 1
                if (
                    row.attempts_not_delivered == row.attempts
                ):  # no attempt so far may have reached it
                    row.reason = f"{_NOT_DELIVERED_YET}attempt {row.attempts}: {failure.reason}"[
                        :500
                    ]
        return None

    def failed_or_retried(
        self, message: Message, failure: SendFailure, *, channel: str
    ) -> SendResult:
        """After an attempt the provider did not accept: the failed result when no retry can fix
        it (the journey goes on without the message), else raise so that Temporal retries."""
        failed = self.mark_attempt_failed(message, failure)
        if failed is None:
            raise ApplicationError(
                f"{channel} {message.id} not sent yet: {failure.reason}",
                type=f"{channel.capitalize()}Temporary",
            ) from failure
        activity.logger.warning("%s %s not sent, for good: %s", channel, message.id, failure.reason)
        return failed

    def mark_failed(self, message: Message, reason: str) -> SendResult:
        """The provider refused the message for good: final, never retried, the journey goes on."""
        with session_scope(self.engine) as session:
            row = session.get(Message, message.id)
            row.status, row.reason = "failed", reason[:500]
        return SendResult("failed", message.id, reason[:500])


_NOT_DELIVERED_YET = "not delivered yet, retrying; "


def _last_failure(reason: str | None) -> str:
    """From a row's "not delivered yet" note, the last failed attempt's own words."""
    return (
        (reason or "")[len(_NOT_DELIVERED_YET) :]
        if (reason or "").startswith(_NOT_DELIVERED_YET)
        else (reason or "")
    )
