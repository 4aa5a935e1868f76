"""Carts, orders, promo codes and lists: what the abandoned-cart and purchase journeys do.

Also the message loaders that put a cart's items, an order and a promo code into an email,
and that stop a cart reminder once the cart is bought or emptied.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, func, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.message_context import MessageExtras, context_loader
from relance.contracts.commerce import PromoRequest, PurchaseFacts, PurchaseRef
from relance.domain.models import Cart, Lead, ListMember, Order, PromoCode, utcnow

_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I


class CommerceActivities:
    def __init__(self, engine: Engine, *, loyal_list: str) -> None:
        self.engine = engine
        self.loyal_list = loyal_list

    @activity.defn(name="issue_promo_code", no_thread_cancel_exception=True)
    def issue_promo_code(self, request: PromoRequest) -> str:
        with Session(self.engine) as session:
            existing = session.exec(
                select(PromoCode).where(PromoCode.issued_for == request.issued_for)
            ).first()
            if existing:
                return existing.code
            code = f"{request.prefix}-" + "".join(secrets.choice(_CODE_ALPHABET) for _ in range(8))
            # The journey's clock (the attempt's scheduled time: skipped time in tests): a code
            # valid 10 days is valid 10 days from the message that gives it.
            now = activity.info().current_attempt_scheduled_time or utcnow()
            session.add(
                PromoCode(
                    code=code,
                    lead_id=request.lead_id,
                    issued_for=request.issued_for,
                    percent_off=request.percent_off,
                    created_at=now,
                    expires_at=now + timedelta(days=request.valid_days)
                    if request.valid_days
                    else None,
                )
            )
            try:
                session.commit()
            except IntegrityError as err:  # a concurrent attempt issued it, or a code collision
                raise ApplicationError("promo code not issued; retrying", type="PromoRace") from err
            return code

    @activity.defn(name="record_purchase", no_thread_cancel_exception=True)
    def record_purchase(self, ref: PurchaseRef) -> PurchaseFacts:
        """First or repeat purchase; a repeat puts the lead on the loyal-customers list."""
        with Session(self.engine) as session:
            order = session.get(Order, ref.order_id)
            if order is None:
                raise ApplicationError(
                    f"order {ref.order_id} does not exist", type="OrderNotFound", non_retryable=True
                )
            earlier = session.exec(
                select(func.count())
                .select_from(Order)
                .where(Order.lead_id == order.lead_id, Order.created_at < order.created_at)
            ).one()
            added = None
            if earlier > 0:
                member = session.exec(
                    select(ListMember).where(
                        ListMember.list_name == self.loyal_list, ListMember.lead_id == order.lead_id
                    )
                ).first()
                if member is None:
                    session.add(
                        ListMember(
                            list_name=self.loyal_list,
                            lead_id=order.lead_id,
                            reason=f"repeat purchase (order {order.id})",
                        )
                    )
                    session.commit()
                added = self.loyal_list
            return PurchaseFacts(
                order.lead_id, first_purchase=earlier == 0, orders=earlier + 1, added_to_list=added
            )


def _money(amount: float, currency: str) -> str:
    return f"{amount:,.2f} {currency}"


@context_loader("cart")
def cart_context(session: Session, lead: Lead, cart_id: str) -> MessageExtras:
    cart = session.get(Cart, cart_id)
    if cart is None or cart.lead_id != lead.id:
        raise ApplicationError(
            f"cart {cart_id} of lead {lead.id} does not exist",
            type="CartNotFound",
            non_retryable=True,
        )
    if cart.status != "open" or not cart.items:
        return MessageExtras(
            skip_reason=f"the cart is {'bought' if cart.status == 'purchased' else 'empty'}"
        )
    items = [
        {
            **item,
            "line_total": _money(item["qty"] * item["unit_price"], cart.currency),
            "unit": _money(item["unit_price"], cart.currency),
        }
        for item in cart.items
    ]
    return MessageExtras(
        context={"cart": {"items": items, "total": _money(cart.total, cart.currency)}}
    )


@context_loader("order")
def order_context(session: Session, lead: Lead, order_id: str) -> MessageExtras:
    order = session.get(Order, order_id)
    if order is None or order.lead_id != lead.id:
        raise ApplicationError(
            f"order {order_id} of lead {lead.id} does not exist",
            type="OrderNotFound",
            non_retryable=True,
        )
    return MessageExtras(
        context={"order": {"id": order.id, "total": _money(order.total, order.currency)}}
    )


@context_loader("promo")
def promo_context(session: Session, lead: Lead, code: str) -> MessageExtras:
    promo = session.get(PromoCode, code)
    if promo is None or promo.lead_id != lead.id:
        raise ApplicationError(
            f"promo code {code} is not the lead's", type="PromoNotFound", non_retryable=True
        )
    expires = promo.expires_at.date().isoformat() if promo.expires_at else None
    return MessageExtras(
        context={
            "promo": {"code": promo.code, "percent_off": promo.percent_off, "expires_at": expires},
            "promo_code": promo.code,
            "promo_expires_at": expires,
        }
    )
