"""The re-engagement sweep: run daily by a Temporal Schedule (see ``relance/services/schedules.py``)
or by hand (``POST /sweeps/re-engagement``). It starts ``ReEngagementJourney`` for every lead
inactive for N days who has marketing email consent and is not already in the journey.

    cutoff = now - N days (fixed for the whole sweep)
    page of up to ``batch_size`` eligible leads after the cursor
        ─► start their journeys (one activity)
        │ more leads?                                          ▲
        ├── yes, and this run's history is long enough ─► continue-as-new with the cursor
        ├── yes ───────────────────────────────────────────────┘
        └── no ─► completed

Each page is one activity (about 6 history events), and the run continues as new every
``pages_per_run`` pages, so 100,000 leads never make one giant history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio import workflow

from workflows.steps import PAGE_OPTIONS, show_step, time_to_continue_as_new

with workflow.unsafe.imports_passed_through():
    from relance.contracts.reengagement import PageRequest, SweepInput, enroll_inactive_page


@dataclass
class SweepResult:
    cutoff: datetime
    pages: int
    leads: int  # eligible leads found
    started: int  # journeys started
    already_enrolled: int
    runs: int  # workflow runs (1 + continue-as-new count)


@workflow.defn(name="ReEngagementSweep")
class ReEngagementSweep:
    @workflow.run
    async def run(self, input: SweepInput) -> SweepResult:
        if input.cutoff is None:
            input.cutoff = workflow.now() - timedelta(days=input.inactive_days)
        pages_this_run = 0
        while True:
            show_step(
                "sweeping",
                f"Page {input.pages + 1}: leads inactive since {input.cutoff:%Y-%m-%d %H:%M} UTC, "
                f"after lead {input.cursor or '(start)'}; {input.started} journeys started so far",
            )
            page = await workflow.execute_activity(
                enroll_inactive_page,
                PageRequest(cutoff=input.cutoff, after=input.cursor, limit=input.batch_size),
                summary=f"page {input.pages + 1}",
                **PAGE_OPTIONS,
            )
            input.pages += 1
            pages_this_run += 1
            input.leads += page.leads
            input.started += page.started
            input.already_enrolled += page.already_enrolled
            if page.next_cursor is None:
                show_step("completed", f"{input.started} journeys started over {input.pages} pages")
                return SweepResult(
                    input.cutoff,
                    input.pages,
                    input.leads,
                    input.started,
                    input.already_enrolled,
                    input.runs,
                )
            input.cursor = page.next_cursor
            if time_to_continue_as_new(pages_this_run, input.pages_per_run):
                input.runs += 1
                workflow.continue_as_new(input)
