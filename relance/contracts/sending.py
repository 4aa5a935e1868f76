"""One message to one lead: what a journey asks the send ledger for, and what it answers.

Ids only: the activity loads the lead itself; every send goes through the send ledger
(activities/sending.py): consent, suppression, exclusions, cap, once. A marketing send has waited
for the send window in the journey before it asks (workflows/steps.py ``send_marketing``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from temporalio import activity

from relance.contracts.skips import SkipReason


@dataclass(eq=False)
class SendFailure(Exception):
    """An attempt that did not end with the provider's acceptance.

    ``permanent``: retrying cannot fix it (bad address, recipient refused, a 5xx answer): the
    send is recorded failed and the journey goes on. ``maybe_delivered``: the attempt ended after
    the message went out, without the provider's answer (it may have it)."""

    reason: str
    permanent: bool = False
    maybe_delivered: bool = False
    status: int | None = None  # the provider's HTTP status, when it answered one

    def __str__(self) -> str:
        return self.reason


@dataclass
class SendRequest:
    """One message of a journey to one lead. Ids only: the activity loads the lead itself."""

    lead_id: str
    workflow_id: str
    journey: str
    step: str
    template: str
    kind: str = "marketing"  # marketing | transactional
    about: str = ""  # what else the message is about, "<kind>:<id>" (see message_context.py)
    # Over the frequency cap: "defer" (answer deferred, with the time the cap allows it again),
    # "skip" (skipped for good), or "exempt" (counted, never held: a reminder the lead asked for).
    over_cap: str = "skip"
    # Exclusions the journey carries itself (a defined journey's ``rules.exclude``, in its
    # input: the version the lead entered with), checked besides those of ``journey``'s rules.
    exclude: list[str] | None = None
    # What a marketing message is about (config/topics.yaml): the lead must have it on. None: the
    # journey's topic from the catalogue (relance/contracts/catalogue.py ``topic_of``).
    # Transactional messages have no topic gate.
    topic: str | None = None


@dataclass
class SendResult:
    status: (
        str  # sent | skipped | failed (refused for good by the provider) | deferred (frequency cap)
    )
    message_id: str | None = None
    reason: str = ""
    already_sent: bool = False
    retry_at: datetime | None = None  # deferred: when the frequency cap allows the message
    skip: SkipReason | None = None  # skipped: why, as a kind (``reason`` says it in words)


# The activities, as journeys call them (``workflow.execute_activity(send_email, ...)``):
# only the name and the types count here; the worker runs the implementation registered under
# the same name (activities/email.py, sms.py, webhook.py). Channels are sent by their activity's
# name from the channel list (relance/contracts/channels.py); tests/test_layers.py checks that
# each stub and its implementation agree.


@activity.defn(name="send_email")
def send_email(request: SendRequest) -> SendResult:
    raise NotImplementedError("run by the worker: EmailActivities.send_email")


@activity.defn(name="send_sms")
def send_sms(request: SendRequest) -> SendResult:
    raise NotImplementedError("run by the worker: SmsActivities.send_sms")


@activity.defn(name="send_webhook")
def send_webhook(request: SendRequest) -> SendResult:
    raise NotImplementedError("run by the worker: WebhookActivities.send_webhook")
