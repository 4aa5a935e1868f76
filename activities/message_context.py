"""What a message is about, beyond the lead: an event, a cart, an order...

A journey names it in ``SendRequest.about`` as ``"<kind>:<id>"`` (ids only, never content).
The send activity asks the loader registered for that kind for extra template variables and
attachments (an event's ``.ics``, say). Loaders live beside their journey's activities and
register with ``@context_loader("kind")``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session
from temporalio.exceptions import ApplicationError

from relance.models import Lead


@dataclass
class Attachment:
    filename: str
    content_type: str  # e.g. text/calendar
    content: bytes


@dataclass
class MessageExtras:
    context: dict[str, Any] = field(default_factory=dict)
    attachments: list[Attachment] = field(default_factory=list)


ContextLoader = Callable[[Session, Lead, str], MessageExtras]
_LOADERS: dict[str, ContextLoader] = {}


def context_loader(kind: str) -> Callable[[ContextLoader], ContextLoader]:
    def register(loader: ContextLoader) -> ContextLoader:
        _LOADERS[kind] = loader
        return loader

    return register


def load_extras(session: Session, lead: Lead, about: str) -> MessageExtras:
    if not about:
        return MessageExtras()
    kind, _, ref = about.partition(":")
    loader = _LOADERS.get(kind)
    if loader is None or not ref:
        raise ApplicationError(f"nothing knows how to describe {about!r} in a message", type="UnknownAbout",
                               non_retryable=True)
    return loader(session, lead, ref)
