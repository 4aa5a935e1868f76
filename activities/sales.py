"""Sales hand-off tasks (nurturing hands a lead to a rep): create and assign, tell the rep,
escalate.

Assignment: the reps whose territory (``countries``) holds the lead's country; if none, the
reps without a territory; if none, every rep. Among them, round-robin from a counter row per
territory, incremented in the task's own transaction (one increment per task, however many
retries or concurrent journeys). Results carry ids, names and dates only: the rep's and the
lead's addresses stay in the database.

The emails to the rep and to the manager are internal, transactional messages (no tracking,
no consent: they go to staff, not to the lead), sent over the same SMTP settings, once per
task and kind: the task row records when each went out.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formataddr, formatdate

from jinja2 import TemplateError
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from relance.contracts.definitions import ID_PREFIX
from relance.contracts.sales import (
    EscalationResult,
    NoticeResult,
    TaskCreated,
    TaskNotice,
    TaskRef,
    TaskRequest,
)
from relance.contracts.sending import SendFailure
from relance.domain.models import Counter, Lead, SalesTask, as_utc, utcnow
from relance.domain.rendering import Renderer, render_inline
from relance.domain.settings import SalesRep, Settings
from relance.services.smtp import deliver


def candidates_for(reps: list[SalesRep], country: str | None) -> tuple[list[SalesRep], str | None]:
    """The reps a lead from ``country`` may go to, and the territory that chose them (None:
    round-robin)."""
    if country:
        local = [r for r in reps if country.upper() in {c.upper() for c in r.countries}]
        if local:
            return local, country.upper()
    return [r for r in reps if not r.countries] or list(reps), None


def next_turn(session: Session, name: str) -> int:
    """Increment the counter ``name`` in the caller's transaction; return its value before."""
    if session.get(Counter, name) is None:
        try:
            with session.begin_nested():
                session.add(Counter(name=name, value=0))
        except IntegrityError:
            pass  # created concurrently
    session.execute(
        update(Counter).where(col(Counter.name) == name).values(value=Counter.value + 1)
    )
    return session.exec(select(Counter.value).where(Counter.name == name)).one() - 1


