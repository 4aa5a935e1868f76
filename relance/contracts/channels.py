"""The channels a message can go out on: the one list every layer reads.

A channel is a provider (the send activity in ``activities/``, registered with
``@provider(<name>)``), a renderer (its templates, ``templates/<name>/<template><suffix>``) and
the consent channel a marketing send on it needs. This module holds the light part only (names,
no I/O): the API's enums and OpenAPI, the consent ledger's channels, the CSV import, the send
ledger and the journeys (inside the workflow sandbox) all read it. Adding a channel: an entry
here, a provider module, its templates (docs/channels.md).

The order is no preference: each journey names its own (``Journey.send_best``,
workflows/journey.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Channel:
    name: str  # as the messages table, the API and the journeys' statuses say it
    # The send activity's type name. Saved journey histories record it: never renamed.
    activity: str
    consent: str  # the consent channel a marketing send needs granted (relance/domain/consent.py)
    template_dir: str  # templates/<template_dir>/<template><template_suffix>
    template_suffix: str
    # The lead field that addresses it ("email", "phone"); "" when the receiver knows the lead by
    # its id (a webhook). A lead without it gets nothing on the channel: ``no_address`` says so.
    # Journeys choosing a channel read it from LeadFacts.has_<address> when there is one (a
    # phone); an email address every lead has.
    address: str
    no_address: str
    # What a retried send reuses, so the provider (or receiver) can drop a second copy.
    idempotency_key: str
    label: str  # in the journeys' step details: "relance by SMS"


EMAIL = Channel(
    name="email",
    activity="send_email",
    consent="email",
    template_dir="email",
    template_suffix=".jinja",
    address="email",
    no_address="the lead has no email address",
    idempotency_key="Message-ID",
    label="email",
)
SMS = Channel(
    name="sms",
    activity="send_sms",
    consent="sms",
    template_dir="sms",
    template_suffix=".txt",
    address="phone",
    no_address="the lead has no phone number",
    idempotency_key="reference",
    label="SMS",
)
# A signed JSON POST to the configured receiver (a WhatsApp or push gateway, a Zapier-like
# automation): it gets the lead's id, never an address, and its own consent channel, "webhook",
# so a lead's yes to email is never taken for a yes to messages through a gateway.
WEBHOOK = Channel(
    name="webhook",
    activity="send_webhook",
    consent="webhook",
    template_dir="webhook",
    template_suffix=".jinja",
    address="",
    no_address="",
    idempotency_key="delivery id",
    label="webhook",
)

CHANNELS: tuple[Channel, ...] = (EMAIL, SMS, WEBHOOK)
NAMES: tuple[str, ...] = tuple(c.name for c in CHANNELS)
# The consent ledger's channels (an API consent, a CSV import's ``consent`` column), in order.
CONSENT_CHANNELS: tuple[str, ...] = tuple(dict.fromkeys(c.consent for c in CHANNELS))

_BY_NAME = {c.name: c for c in CHANNELS}


class UnknownChannel(ValueError):
    pass


def channel(name: str) -> Channel:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownChannel(f"{name!r} is not a channel (channels: {', '.join(NAMES)})") from None


def template_file(channel_name: str, template: str) -> str:
    """The template's path under ``templates/`` for this channel."""
    c = channel(channel_name)
    return f"{c.template_dir}/{template}{c.template_suffix}"


def channel_label(channel_name: str) -> str:
    """How a journey's step details name it: "relance by SMS"."""
    return channel(channel_name).label
