"""Segments (hot / warm / cold) and lifecycle stages, derived from the data, never stored.

    segment   hot: score >= segment_hot_score; warm: score >= segment_warm_score; cold: below
    stage     customer   an order
              sql        a sales task open (or escalated), or one closed with a meeting booked
              mql        score >= score_mql_threshold
              lead       a form submitted (a sign-up through POST /leads)
              subscriber none of these (e.g. imported with consent only)

The first that holds wins, top to bottom. A defined journey's update may raise a lead's stage
(``leads.stage_floor``: "sales accepted it", sql): the lead shows at least that stage, higher when
its facts say so, so a stage only moves forward, as marketers expect of a lifecycle. Derived in
SQL (one CASE expression each), so ``GET /leads?segment=hot&stage=mql`` filters in the database,
and a change of thresholds applies at once, to every lead, with no stored stage to migrate.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import and_, case, exists, or_, select
from sqlmodel import Session, col

from relance.domain.models import Lead, LeadActivity, Order, SalesTask
from relance.domain.settings import Settings

Segment = Literal["hot", "warm", "cold"]
Stage = Literal["subscriber", "lead", "mql", "sql", "customer"]
STAGES: tuple[str, ...] = ("subscriber", "lead", "mql", "sql", "customer")
QUALIFIED = STAGES[STAGES.index("mql") :]  # marketing-qualified, or further on


def segment_expr(settings: Settings):
    return case(
        (col(Lead.score) >= settings.segment_hot_score, "hot"),
        (col(Lead.score) >= settings.segment_warm_score, "warm"),
        else_="cold",
    )


def stage_expr(settings: Settings):
    has_order = exists(select(Order.id).where(col(Order.lead_id) == col(Lead.id)))
    with_sales = exists(
        select(SalesTask.id).where(
            col(SalesTask.lead_id) == col(Lead.id),
            or_(
                col(SalesTask.status).in_(("open", "escalated")),
                col(SalesTask.outcome) == "meeting_booked",
            ),
        )
    )
    has_form = exists(
        select(LeadActivity.id).where(
            and_(col(LeadActivity.lead_id) == col(Lead.id), col(LeadActivity.kind) == "form")
        )
    )
    floor = col(Lead.stage_floor)
    return case(
        (or_(has_order, floor == "customer"), "customer"),
        (or_(with_sales, floor == "sql"), "sql"),
        (or_(col(Lead.score) >= settings.score_mql_threshold, floor == "mql"), "mql"),
        (or_(has_form, floor == "lead"), "lead"),
        else_="subscriber",
    )


def new_lead_segment_and_stage(score: int, settings: Settings, *, form: bool) -> tuple[str, str]:
    """``segment_and_stage`` of a lead created a moment ago, without a query: it has no order and
    no sales task yet, so the stage is ``mql`` by its score, else ``lead`` when it came by a form.
    The same thresholds as the SQL above (tests/test_segments.py checks both agree)."""
    if score >= settings.segment_hot_score:
        segment = "hot"
    elif score >= settings.segment_warm_score:
        segment = "warm"
    else:
        segment = "cold"
    if score >= settings.score_mql_threshold:
        return segment, "mql"
    return segment, "lead" if form else "subscriber"


def segment_and_stage(session: Session, lead_id: str, settings: Settings) -> tuple[str, str]:
    """The lead's segment and stage as the API shows them (and the MQL notification tells the
    CRM), in one query."""
    segment, stage = session.execute(
        select(segment_expr(settings), stage_expr(settings)).where(col(Lead.id) == lead_id)
    ).one()
    return segment, stage
