"""The channels' providers: one class per channel (``activities/email.py``, ``sms.py``,
``webhook.py``), registered under the channel's name with ``@provider``. The channel's light
part (its activity name, consent channel, templates, address) is in relance/contracts/channels.py;
``channel_activities`` builds a provider for every channel listed there and hands the worker
their send activities, so a channel without a provider stops the worker at start, not a journey
at its first message.

A provider is built with ``(settings, engine, renderer)`` and has a method named as the channel's
activity (``send_email``), an ``@activity.defn`` taking a ``SendRequest``, that sends through the
send ledger (activities/sending.py: consent, suppression, exclusions, cap, once; the send window
is the journey's wait before the activity).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import httpx
from sqlalchemy.engine import Engine

from activities.frequency import FrequencyCap
from activities.sending import Claim, Delivery, SendLedger
from relance.contracts.channels import CHANNELS, UnknownChannel, channel
from relance.contracts.sending import SendFailure, SendRequest
from relance.domain.models import Lead
from relance.domain.rendering import Renderer
from relance.domain.settings import Settings
from relance.services.journeys import rules_for

Provider = Callable[[Settings, Engine, Renderer], object]
_PROVIDERS: dict[str, Provider] = {}


def provider(channel_name: str) -> Callable[[Provider], Provider]:
    channel(channel_name)  # a provider for a channel the list does not have is a mistake

    def register(cls: Provider) -> Provider:
        _PROVIDERS[channel_name] = cls
        return cls

    return register


def ledger_for(settings: Settings, engine: Engine) -> SendLedger:
    """The send ledger a provider sends through, with the configured frequency cap, suppression
    list and journey rules."""
    return SendLedger(
        engine,
        FrequencyCap(settings.frequency_cap_messages, settings.frequency_cap_days),
        suppression_key=settings.suppression_hash_key,
        rules=partial(rules_for, settings),
        topics=settings.topics,
    )


class ChannelProvider:
    """What every channel's provider starts from: the settings, the send ledger it sends
    through, the renderer; and what a message's template sees (``context``)."""

    def __init__(self, settings: Settings, engine: Engine, renderer: Renderer) -> None:
        self.settings = settings
        self.ledger = ledger_for(settings, engine)
        self.renderer = renderer

    def blocked(self) -> str:
        """Why this channel cannot send at all (e.g. no provider set up); "" when it can."""
        return ""

    def deliver(self, request: SendRequest, claim: Claim) -> Delivery:
        """Render a claimed message and hand it to the provider, without touching the database
        (the caller records the outcome): a broadcast's wave sends through it. A provider that
        does not have it sends its broadcasts one ordinary send at a time."""
        raise NotImplementedError

    def context(self, claim: Claim) -> dict:
        """The lead's fields and the brand's, and what the message is about (an event, a cart)."""
        return {**template_context(self.settings, claim.lead), **claim.extras.context}


def post_to_provider(url: str, who: str, *, timeout: float, **request) -> str | None:
    """Hand one message to an HTTP provider (an SMS gateway, a webhook receiver): its id for the
    message, if it answered one. Raises SendFailure (activities/sending.py): nothing went out
    (retried); it went out and no answer came (maybe delivered, retried); a 5xx or 429 (retried);
    any other answer than a 2xx (refused for good: a 4xx, or a redirect, which is not taken)."""
    response = post_accepted(url, who, timeout=timeout, **request)
    try:
        return str(response.json().get("id", "")) or None
    except (ValueError, AttributeError):  # accepted all the same: an answer without an id
        return None


def post_accepted(url: str, who: str, *, timeout: float, **request) -> httpx.Response:
    """One POST answered with a 2xx (its response), or SendFailure as ``post_to_provider``
    says."""
    try:
        response = httpx.post(url, timeout=timeout, **request)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as err:
        raise SendFailure(f"could not reach the {who}: {str(err) or type(err).__name__}") from err
    except httpx.TransportError as err:  # the request went out, the answer never came
        raise SendFailure(
            f"the {who} did not answer: {str(err) or type(err).__name__}", maybe_delivered=True
        ) from err
    status = response.status_code
    if status >= 500 or status == 429:
        raise SendFailure(f"the {who} answered {status}", status=status)
    if status >= 400:
        raise SendFailure(
            f"the {who} refused: {status} {response.text[:200]}", permanent=True, status=status
        )
    if not 200 <= status < 300:
        raise SendFailure(f"the {who} answered {status}, not a 2xx", permanent=True, status=status)
    return response


def template_context(settings: Settings, lead: Lead) -> dict:
    """What a template may use about the lead and the brand."""
    return {
        "first_name": lead.first_name,
        "locale": lead.locale,
        "brand_name": settings.brand_name,
        "site_url": settings.site_url.rstrip("/"),
    }


def channel_activities(settings: Settings, engine: Engine, renderer: Renderer) -> list[Callable]:
    """Every channel's send activity, in the order of the channel list."""
    check_channel_settings(settings)
    sends = []
    for c in CHANNELS:
        if c.name not in _PROVIDERS:
            raise RuntimeError(
                f"the {c.name} channel has no provider: a class in activities/ registered with "
                f'@provider("{c.name}") (docs/channels.md)'
            )
        sends.append(getattr(_PROVIDERS[c.name](settings, engine, renderer), c.activity))
    return sends


def check_channel_settings(settings: Settings) -> None:
    """The journeys' channel preferences name channels that exist (a typo in
    RELANCE_WELCOME_RELANCE_CHANNELS stops the worker at start, with the list of channels)."""
    for name in settings.welcome_relance_channels:
        try:
            channel(name)
        except UnknownChannel as err:
            raise ValueError(f"RELANCE_WELCOME_RELANCE_CHANNELS: {err}") from None
