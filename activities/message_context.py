"""What a message is about, beyond the lead: an event, a cart, an order...

A journey names it in ``SendRequest.about`` as ``"<kind>:<id>"``, several joined by commas
(``"cart:c-1,promo:RL-7K2Q"``): ids only, never content.
The send activity asks the loader registered for that kind for extra template variables and
attachments (an event's ``.ics``, say). Loaders live beside their journey's activities and
register with ``@context_loader("kind")``. A loader may also say the message must not go out
any more (``skip_reason``: the cart was bought meanwhile); the send is then recorded as skipped,
however many times the activity is retried.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session
from temporalio.exceptions import ApplicationError

from relance.domain.models import Lead


@dataclass
class Attachment:
    filename: str
    content_type: str  # e.g. text/calendar
    content: bytes


@dataclass
class MessageExtras:
    context: dict[str, Any] = field(default_factory=dict)
    attachments: list[Attachment] = field(default_factory=list)
    skip_reason: str = ""


ContextLoader = Callable[[Session, Lead, str], MessageExtras]
_LOADERS: dict[str, ContextLoader] = {}


def context_loader(kind: str) -> Callable[[ContextLoader], ContextLoader]:
    def register(loader: ContextLoader) -> ContextLoader:
        _LOADERS[kind] = loader
        return loader

    return register


def load_extras(session: Session, lead: Lead, about: str) -> MessageExtras:
    merged = MessageExtras()
    for part in filter(None, about.split(",")):
        kind, _, ref = part.partition(":")
        loader = _LOADERS.get(kind)
        if loader is None or not ref:
            raise ApplicationError(
                f"nothing knows how to describe {part!r} in a message",
                type="UnknownAbout",
                non_retryable=True,
            )
        extras = loader(session, lead, ref)
        merged.context.update(extras.context)
        merged.attachments.extend(extras.attachments)
        merged.skip_reason = merged.skip_reason or extras.skip_reason
    return merged
