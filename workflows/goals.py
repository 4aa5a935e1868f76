"""Which journeys declare which goals, and how a lead's running journeys are found.

A goal ends every running journey of the lead that declares it (as converted). The journeys are
found by their ids, which are known by construction (``<prefix>-<lead id>``), rather than by a
visibility query on ``LeadId``: visibility is eventually consistent (a journey started a second
ago may be missing from it) and needs an advanced-visibility store; a known id list is exact, and
signalling a closed journey is simply answered "not found".
"""

from __future__ import annotations

from relance.contracts.signals import DEMO_BOOKED_GOAL, PURCHASE_GOAL

# workflow id prefix -> the goals that journey declares (kept next to each journey as ``GOALS``)
JOURNEY_GOALS: dict[str, tuple[str, ...]] = {
    "welcome": (PURCHASE_GOAL,),
    "reengage": (PURCHASE_GOAL,),
    "nurture": (DEMO_BOOKED_GOAL, PURCHASE_GOAL),
    "scenario-newsletter": (PURCHASE_GOAL,),
    "scenario-white_paper": (PURCHASE_GOAL,),
}


def journeys_with_goal(lead_id: str, goal: str) -> list[str]:
    """The workflow ids of the lead's journeys that declare ``goal`` (running or not)."""
    return [f"{prefix}-{lead_id}" for prefix, goals in JOURNEY_GOALS.items() if goal in goals]
