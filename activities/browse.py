"""Browse abandonment (a reader who keeps viewing one author and buys nothing): what the
recommendation email says
about the category, and the exclusion checked at the moment of sending.

``about="category:<name>"``: the template gets ``category``; a lead who bought an item of that
category (``orders.items[].category``), before or during the journey, is skipped: a buyer of a
Stephen King book must not get the "discover Stephen King" email.
"""

from __future__ import annotations

from sqlmodel import Session, select

from activities.message_context import MessageExtras, context_loader
from relance.domain.models import Lead, Order


def bought_in_category(session: Session, lead_id: str, category: str) -> bool:
    for items in session.exec(select(Order.items).where(Order.lead_id == lead_id)).all():
        if any(isinstance(item, dict) and item.get("category") == category for item in items or []):
            return True
    return False


@context_loader("category")
def category_context(session: Session, lead: Lead, category: str) -> MessageExtras:
    skip = (
        f"the lead bought in the category {category}"
        if bought_in_category(session, lead.id, category)
        else ""
    )
    return MessageExtras(
        context={"category": category, "category_name": category.replace("-", " ").title()},
        skip_reason=skip,
    )
