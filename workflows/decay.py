"""The daily score decay: run by a Temporal Schedule (``relance/services/schedules.py``, created
at worker start). Leads without activity for a decay period lose a share of their score
(config/scoring.yaml ``decay``), each decay a score event with its reason.

    now = the sweep's start (fixed for the whole sweep)
    page of up to ``batch_size`` leads inactive a period or more, after the cursor
        ─► decay them (one activity)
        │ more leads?                                          ▲
        ├── yes, and this run's history is long enough ─► continue-as-new with the cursor
        ├── yes ───────────────────────────────────────────────┘
        └── no ─► completed
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from temporalio import workflow

from workflows.steps import PAGE_OPTIONS, show_step, time_to_continue_as_new

with workflow.unsafe.imports_passed_through():
    from relance.contracts.scoring import DecayInput, DecayPage, decay_scores_page


@dataclass
class DecayResult:
    now: datetime
    pages: int
    leads: int
    decayed: int  # score events written
    points: int  # points removed in all (negative)


@workflow.defn(name="ScoreDecaySweep")
class ScoreDecaySweep:
    @workflow.run
    async def run(self, input: DecayInput) -> DecayResult:
        if input.now is None:
            input.now = workflow.now()
        pages_this_run = 0
        while True:
            show_step(
                "decaying",
                f"Page {input.pages + 1} after lead {input.cursor or '(start)'}; "
                f"{input.decayed} decays so far",
            )
            page = await workflow.execute_activity(
                decay_scores_page,
                DecayPage(now=input.now, after=input.cursor, limit=input.batch_size),
                summary=f"page {input.pages + 1}",
                **PAGE_OPTIONS,
            )
            input.pages += 1
            pages_this_run += 1
            input.leads += page.leads
            input.decayed += page.decayed
            input.points += page.points
            if page.next_cursor is None:
                show_step(
                    "completed",
                    f"{input.decayed} decays over {input.pages} pages ({input.points} points)",
                )
                return DecayResult(input.now, input.pages, input.leads, input.decayed, input.points)
            input.cursor = page.next_cursor
            if time_to_continue_as_new(pages_this_run, input.pages_per_run):
                workflow.continue_as_new(input)