class SalesActivities:
    def __init__(self, settings: Settings, engine: Engine, renderer: Renderer) -> None:
        self.settings = settings
        self.engine = engine
        self.renderer = renderer

    @activity.defn(name="create_sales_task", no_thread_cancel_exception=True)
    def create_sales_task(self, request: TaskRequest) -> TaskCreated:
        with Session(self.engine) as session:
            task = session.exec(select(SalesTask).where(SalesTask.task_key == request.key)).first()
            if task is None:
                lead = session.get(Lead, request.lead_id)
                if lead is None:
                    raise ApplicationError(
                        f"lead {request.lead_id} does not exist",
                        type="LeadNotFound",
                        non_retryable=True,
                    )
                reps = self.settings.sales_reps
                assignee, territory = None, None
                if reps:
                    candidates, territory = candidates_for(reps, lead.country)
                    rep = candidates[
                        next_turn(session, f"sales_round_robin:{territory or '*'}")
                        % len(candidates)
                    ]
                    assignee = rep.email.strip().lower()
                reason, description = request.reason, request.description or None
                if request.templated:  # a defined journey's task node: its templates, rendered
                    reason, description = self._rendered(request, lead)
                task = SalesTask(
                    task_key=request.key,
                    lead_id=lead.id,
                    workflow_id=request.workflow_id,
                    reason=reason[:300],
                    description=description[:2000] if description else None,
                    assignee=assignee,
                    territory=territory,
                    due_at=request.due_at,
                )
                session.add(task)
                try:
                    session.commit()
                except IntegrityError as race:
                    # A concurrent attempt created it: let Temporal retry and find it.
                    raise ApplicationError(
                        f"sales task {request.key} is being created concurrently", type="TaskRace"
                    ) from race
                session.refresh(task)
                activity.logger.info(
                    "sales task %s for lead %s assigned to %s (%s)",
                    task.id,
                    lead.id,
                    assignee or "nobody",
                    territory or "round-robin",
                )
            return TaskCreated(
                task_id=task.id,
                assignee_name=self._rep_name(task.assignee),
                territory=task.territory,
                due_at=as_utc(task.due_at),
                status=task.status,
            )

    @activity.defn(name="escalate_sales_task", no_thread_cancel_exception=True)
    def escalate_sales_task(self, ref: TaskRef) -> EscalationResult:
        """Mark an open task escalated (once: a task done or escalated already is left as it is)."""
        with Session(self.engine) as session:
            now = utcnow()
            session.execute(
                update(SalesTask)
                .where(col(SalesTask.id) == ref.task_id, col(SalesTask.status) == "open")
                .values(status="escalated", escalated_at=now, updated_at=now)
            )
            session.commit()
            task = self._task(session, ref.task_id)
            return EscalationResult(escalated=task.escalated_at is not None, status=task.status)

    @activity.defn(name="notify_sales_task", no_thread_cancel_exception=True)
    def notify_sales_task(self, notice: TaskNotice) -> NoticeResult:
        """Email the rep (``assigned``) or the manager (``escalated``), once per task and kind."""
        stamp = {"assigned": "notified_at", "escalated": "escalation_notified_at"}.get(notice.kind)
        if stamp is None:
            raise ApplicationError(
                f"unknown task notice {notice.kind!r}", type="UnknownNotice", non_retryable=True
            )
        with Session(self.engine) as session:
            task = self._task(session, notice.task_id)
            if getattr(task, stamp) is not None:
                return NoticeResult(True, "already sent")
            to = task.assignee if notice.kind == "assigned" else self.settings.sales_manager_email
            if not to:
                return NoticeResult(
                    False,
                    "no rep is assigned"
                    if notice.kind == "assigned"
                    else "no sales manager is configured (RELANCE_SALES_MANAGER_EMAIL)",
                )
            lead = session.get(Lead, task.lead_id)
            mime = self._message(task, lead, notice.kind, to)
        deliver_or_fail(self.settings, mime, to)
        with Session(self.engine) as session:
            session.execute(
                update(SalesTask)
                .where(col(SalesTask.id) == notice.task_id)
                .values(**{stamp: utcnow()})
            )
            session.commit()
        activity.logger.info("sales task %s: %s email sent", notice.task_id, notice.kind)
        return NoticeResult(True)

    # ---------------------------------------------------------------------------------------
    def _rendered(self, request: TaskRequest, lead: Lead) -> tuple[str, str | None]:
        """A task node's title and description, rendered with the lead's fields (as text, in the
        sandbox: the lead's data is printed, never run)."""
        context = {
            "first_name": lead.first_name,
            "country": lead.country,
            "locale": lead.locale,
            "score": lead.score,
            "attributes": dict(lead.attributes or {}),
            "brand_name": self.settings.brand_name,
        }
        try:
            title = render_inline(request.reason, context, one_line_only=True)
            description = render_inline(request.description, context) or None
        except TemplateError as err:  # checked at publish; a template is what it is
            raise ApplicationError(
                f"the task's template does not render: {err}",
                type="BadTemplate",
                non_retryable=True,
            ) from None
        return title or "a lead to call", description

    def _task(self, session: Session, task_id: str) -> SalesTask:
        task = session.get(SalesTask, task_id)
        if task is None:
            raise ApplicationError(
                f"sales task {task_id} does not exist", type="TaskNotFound", non_retryable=True
            )
        return task

    def _rep_name(self, email: str | None) -> str | None:
        if email is None:
            return None
        rep = next((r for r in self.settings.sales_reps if r.email.strip().lower() == email), None)
        return rep.name if rep and rep.name else email.split("@")[0]

    def _message(self, task: SalesTask, lead: Lead, kind: str, to: str) -> EmailMessage:
        s = self.settings
        subject, text = self.renderer.plain_email(
            f"internal_task_{kind}",
            {
                "task": task,
                "lead": lead,
                "journey_label": journey_label(task.workflow_id),
                "rep_name": self._rep_name(task.assignee) or "nobody",
                "due_at": as_utc(task.due_at),
                "brand_name": s.brand_name,
                "complete_url": f"{s.public_base_url.rstrip('/')}/tasks/{task.id}/complete",
            },
        )
        mime = EmailMessage()
        mime["From"] = s.sales_mail_from or s.mail_from
        mime["To"] = formataddr(("", to))
        mime["Subject"] = subject
        mime["Date"] = formatdate(localtime=False)
        mime["Message-ID"] = (
            f"<task-{task.id}-{kind}@{s.mail_domain}>"  # stable: a resend is recognisable
        )
        mime["X-Relance-Task"] = f"{task.id}/{kind}"
        mime.set_content(text)
        return mime


def journey_label(workflow_id: str) -> str:
    """What the rep's email calls the journey that handed the lead over: a defined journey's key
    (``journey-<key>-<lead id>``), else the nurturing journey's hand-off."""
    kind, _, rest = workflow_id.partition("-")
    if kind == ID_PREFIX and "-" in rest:
        return f"{rest.rsplit('-', 1)[0]} journey"
    return "nurturing journey"


def deliver_or_fail(settings: Settings, mime: EmailMessage, to: str) -> None:
    try:
        deliver(settings, mime, to)
    except SendFailure as failure:
        if failure.permanent:
            raise ApplicationError(
                f"SMTP server refused the internal email: {failure.reason}",
                type="SmtpPermanent",
                non_retryable=True,
            ) from failure
        raise ApplicationError(
            f"internal email not sent yet: {failure.reason}", type="SmtpTemporary"
        ) from failure
