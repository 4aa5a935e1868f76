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

A broadcast's wave claims its recipients together (``claim_many``: one transaction, one query
per gate for all the leads, the new rows inserted together, the cap's locks in one statement)
and records the provider's answers together (``record_many``); a single send is a wave of one,
so both are decided by the same rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.frequency import FrequencyCap
from activities.message_context import MessageExtras, load_extras
from relance.contracts.catalogue import topic_of
from relance.contracts.channels import channel as channel_of
from relance.contracts.sending import SendFailure, SendRequest, SendResult
from relance.contracts.skips import SkipReason
from relance.domain.consent import GRANTED, marketing_gates
from relance.domain.db import session_scope
from relance.domain.journey_rules import (
    EXCLUDED,
    JourneyRules,
    exclusion_reasons,
)
from relance.domain.models import Lead, Message, SuppressionEntry, as_utc, utcnow
from relance.domain.suppression import suppressions_of
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
class Gates:
    """What the gates read about a send's lead: the channel's marketing consent and the lead's
    choice for the topic (marketing only), their address's suppression entry, why the
    journey's exclusions exclude them, what the message is about."""

    consent: tuple[str, str | None] | None
    suppressed: SuppressionEntry | None
    excluded: str
    extras: MessageExtras


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
        return self.claim_many([request], channel, channel_blocked=channel_blocked, now=now)[0]

    def claim_many(
        self,
        requests: list[SendRequest],
        channel: str,
        *,
        channel_blocked: str = "",
        now: datetime | None = None,
    ) -> list[Claim]:
        """Claim sends on one channel, each to a different lead, in one transaction (a
        broadcast's wave; a single send is a wave of one): the rows read and the new ones
        inserted together, every gate read for all the leads at once (consent and topic,
        suppression, exclusions, the frequency cap's locks and counts), and each send decided by
        the same rules. A lead that does not exist raises LeadNotFound for a single send; in a
        wave of several, that send alone is ``failed``."""
        when = now or _now()
        keys = [f"{r.workflow_id}:{r.step}" for r in requests]
        with session_scope(self.engine) as session:
            rows = {
                m.send_key: m
                for m in session.exec(select(Message).where(col(Message.send_key).in_(keys)))
            }
            claims: dict[int, Claim] = {}
            open_: list[tuple[int, SendRequest, Message, Lead, str | None]] = []
            leads = {
                lead.id: lead
                for lead in session.exec(
                    select(Lead).where(col(Lead.id).in_([r.lead_id for r in requests]))
                )
            }
            new: list[Message] = []
            for i, (request, key) in enumerate(zip(requests, keys, strict=True)):
                message = rows.get(key)
                if message is not None and message.status in ("sent", "skipped", "failed"):
                    result = SendResult(message.status, message.id, message.reason or "", True)
                    if message.status == "skipped":
                        result.skip = self._skip_of_settled(session, request, result.reason)
                    claims[i] = Claim(None, None, result)
                    continue
                lead = leads.get(request.lead_id)
                if lead is None:
                    missing = f"lead {request.lead_id} does not exist"
                    if len(requests) == 1:
                        raise ApplicationError(missing, type="LeadNotFound", non_retryable=True)
                    claims[i] = Claim(None, None, SendResult("failed", reason=missing))
                    continue
                topic = (
                    (request.topic or topic_of(request.journey))
                    if request.kind == "marketing"
                    else None
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
                    new.append(message)
                else:
                    self._reclaim(message, channel)
                open_.append((i, request, message, lead, topic))
            if new:
                session.add_all(new)
                try:
                    session.flush()
                except IntegrityError as race:
                    # A concurrent attempt claimed one first: let Temporal retry.
                    raise ApplicationError(
                        f"send {new[0].send_key} is being claimed concurrently"
                        + (f" (or one of {len(new)})" if len(new) > 1 else ""),
                        type="SendRace",
                    ) from race
            gates = self._read_gates(session, channel, [(r, lead, t) for _, r, _, lead, t in open_])
            to_cap: list[tuple[int, SendRequest, Message, Lead, MessageExtras]] = []
            for (i, request, message, lead, topic), gate in zip(open_, gates, strict=True):
                skip, reason = self._decide(
                    lead, channel, request, topic, when, gate, channel_blocked=channel_blocked
                )
                if skip is not None:
                    message.status, message.reason = "skipped", reason
                    claims[i] = Claim(
                        None, None, SendResult("skipped", message.id, reason, skip=skip)
                    )
                else:
                    to_cap.append((i, request, message, lead, gate.extras))
            by_pace: dict[str, list] = {}
            for entry in to_cap:  # one cap check per way of handling a capped send
                by_pace.setdefault(entry[1].over_cap, []).append(entry)
            for over_cap, entries in by_pace.items():
                verdicts = self.cap.check_many(
                    session,
                    [(m, lead.marketing_frequency == "weekly") for _, _, m, lead, _ in entries],
                    over_cap=over_cap,
                    now=when,
                )
                for (i, _, message, lead, extras), verdict in zip(entries, verdicts, strict=True):
                    if verdict.status != "go":
                        claims[i] = Claim(
                            None,
                            None,
                            SendResult(
                                verdict.status,
                                message.id,
                                verdict.reason,
                                retry_at=verdict.retry_at,
                                skip=SkipReason.FREQUENCY_CAP
                                if verdict.status == "skipped"
                                else None,
                            ),
                        )
                        continue
                    message.attempts += 1  # this attempt goes to the provider
                    claims[i] = Claim(message, lead, None, extras)
            session.flush()
            for claim in claims.values():
                if claim.lead is not None:
                    session.expunge(claim.lead)
                if claim.message is not None:
                    session.expunge(claim.message)
            return [claims[i] for i in range(len(requests))]

    @staticmethod
    def _reclaim(message: Message, channel: str) -> None:
        """An unsettled row claimed again."""
        if message.status == "deferred":  # the journey waited for the frequency cap: count again
            message.status = "sending"  # reason and deferred_until stay: the row says it was held
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

    def _read_gates(
        self, session: Session, channel: str, sends: list[tuple[SendRequest, Lead, str | None]]
    ) -> list[Gates]:
        """What the gates need to know about each send's lead, read for all of them at once:
        one query per gate, whatever the number of leads."""
        marketing = [(r, lead, t) for r, lead, t in sends if r.kind == "marketing"]
        consent = channel_of(channel).consent
        choices: dict[tuple[str, str | None], dict[str, tuple[str, str | None]]] = {}
        for topic in {t for _, _, t in marketing}:
            ids = [lead.id for _, lead, t in marketing if t == topic]
            choices[(consent, topic)] = marketing_gates(session, ids, consent, topic)
        suppressed = {}
        if self.suppression_key and channel_of(channel).address == "email":
            emails = [lead.email for _, lead, _ in marketing if lead.email]
            suppressed = suppressions_of(session, self.suppression_key, emails)
        excluded: dict[tuple[str, ...], dict[str, str]] = {}
        for request, _, _ in marketing:
            rules = self._exclusions(request)
            if rules and rules not in excluded:
                ids = [lead.id for r, lead, _ in marketing if self._exclusions(r) == rules]
                excluded[rules] = exclusion_reasons(session, ids, rules)
        return [
            Gates(
                choices[(consent, topic)][lead.id] if request.kind == "marketing" else None,
                suppressed.get(lead.email or "") if request.kind == "marketing" else None,
                excluded.get(self._exclusions(request), {}).get(lead.id, "")
                if request.kind == "marketing"
                else "",
                load_extras(session, lead, request.about),
            )
            for request, lead, topic in sends
        ]

    def _decide(
        self,
        lead: Lead,
        channel: str,
        request: SendRequest,
        topic: str | None,
        when: datetime,
        gate: Gates,
        *,
        channel_blocked: str,
    ) -> tuple[SkipReason | None, str]:
        """The first gate that stops the send (its kind and reason), else (None, "")."""
        no_consent, topic_off = self._no_consent(gate, channel, request, topic)
        return next(
            (
                (kind, reason)
                for kind, reason in (
                    (SkipReason.NO_CHANNEL, channel_blocked),
                    (SkipReason.NO_CHANNEL, self._unreachable(lead, channel)),
                    (SkipReason.NO_CONSENT, no_consent),
                    (SkipReason.NO_TOPIC_CONSENT, topic_off),
                    (SkipReason.PAUSED, self._paused(lead, request, when)),
                    (SkipReason.SUPPRESSED, self._suppressed(gate, channel, request.kind)),
                    (SkipReason.NOT_RELEVANT, gate.extras.skip_reason),
                    (SkipReason.EXCLUDED, f"{EXCLUDED}{gate.excluded}" if gate.excluded else ""),
                )
                if reason
            ),
            (None, ""),
        )

    @staticmethod
    def _unreachable(lead: Lead, channel_name: str) -> str:
        """The channel's address (relance/contracts/channels.py): the lead has one on it."""
        c = channel_of(channel_name)
        return c.no_address if c.address and not getattr(lead, c.address) else ""

    def _no_consent(
        self, gate: Gates, channel_name: str, request: SendRequest, topic: str | None
    ) -> tuple[str, str]:
        """A marketing send needs consent on the channel's consent channel, and its topic on
        (the lead's choice, else the topic's default): why not, for each."""
        if request.kind != "marketing" or gate.consent is None:
            return "", ""
        consent = channel_of(channel_name).consent
        status, chosen = gate.consent
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

    def _exclusions(self, request: SendRequest) -> tuple[str, ...]:
        """The journey's exclusions, checked at the moment of sending (marketing only): a lead who
        became a customer or joined an excluded list mid-journey gets no more of its messages."""
        rules = tuple(self.rules(request.journey).exclude)
        if request.exclude:  # the journey's own (a definition's), besides its name's rules
            rules = (*rules, *(r for r in request.exclude if r not in rules))
        return rules

    def _suppressed(self, gate: Gates, channel_name: str, kind: str) -> str:
        """The suppression list holds email addresses: it stops the channels that use one."""
        if kind != "marketing" or channel_of(channel_name).address != "email":
            return ""
        entry = gate.suppressed
        return f"the address is on the suppression list ({entry.reason})" if entry else ""

    def mark_sent(
        self, message: Message, *, subject: str | None = None, provider_id: str | None = None
    ) -> SendResult:
        return self.record_many([Delivery(message, subject=subject, provider_id=provider_id)])[0]

    def mark_attempt_failed(self, message: Message, failure: SendFailure) -> SendResult | None:
        """Record how an attempt ended without the provider's acceptance. Permanent: the send is
        failed for good (returned, the journey goes on). Otherwise the row stays ``sending``,
        says what happened, and the caller raises so that Temporal retries."""
        return self.record_many([Delivery(message, failure=failure)])[0]

    def record_many(self, deliveries: list[Delivery]) -> list[SendResult | None]:
        """Record what the provider answered for each claimed message, in one write (a
        broadcast's wave): ``sent``; ``failed`` for good; None when the attempt failed for now
        (the row stays ``sending`` and says what happened; the caller has it retried)."""
        if not deliveries:
            return []
        with session_scope(self.engine) as session:
            rows = {
                row.id: row
                for row in session.exec(
                    select(Message).where(col(Message.id).in_([d.message.id for d in deliveries]))
                )
            }
            results: list[SendResult | None] = []
            for d in deliveries:
                row = rows[d.message.id]
                if d.failure is None:
                    _record_sent(row, d.subject, d.provider_id)
                    results.append(SendResult("sent", row.id))
                elif d.failure.permanent:
                    row.status, row.reason = "failed", d.failure.reason[:500]
                    results.append(SendResult("failed", row.id, d.failure.reason[:500]))
                else:
                    _record_attempt_failed(row, d.failure)
                    results.append(None)
        return results

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


@dataclass
class Delivery:
    """How a claimed message's attempt ended: accepted by the provider (no ``failure``), with
    the subject and the provider's id; or the failure."""

    message: Message
    failure: SendFailure | None = None
    subject: str | None = None
    provider_id: str | None = None


def _record_sent(row: Message, subject: str | None, provider_id: str | None) -> None:
    row.status, row.sent_at = "sent", utcnow()
    row.subject, row.provider_id = subject, provider_id
    if row.attempts > 1 and row.attempts_not_delivered == row.attempts - 1:
        row.reason = sent_after_failed_attempts(row.attempts, _last_failure(row.reason))[:500]


def _record_attempt_failed(row: Message, failure: SendFailure) -> None:
    """An attempt the provider did not accept, and a retry may fix."""
    if failure.maybe_delivered:
        row.reason = (
            f"attempt {row.attempts} ended without the provider's answer "
            f"({failure.reason}); retrying"
        )[:500]
    else:
        row.attempts_not_delivered += 1
        if row.attempts_not_delivered == row.attempts:  # no attempt so far may have reached it
            row.reason = f"{_NOT_DELIVERED_YET}attempt {row.attempts}: {failure.reason}"[:500]


def _last_failure(reason: str | None) -> str:
    """From a row's "not delivered yet" note, the last failed attempt's own words."""
    return (
        (reason or "")[len(_NOT_DELIVERED_YET) :]
        if (reason or "").startswith(_NOT_DELIVERED_YET)
        else (reason or "")
    )
