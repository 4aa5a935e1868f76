"""Journeys put leads on lists and take them off (``ListChange``), idempotently."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import activity


@dataclass
class ListChange:
    lead_id: str
    list_name: str
    action: str  # add | remove
    reason: str = ""  # kept with the membership, e.g. "finished the onboarding journey"


@dataclass
class ListChangeResult:
    changed: bool  # False: already on the list (add) or not on it (remove)


# The activities, as journeys call them (``workflow.execute_activity(change_list_membership,
# ...)``): only the name and the types count here; the worker runs the implementation registered
# under the same name (activities/lists.py ListActivities). tests/test_layers.py checks both agree.


@activity.defn(name="change_list_membership")
def change_list_membership(change: ListChange) -> ListChangeResult:
    raise NotImplementedError("run by the worker: ListActivities.change_list_membership")
