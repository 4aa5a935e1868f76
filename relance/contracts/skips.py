"""Why the send ledger skipped a message (``SendResult.skip``), so that a journey branches on a
kind, never on the wording of a reason (the reason stays the sentence shown to people)."""

from __future__ import annotations

from enum import StrEnum


class SkipReason(StrEnum):
    NO_CHANNEL = "no_channel"  # the lead cannot be reached on it (no phone, no SMS provider)
    NO_CONSENT = "no_consent"  # no marketing consent for the channel
    NO_TOPIC_CONSENT = "no_topic_consent"  # the lead turned the message's topic off
    PAUSED = "paused"  # the lead paused marketing messages (the preference page) until a date
    SUPPRESSED = "suppressed"  # the address is on the suppression list
    NOT_RELEVANT = "not_relevant"  # what it is about no longer holds: the cart bought, the category
    EXCLUDED = "excluded"  # the journey's exclusions (relance/domain/journey_rules.py)
    FREQUENCY_CAP = "frequency_cap"  # over the cap, with over_cap="skip"
    JOURNEY_STOPPED = "journey_stopped"  # the journey stopped while the message waited its moment
