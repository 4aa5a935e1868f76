"""The abandoned-cart journey: remind a lead who left items in their cart, up to three times.

    cart_updated ─► wait 1 h without an update ─► reminder 1 (the cart's items)
        (every update restarts the clock)   ─► wait 24 h more ─► reminder 2
                                             ─► wait 72 h more ─► last reminder + single-use
                                                                   promo code
                                             ─► end: all_reminders_sent
    purchase, at any point ─► end at once: purchased (no reminder after it, even one being retried)
    cart emptied           ─► end quietly: emptied
    unsubscribe            ─► end: unsubscribed

One journey per lead (id ``cart-<lead id>``), started and fed by signal-with-start, so any
number of concurrent or repeated shop events make exactly one journey.
"""

from __future__ import annotations

import asyncio
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from temporalio import workflow

from relance.contracts.signals import (
    CART_UPDATED,
    CLICKED,
    PURCHASED,
    CartSignal,
    PurchaseSignal,
    TrackingSignal,
)
from workflows.journey import Journey
from workflows.steps import JourneyStatus

with workflow.unsafe.imports_passed_through():
    from relance.contracts.sending import SendResult
    from relance.domain.send_window import SendWindow

JOURNEY = "cart"


class CartOutcome(StrEnum):
    PURCHASED = "purchased"
    EMPTIED = "emptied"
    UNSUBSCRIBED = "unsubscribed"
    ALL_REMINDERS_SENT = "all_reminders_sent"


@dataclass
class CartInput:
    lead_id: str
    reminder_delays_hours: list[float] = field(default_factory=lambda: [1.0, 24.0, 72.0])
    last_reminder_percent_off: int = 10  # 0: no promo code in the last reminder
    send_window: SendWindow | None = None  # None: the global send window (RELANCE_SEND_WINDOW_*)


@dataclass
class CartMessage:
    step: str
    status: str  # sent | skipped | failed | cancelled (the cart was bought while it was sent)
    message_id: str | None
    at: datetime
    reason: str = ""
    promo_code: str | None = None


@dataclass
class CartStatus(JourneyStatus):
    cart_id: str | None
    updates: int
    last_update: datetime | None
    _: KW_ONLY
    messages: list[CartMessage] = field(default_factory=list)


@dataclass
class CartResult:
    """Not a ``JourneyResult``: the cart's outcome needs no reason, and its messages say more
    (``CartMessage``: the promo code, a reminder cancelled by the purchase)."""

    outcome: CartOutcome
    reminders_sent: int
    messages: list[CartMessage]


@workflow.defn(name="AbandonedCartJourney")
class AbandonedCartJourney(Journey):
    NAME = JOURNEY

    @workflow.init
    def __init__(self, input: CartInput) -> None:
        super().__init__(input.lead_id, input.send_window)
        self.input = input
        self.cart_id: str | None = None
        self.items = 0
        self.updates = 0
        self.last_update: datetime | None = None
        self.purchased = False
        self.messages: list[CartMessage] = []

    @workflow.run
    async def run(self, input: CartInput) -> CartResult:
        await self._reminders(input)
        await self.settle()
        return self._finish()

    async def _reminders(self, input: CartInput) -> None:
        # The journey starts with the shop's first event (signal-with-start).
        await workflow.wait_condition(lambda: self.updates > 0 or self.stopped())
        for number, delay_hours in enumerate(input.reminder_delays_hours, start=1):
            if self.stopped():
                return
            # Wait for the cart to stay untouched for the whole delay; an update restarts the clock.
            await self.wait_quiet(
                f"waiting_for_reminder_{number}",
                lambda due: (
                    f"Reminder {number} at {due:%Y-%m-%d %H:%M} UTC unless the cart changes or"
                    " is bought"
                ),
                last_change=lambda: self.last_update,
                changes=lambda: self.updates,
                quiet=timedelta(hours=delay_hours),
                stop=self.stopped,
            )
            if self.stopped():
                return
            self.last_update = workflow.now()  # the next delay counts from this reminder
            last = number == len(input.reminder_delays_hours)
            await self._remind(number, with_promo=last and input.last_reminder_percent_off > 0)

    # What the shop and the lead do ------------------------------------------------------------
    @workflow.signal(name=CART_UPDATED)
    def on_cart_updated(self, signal: CartSignal) -> None:
        self.cart_id, self.items = signal.cart_id, signal.item_count
        self.updates += 1
        self.last_update = workflow.now()

    @workflow.signal(name=PURCHASED)
    def on_purchased(self, signal: PurchaseSignal) -> None:
        self.purchased = True

    @workflow.signal(name=CLICKED)
    async def on_clicked(self, signal: TrackingSignal) -> None:
        await self.score_click(signal, "clicked a link in an abandoned-cart reminder")

    @workflow.query(name="status")
    def status(self) -> CartStatus:
        return CartStatus(
            step=self.step,
            cart_id=self.cart_id,
            updates=self.updates,
            last_update=self.last_update,
            messages=list(self.messages),
        )

    # Steps --------------------------------------------------------------------------------------
    def _emptied(self) -> bool:
        return self.updates > 0 and self.items == 0

    def stopped(self) -> bool:
        """Bought, emptied or unsubscribed: no reminder any more."""
        return self.purchased or self.unsubscribed or self._emptied()

    async def _remind(self, number: int, *, with_promo: bool) -> None:
        step = f"reminder_{number}"
        self.enter(f"sending_{step}", f"Sending abandoned-cart reminder {number}")
        about, code = f"cart:{self.cart_id}", None
        template = (
            "cart_reminder_last"
            if number == len(self.input.reminder_delays_hours)
            else f"cart_reminder_{number}"
        )
        if with_promo:
            code = await self.promo_code(
                f"{self.cart_id}:{step}", self.input.last_reminder_percent_off
            )
            about += f",promo:{code}"
        # Send unless the purchase comes first: a send being retried is abandoned at once, and
        # the send activity itself refuses a bought cart.
        send = asyncio.ensure_future(
            self.send(f"{self.cart_id}:{step}", template, about=about, record=False)
        )
        await workflow.wait_condition(lambda: send.done() or self.purchased)
        if not send.done():
            send.cancel()
            self.messages.append(
                CartMessage(step, "cancelled", None, workflow.now(), "the cart was bought")
            )
            return
        result: SendResult = send.result()
        self.messages.append(
            CartMessage(
                step,
                result.status,
                result.message_id,
                workflow.now(),
                result.reason,
                code if result.status == "sent" else None,
            )
        )

    def _finish(self) -> CartResult:
        if self.purchased:
            outcome = CartOutcome.PURCHASED
        elif self.unsubscribed:
            outcome = CartOutcome.UNSUBSCRIBED
        elif self._emptied():
            outcome = CartOutcome.EMPTIED
        else:
            outcome = CartOutcome.ALL_REMINDERS_SENT
        self.close(outcome)
        sent = sum(1 for m in self.messages if m.status == "sent")
        return CartResult(outcome, sent, list(self.messages))
