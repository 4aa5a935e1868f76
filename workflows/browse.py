"""Browse abandonment (seed 001, seed 002: the bookshop and the Stephen King reader).

    page_view with a category (e.g. an author) ─► counted per category over 7 days
        3+ views of one category within 7 days ─► wait 3 days after the last visit to it
            (another visit restarts the clock) ─► recommendation email for that category
        bought in that category (before or meanwhile) ─► suppressed (checked when sending)
    unsubscribe ─► end

One journey per lead (id ``browse-<lead id>``), started and fed by signal-with-start from
``POST /events/track`` page views, like the cart journey. It ends after one recommendation
(or suppression); later visits start a new one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from temporalio import workflow

from relance.contracts.signals import PAGE_VIEWED, UNSUBSCRIBED, PageViewSignal, TrackingSignal
from workflows.steps import SentMessage, not_sent_outcome, send_marketing, show_step, wait_for

with workflow.unsafe.imports_passed_through():
    from relance.contracts.sending import SendRequest, send_email
    from relance.domain.send_window import SendWindow

JOURNEY = "browse"


@dataclass
class BrowseInput:
    lead_id: str
    min_views: int = 3
    window_days: float = 7.0  # the views must fall within this period
    delay_days: float = 3.0  # after the last visit to the category
    give_up_days: float = 30.0  # no category qualifies for this long: the journey ends
    send_window: SendWindow | None = None  # None: the global send window (RELANCE_SEND_WINDOW_*)


@dataclass
class BrowseStatus:
    step: str
    views: dict[str, int]  # category -> views within the window
    category: str | None


@dataclass
class BrowseResult:
    outcome: str  # sent | suppressed | not_sent | excluded | unsubscribed | no_interest
    category: str | None
    reason: str
    messages: list[SentMessage] = field(default_factory=list)


@workflow.defn(name="BrowseAbandonmentJourney")
class BrowseAbandonmentJourney:
    @workflow.init
    def __init__(self, input: BrowseInput) -> None:
        self.input = input
        self.step = "starting"
        self.views: dict[str, list[datetime]] = {}
        self.seen = 0
        self.unsubscribed = False
        self.category: str | None = None
        self.messages: list[SentMessage] = []

    @workflow.run
    async def run(self, input: BrowseInput) -> BrowseResult:
        # 1. Wait for a category with enough recent views.
        self._enter(
            "counting_views",
            f"Waiting for {input.min_views} views of one category within "
            f"{input.window_days:g} days",
        )
        while (category := self._qualified()) is None:
            seen = self.seen
            if not await wait_for(
                lambda: self.seen != seen or self.unsubscribed, timedelta(days=input.give_up_days)
            ):
                return self._finish(
                    "no_interest", None, f"no category reached {input.min_views} views"
                )
            if self.unsubscribed:
                return self._finish("unsubscribed", None, "the lead unsubscribed")
        self.category = category
        # 2. Three days after the last visit to it (a new visit restarts the clock).
        while True:
            due = self.views[category][-1] + timedelta(days=input.delay_days)
            self._enter(
                "waiting_after_last_visit",
                f"{category}: recommendation at {due:%Y-%m-%d %H:%M} UTC unless the lead visits it again",
            )
            count = len(self.views[category])
            if not await wait_for(
                lambda: len(self.views[category]) != count or self.unsubscribed,
                due - workflow.now(),
            ):
                break
            if self.unsubscribed:
                return self._finish("unsubscribed", category, "the lead unsubscribed")
        # 3. The recommendation; the send skips a lead who bought in the category.
        self._enter("sending_recommendation", f"Sending the {category} recommendation")
        step = f"recommend:{category}"
        sent = await send_marketing(
            send_email,
            SendRequest(
                lead_id=input.lead_id,
                workflow_id=workflow.info().workflow_id,
                journey=JOURNEY,
                step=step,
                template="browse_recommendation",
                about=f"category:{category}",
            ),
            summary=f"email browse {category}",
            window=input.send_window,
            stop=lambda: self.unsubscribed,
        )
        self.messages.append(
            SentMessage(
                step,
                "email",
                "browse_recommendation",
                sent.status,
                sent.message_id,
                workflow.now(),
                sent.reason,
            )
        )
        if sent.status == "sent":
            return self._finish(
                "sent", category, f"{len(self.views[category])} views of {category}, no purchase"
            )
        if "bought in the category" in sent.reason:
            return self._finish("suppressed", category, sent.reason)
        return self._finish(not_sent_outcome(sent), category, sent.reason)

    def _qualified(self) -> str | None:
        since = workflow.now() - timedelta(days=self.input.window_days)
        best = None
        for category, times in sorted(self.views.items()):
            recent = [t for t in times if t >= since]
            if len(recent) >= self.input.min_views and (
                best is None or recent[-1] > self.views[best][-1]
            ):
                best = category
        return best

    @workflow.signal(name=PAGE_VIEWED)
    def on_page_viewed(self, signal: PageViewSignal) -> None:
        self.views.setdefault(signal.category, []).append(workflow.now())
        self.seen += 1

    @workflow.signal(name=UNSUBSCRIBED)
    def on_unsubscribed(self, signal: TrackingSignal) -> None:
        self.unsubscribed = True

    @workflow.query(name="status")
    def status(self) -> BrowseStatus:
        since = workflow.now() - timedelta(days=self.input.window_days)
        return BrowseStatus(
            self.step,
            {c: len([t for t in ts if t >= since]) for c, ts in self.views.items()},
            self.category,
        )

    def _enter(self, step: str, details: str) -> None:
        self.step = step
        show_step(step, details)

    def _finish(self, outcome: str, category: str | None, reason: str) -> BrowseResult:
        self._enter("completed", f"Journey over: {outcome} ({reason})")
        return BrowseResult(outcome, category, reason, list(self.messages))
