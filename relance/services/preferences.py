"""A lead's preferences: which topics, at what pace, on which channels. Read and changed by the
hosted preference page (api/routes/preferences.py, ``/p/{token}``) and by operators
(``GET``/``PUT /leads/{id}/preferences``); plain database work, one session passed in.

- Topics: the lead's choice per topic, in the consent ledger with its evidence
  (relance/domain/consent.py ``choose_topics``).
- Pace (``leads.marketing_frequency``): ``as_sent``, or ``weekly`` (at most one marketing message
  per channel per 7 days, through the frequency cap: a digest's pace, the messages are not merged);
  or a pause of N weeks (``leads.marketing_paused_until``): the send ledger skips marketing
  messages until then (``SkipReason.PAUSED``), and the pace chosen before applies again after.
- Channels (email, SMS): the channel's marketing consent in the ledger, granted or withdrawn with
  the same evidence.

Every change is also an entry of the audit log (``lead.preferences``: who, what changed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import Session

from relance.contracts.channels import CONSENT_CHANNELS
from relance.domain import audit
from relance.domain.consent import (
    GRANTED,
    WITHDRAWN,
    choose_topics,
    current_consents,
    topic_consents,
)
from relance.domain.models import Consent, Lead, as_utc, utcnow
from relance.domain.suppression import suppression_of
from relance.domain.topics import Topics

FREQUENCIES = ("as_sent", "weekly")  # leads.marketing_frequency
PREFERENCE_CHANNELS = ("email", "sms")  # the channels a lead turns on or off themselves
MAX_PAUSE_WEEKS = 52
PREFERENCES = "lead.preferences"  # the audit log's action
# The wording a channel's consent given on the preference page was given under (its proof, with
# the page as its source and the browser's IP and user agent). Bump it when the page's words
# about a channel change.
PAGE_WORDING = "preference-page-1"


@dataclass
class Evidence:
    """Where a change came from, kept in the consent ledger's rows (``source_url``, ip, agent)."""

    source: str  # "preference page" | "api"
    ip: str | None = None
    user_agent: str | None = None
    actor: str = ""  # the audit log's actor (default: the source)
    wording_version: str | None = None  # what the lead read when turning a channel on


@dataclass
class Preferences:
    topics: dict[str, bool]
    frequency: str  # as_sent | weekly
    paused_until: datetime | None  # a pause that still runs (None: not paused)
    channels: dict[str, bool]  # email, sms: marketing consent granted


@dataclass
class Change:
    """What to change; None leaves it as it is."""

    topics: dict[str, bool] = field(default_factory=dict)
    frequency: str | None = None
    pause_weeks: int | None = None  # > 0: pause from now; 0: end a pause
    channels: dict[str, bool] = field(default_factory=dict)


def read(
    session: Session, lead: Lead, topics: Topics, *, now: datetime | None = None
) -> Preferences:
    until = as_utc(lead.marketing_paused_until)
    consents = current_consents(session, lead.id, PREFERENCE_CHANNELS)
    return Preferences(
        topics=topic_consents(session, lead.id, topics),
        frequency=lead.marketing_frequency,
        paused_until=until if until is not None and until > (now or utcnow()) else None,
        channels={c: consents[c] == GRANTED for c in PREFERENCE_CHANNELS},
    )


def problems(change: Change, topics: Topics) -> list[str]:
    """What is wrong with ``change`` (nothing is changed while anything is)."""
    found = [
        f"topic {key!r} is not one of {', '.join(topics.keys)}"
        for key in change.topics
        if topics.get(key) is None
    ]
    if change.frequency is not None and change.frequency not in FREQUENCIES:
        found.append(f"frequency {change.frequency!r} is not one of {', '.join(FREQUENCIES)}")
    if change.pause_weeks is not None and not 0 <= change.pause_weeks <= MAX_PAUSE_WEEKS:
        found.append(f"pause_weeks must be between 0 and {MAX_PAUSE_WEEKS}")
    found += [
        f"channel {name!r} is not one of {', '.join(PREFERENCE_CHANNELS)}"
        for name in change.channels
        if name not in PREFERENCE_CHANNELS
    ]
    return found


def save(
    session: Session,
    lead: Lead,
    topics: Topics,
    change: Change,
    evidence: Evidence,
    *,
    suppression_key: str = "",
    now: datetime | None = None,
) -> Preferences:
    """Apply a checked ``change`` (``problems`` found none) and commit, with its evidence.
    ``suppression_key`` (Settings.suppression_hash_key): a lead who turns email back on comes off
    the suppression list an earlier unsubscribe put them on (never an erasure's entry)."""
    now = now or utcnow()
    changed: dict = {}
    chosen = choose_topics(
        session,
        lead.id,
        topics,
        change.topics,
        source=evidence.source,
        ip=evidence.ip,
        user_agent=evidence.user_agent,
    )
    if chosen:
        changed["topics"] = chosen
    if change.frequency is not None and change.frequency != lead.marketing_frequency:
        lead.marketing_frequency = changed["frequency"] = change.frequency
    if change.pause_weeks is not None:
        until = now + timedelta(weeks=change.pause_weeks) if change.pause_weeks else None
        if until is not None or lead.marketing_paused_until is not None:
            lead.marketing_paused_until = until
            changed["paused_until"] = until.isoformat() if until else None
    channels = _set_channels(session, lead, change.channels, evidence, now)
    if channels:
        changed["channels"] = channels
    if channels.get("email") and suppression_key:
        entry = suppression_of(session, suppression_key, lead.email)
        if entry is not None and entry.reason != "erased":
            session.delete(entry)
    if changed:
        lead.updated_at = now
        session.add(lead)
        audit.record(
            session,
            actor=evidence.actor or evidence.source,
            action=PREFERENCES,
            lead_id=lead.id,
            detail=changed,
        )
    session.commit()
    session.refresh(lead)
    return read(session, lead, topics, now=now)


def withdraw_all(session: Session, lead: Lead, evidence: Evidence, *, now: datetime | None = None):
    """Unsubscribe from everything: every channel's marketing consent withdrawn (the caller also
    records the one-click unsubscribe, which suppresses the address and tells the journeys)."""
    now = now or utcnow()
    withdrawn = _set_channels(
        session, lead, dict.fromkeys(CONSENT_CHANNELS, False), evidence, now, reason="everything"
    )
    if withdrawn:
        audit.record(
            session,
            actor=evidence.actor or evidence.source,
            action=PREFERENCES,
            lead_id=lead.id,
            detail={"channels": withdrawn, "unsubscribed": "everything"},
        )
    session.commit()


def _set_channels(
    session: Session,
    lead: Lead,
    wanted: dict[str, bool],
    evidence: Evidence,
    now: datetime,
    *,
    reason: str | None = None,
) -> dict[str, bool]:
    if not wanted:
        return {}
    current = current_consents(session, lead.id, tuple(wanted))
    changed = {}
    for name, on in wanted.items():
        if current[name] == GRANTED if on else current[name] in ("none", WITHDRAWN):
            continue
        session.add(
            Consent(
                lead_id=lead.id,
                channel=name,
                purpose="marketing",
                status=GRANTED if on else WITHDRAWN,
                source_url=evidence.source,
                ip=evidence.ip,
                user_agent=(evidence.user_agent or "")[:1024] or None,
                reason=reason,
                wording_version=evidence.wording_version if on else None,
                recorded_at=now,
            )
        )
        changed[name] = on
    return changed
