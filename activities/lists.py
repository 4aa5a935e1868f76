"""Journeys put leads on lists and take them off (``ListChange``), idempotently. A lead a
journey puts on a list enters the defined journeys a ``list_joined`` trigger of it starts
(relance/services/triggers.py), as when the API puts it there; a change re-evaluates, for the
lead, the segment-entered triggers whose rules read lists."""

from __future__ import annotations

import asyncio
import re

from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from relance.contracts.lists import ListChange, ListChangeResult
from relance.domain.lists import LIST_NAME, add_member, remove_member
from relance.domain.models import Lead
from relance.domain.settings import Settings
from relance.services.triggers import LIST, on_list_joined, reevaluate_segments


class ListActivities:
    def __init__(self, engine: Engine, settings: Settings | None = None) -> None:
        self.engine = engine
        self.settings = settings or Settings(_env_file=None)

    @activity.defn(name="change_list_membership", no_thread_cancel_exception=True)
    async def change_list_membership(self, change: ListChange) -> ListChangeResult:
        changed = await asyncio.to_thread(self._change, change)
        if changed and change.action == "add":
            await on_list_joined(
                activity.client(),
                self.settings,
                self.engine,
                lead_ids=[change.lead_id],
                list_name=change.list_name,
            )
        if changed:
            await reevaluate_segments(
                activity.client(),
                self.settings,
                self.engine,
                lead_ids=[change.lead_id],
                facts=(LIST,),
            )
        return ListChangeResult(changed)

    def _change(self, change: ListChange) -> bool:
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
        return changed
