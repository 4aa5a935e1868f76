"""Enrollment rules per journey: may a lead go through it again, how long after leaving
the previous run, and who is excluded from it.

Journeys are named as their messages name them (``messages.journey``: welcome, nurturing, cart,
browse, reengage, scenario, premium, event, purchase). The defaults are declared with each journey
in the catalogue (relance/contracts/catalogue.py); ``RELANCE_JOURNEY_RULES`` overrides them per
journey (relance/domain/settings.py; relance/services/journeys.py ``rules_for`` reads both), and
``RELANCE_REENROLL_COOLDOWN_DAYS`` is the cooldown of a journey that allows re-enrollment and sets
none of its own.

Exclusions are checked at entry (the API's enrollment) and again by the send ledger before each
marketing message of the journey (activities/sending.py), so a lead who becomes a customer or
joins an excluded list mid-journey gets no further marketing message from it. The vocabulary:

- ``customer``: the lead has an order;
- ``list:<name>``: the lead is in the list ``<name>``;
- ``purchased:<sku or category>``: the lead bought an item with that sku or that category
  (``orders.items[].sku`` / ``.category``; a buyer of a Stephen King book is not offered it again).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel, Field, field_validator
from sqlmodel import Session, col, select

from relance.domain.models import ListMember, Order

EXCLUDED = "excluded: "  # how a send skipped by an exclusion starts its reason


class JourneyRules(BaseModel):
    """One journey's enrollment rules (a ``RELANCE_JOURNEY_RULES`` entry has the same fields)."""

    model_config = {"frozen": True, "extra": "forbid"}

    reenroll: bool = Field(
        default=True, description="May a lead go through the journey again once a run closed?"
    )
    cooldown_days: float | None = Field(
        default=None,
        ge=0,
        le=3650,
        description="Days after the previous run closed before the lead may enter again; "
        "None: RELANCE_REENROLL_COOLDOWN_DAYS",
    )
    exclude: tuple[str, ...] = Field(
        default=(),
        max_length=50,
        description='Exclusions: "customer", "list:<name>", "purchased:<sku or category>"',
    )

    @field_validator("exclude")
    @classmethod
    def _known_rules(cls, rules: tuple[str, ...]) -> tuple[str, ...]:
        for rule in rules:
            check_rule(rule)
        return rules


def check_rule(rule: str) -> None:
    """Raise ValueError unless ``rule`` is in the exclusion vocabulary."""
    kind, sep, arg = rule.partition(":")
    if rule == "customer" or (
        sep and kind in ("list", "purchased") and arg.strip() and len(arg) <= 128
    ):
        return
    raise ValueError(
        f'unknown exclusion rule {rule!r}: use "customer", "list:<name>" or "purchased:<sku or '
        'category>"'
    )


def cooldown_of(rules: JourneyRules, default_days: float) -> timedelta:
    return timedelta(days=default_days if rules.cooldown_days is None else rules.cooldown_days)


def _ago(delta: timedelta) -> str:
    seconds = max(int(delta.total_seconds()), 0)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "just now" if seconds < 1 else f"{seconds} second{'s' if seconds > 1 else ''} ago"


def _days(cooldown: timedelta) -> str:
    days = cooldown.total_seconds() / 86400
    return (
        f"{days:g} day{'s' if days != 1 else ''}"
        if days >= 1
        else f"{cooldown.total_seconds():g} seconds"
    )


def cooldown_refusal(
    *, journey: str, closed_at: datetime | None, cooldown: timedelta, now: datetime
) -> str:
    """Why a lead whose previous run of ``journey`` closed at ``closed_at`` may not enter it
    again at ``now``; "" when the cooldown is over (or there was no previous run)."""
    if closed_at is None or cooldown <= timedelta(0):
        return ""
    if now - closed_at < cooldown:
        return f"left the {journey} journey {_ago(now - closed_at)}; cooldown {_days(cooldown)}"
    return ""


def exclusion_reason(session: Session, lead_id: str, rules: tuple[str, ...]) -> str:
    """Why the lead is excluded by ``rules`` (the first that applies); "" when none does."""
    return exclusion_reasons(session, [lead_id], rules)[lead_id]


def exclusion_reasons(
    session: Session, lead_ids: Sequence[str], rules: tuple[str, ...]
) -> dict[str, str]:
    """``exclusion_reason`` for many leads, one read per rule (a broadcast's wave): lead id ->
    why the first rule that applies excludes them, "" when none does."""
    reasons = dict.fromkeys(lead_ids, "")
    for rule in rules:
        kind, _, arg = rule.partition(":")
        undecided = [lead_id for lead_id, why in reasons.items() if not why]
        if not undecided:
            break
        if rule == "customer":
            found = session.exec(
                select(Order.lead_id).where(col(Order.lead_id).in_(undecided)).distinct()
            )
            why = "the lead is a customer (has an order)"
        elif kind == "list":
            found = session.exec(
                select(ListMember.lead_id).where(
                    col(ListMember.lead_id).in_(undecided), ListMember.list_name == arg
                )
            )
            why = f"the lead is in the list {arg}"
        elif kind == "purchased":
            orders = session.exec(
                select(Order.lead_id, Order.items).where(col(Order.lead_id).in_(undecided))
            )
            found = [lead_id for lead_id, items in orders if _bought(items, arg)]
            why = f"the lead already purchased {arg}"
        else:
            continue
        for lead_id in found:
            reasons[lead_id] = why
    return reasons


def _bought(items: list | None, what: str) -> bool:
    """An order's items hold one with that sku or that category."""
    return any(
        isinstance(item, dict) and what in (item.get("sku"), item.get("category"))
        for item in items or []
    )
