"""Journeys put leads on lists and take them off (``ListChange``), idempotently."""

from __future__ import annotations

import re

from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from relance.contracts.lists import ListChange, ListChangeResult
from relance.domain.lists import LIST_NAME, add_member, remove_member
from relance.domain.models import Lead


class ListActivities:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @activity.defn(name="change_list_membership")
    def change_list_membership(self, change: ListChange) -> ListChangeResult:
        if change.action not in ("add", "remove") or not re.match(LIST_NAME, change.list_name):
            raise ApplicationError(
                f"bad list change {change.action!r} on {change.list_name!r}",
                type="BadListChange",
                non_retryable=True,
            )
        with Session(self.engine) as session:
            if change.action == "add":
                if session.get(Lead, change.lead_id) is None:
                    raise ApplicationError(
                        f"lead {change.lead_id} does not exist",
                        type="LeadNotFound",
                        non_retryable=True,
                    )
                changed = add_member(
                    session,
                    list_name=change.list_name,
                    lead_id=change.lead_id,
                    reason=change.reason or f"added by {activity.info().workflow_id}",
                )
            else:
                changed = remove_member(session, list_name=change.list_name, lead_id=change.lead_id)
            session.commit()
        return ListChangeResult(changed)
