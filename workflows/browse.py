"""Browse abandonment: a bookshop's reader who keeps looking at one author's books (a category)
without buying gets a recommendation for that author.

    page_view with a category (e.g. an author) ─► counted per category over 7 days
        no category with 3 views for 30 days ─► end: no_interest
        3+ views of one category within 7 days ─► wait 3 days after the last visit to it
            (another visit restarts the clock) ─► recommendation email for that category: sent
        bought in that category (before or meanwhile) ─► suppressed (checked when sending)
        refused by the journey's exclusions ─► excluded; not sent otherwise ─► not_sent
    unsubscribe ─► end: unsubscribed

One journey per lead (id ``browse-<lead id>``), started and fed by signal-with-start from
``POST /events/track`` page views, like the cart journey. It ends after one recommendation
(or suppression); later visits start a new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from temporalio import workflow

from relance.contracts.signals import PAGE_VIEWED, PageViewSignal
from relance.contracts.skips import SkipReason
from workflows.journey import Journey
from workflows.steps import JourneyResult, JourneyStatus, not_sent_outcome, skip_of, wait_for

with workflow.unsafe.imports_passed_through():
    from relance.domain.send_window import SendWindow

JOURNEY = "browse"


class BrowseOutcome(StrEnum):
    SENT = "sent"
    SUPPRESSED = "suppressed"  # the lead bought in the category
    NOT_SENT = "not_sent"
    EXCLUDED = "excluded"
    UNSUBSCRIBED = "unsubscribed"
    NO_INTEREST = "no_interest"


@dataclass
class BrowseInput:
    lead_id: str
    min_views: int = 3
    window_days: float = 7.0  # the views must fall within this period
    delay_days: float = 3.0  # after the last visit to the category
    give_up_days: float = 30.0  # no category qualifies for this long: the journey ends
    send_window: SendWindow | None = None  # None: the global send window (RELANCE_SEND_WINDOW_*)


@dataclass
class BrowseStatus(JourneyStatus):
    views: dict[str, int]  # category -> views within the window
    category: str | None


@dataclass
class BrowseResult(JourneyResult):
    outcome: BrowseOutcome
    category: str | None  # the category recommended (None: none qualified)


@workflow.defn(name="BrowseAbandonmentJourney")
class BrowseAbandonmentJourney(Journey):
    NAME, RESULT = JOURNEY, BrowseResult

    @workflow.init
    def __init__(self, input: BrowseInput) -> None:
        super().__init__(input.lead_id, input.send_window)
        self.input = input
        self.views: dict[str, list[datetime]] = {}
        self.seen = 0
        self.category: str | None = None

    @workflow.run
    async def run(self, input: BrowseInput) -> BrowseResult:
        # 1. Wait for a category with enough recent views.
        self.enter(
            "counting_views",
            f"Waiting for {input.min_views} views of one category within "
            f"{input.window_days:g} days",
        )
        while (category := self._qualified()) is None:
            seen = self.seen
            if not await wait_for(
                lambda: self.seen != seen or self.unsubscribed, timedelta(days=input.give_up_days)
            ):
                return self.finish(
                    BrowseOutcome.NO_INTEREST, f"no category reached {input.min_views} views"
                )
            if self.unsubscribed:
                return self.finish(BrowseOutcome.UNSUBSCRIBED, "the lead unsubscribed")
        self.category = category
        # 2. Three days after the last visit to it (a new visit restarts the clock).
        if not await self.wait_quiet(
            "waiting_after_last_visit",
            lambda due: (
                f"{category}: recommendation at {due:%Y-%m-%d %H:%M} UTC unless the lead visits"
                " it again"
            ),
            last_change=lambda: self.views[category][-1],
            changes=lambda: len(self.views[category]),
            quiet=timedelta(days=input.delay_days),
            stop=lambda: self.unsubscribed,
        ):
            return self.finish(BrowseOutcome.UNSUBSCRIBED, "the lead unsubscribed")
        # 3. The recommendation; the send skips a lead who bought in the category.
        self.enter("sending_recommendation", f"Sending the {category} recommendation")
        sent = await self.send(
            f"recommend:{category}",
            "browse_recommendation",
            about=f"category:{category}",
            summary=f"email browse {category}",
        )
        if sent.status == "sent":
            return self.finish(
                BrowseOutcome.SENT, f"{len(self.views[category])} views of {category}, no purchase"
            )
        if skip_of(sent) == SkipReason.NOT_RELEVANT:  # the lead bought in the category
            return self.finish(BrowseOutcome.SUPPRESSED, sent.reason)
        return self.finish(BrowseOutcome(not_sent_outcome(sent)), sent.reason)

    # What the lead does ------------------------------------------------------------------
    @workflow.signal(name=PAGE_VIEWED)
    def on_page_viewed(self, signal: PageViewSignal) -> None:
        self.views.setdefault(signal.category, []).append(workflow.now())
        self.seen += 1

    @workflow.query(name="status")
    def status(self) -> BrowseStatus:
        since = workflow.now() - timedelta(days=self.input.window_days)
        return BrowseStatus(
            step=self.step,
            views={c: len([t for t in ts if t >= since]) for c, ts in self.views.items()},
            category=self.category,
            messages=list(self.messages),
        )

    # Steps -------------------------------------------------------------------------------
    def _qualified(self) -> str | None:
        """The category viewed enough within the window (the latest visited, if several)."""
        since = workflow.now() - timedelta(days=self.input.window_days)
        best = None
        for category, times in sorted(self.views.items()):
            recent = [t for t in times if t >= since]
            if len(recent) >= self.input.min_views and (
                best is None or recent[-1] > self.views[best][-1]
            ):
                best = category
        return best

    def result_fields(self) -> dict:
        return dict(category=self.category)
