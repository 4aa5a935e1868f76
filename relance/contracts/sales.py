"""Sales tasks a journey hands a lead over with: create, escalate, notify."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from temporalio import activity


@dataclass
class TaskRequest:
    lead_id: str
    workflow_id: str
    key: str  # idempotency key, unique: the workflow id + what the task is for
    reason: str
    due_at: datetime
    # A defined journey's task node: ``reason`` and ``description`` are templates of the lead's
    # fields, rendered by the activity (the workflow never holds the lead's data).
    templated: bool = False
    description: str = ""


@dataclass
class TaskCreated:
    task_id: str
    assignee_name: str | None  # None: no rep is configured, the task waits unassigned
    territory: str | None
    due_at: datetime
    status: str


@dataclass
class TaskRef:
    task_id: str


@dataclass
class TaskNotice:
    task_id: str
    kind: str  # assigned (to the rep) | escalated (to the manager)


@dataclass
class NoticeResult:
    sent: bool
    reason: str = ""


@dataclass
class EscalationResult:
    escalated: bool  # False: the task was completed before its due date was checked
    status: str


# The activities, as journeys call them (``workflow.execute_activity(create_sales_task, ...)``):
# only the name and the types count here; the worker runs the implementation registered under
# the same name (activities/sales.py SalesActivities). tests/test_layers.py checks both agree.


@activity.defn(name="create_sales_task")
def create_sales_task(request: TaskRequest) -> TaskCreated:
    raise NotImplementedError("run by the worker: SalesActivities.create_sales_task")


@activity.defn(name="escalate_sales_task")
def escalate_sales_task(ref: TaskRef) -> EscalationResult:
    raise NotImplementedError("run by the worker: SalesActivities.escalate_sales_task")


@activity.defn(name="notify_sales_task")
def notify_sales_task(notice: TaskNotice) -> NoticeResult:
    raise NotImplementedError("run by the worker: SalesActivities.notify_sales_task")
