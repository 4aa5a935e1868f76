"""Journey-to-journey enrollments refused at run time (the loop guard), recorded with
the lead's data (``enrollment_refusals``: in the export, removed by the erasure) rather than only
in the refusing journey's result."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from relance.contracts import catalogue
from relance.contracts.enrollment import (
    EnrollmentCheck,
    RedirectAnswer,
    RedirectRequest,
    RefusalRecord,
)
from relance.contracts.journey_graph import ONCE, chain_refusal
from relance.domain.journey_rules import cooldown_of, cooldown_refusal, exclusion_reason
from relance.domain.models import EnrollmentRefusal, Lead, as_utc
from relance.domain.settings import Settings
from relance.services import journey_store
from relance.services.definitions import entry_for
from relance.services.journeys import describe, enroll, rules_for


def _now() -> datetime:
    """The journey's clock (the attempt's scheduled time on the server: skipped time in tests)."""
    return activity.info().current_attempt_scheduled_time


class EnrollmentActivities:
    def __init__(self, engine: Engine, settings: Settings | None = None) -> None:
        self.engine = engine
        self.settings = settings or Settings(_env_file=None)

    @activity.defn(name="check_enrollment", no_thread_cancel_exception=True)
    async def check_enrollment(self, check: EnrollmentCheck) -> str:
        """The enrollment rules for a journey-to-journey enrollment, as the API applies them: the
        target's exclusions, then its cooldown since the lead's previous run of it closed (read
        with describe(), on the journey's clock). Returns why it is refused, "" if it is not."""
        rules = rules_for(self.settings, check.journey)
        if rules.exclude:
            with Session(self.engine) as session:
                reason = exclusion_reason(session, check.lead_id, rules.exclude)
            if reason:
                return reason
        cooldown = cooldown_of(rules, self.settings.reenroll_cooldown_days)
        try:
            previous = await activity.client().get_workflow_handle(check.workflow_id).describe()
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            return ""
        if previous.status == WorkflowExecutionStatus.RUNNING:
            return ""  # the start answers "already in it"
        if not rules.reenroll:
            return (
                f"the lead already went through the {check.label or check.journey} journey; it "
                "allows no re-enrollment"
            )
        return cooldown_refusal(
            journey=check.label or check.journey,
            closed_at=as_utc(previous.close_time),
            cooldown=cooldown,
            now=_now(),
        )

    @activity.defn(name="redirect_lead", no_thread_cancel_exception=True)
    async def redirect_lead(self, request: RedirectRequest) -> RedirectAnswer:
        """A defined journey's redirect, through the enrollment path the API uses (the target's
        exclusions, cooldown, concurrent journeys, a run of it already going), under the
        redirect's guard: ``came_from`` (and every redirect) refuses a journey of the chain or a
        chain too deep; ``once`` refuses a lead who went through the target before; ``cooldown``
        is the target's own cooldown, which the enrollment applies."""
        target = request.target
        refused = chain_refusal(request.chain, target)  # a loop, or too deep: never
        if refused:
            return RedirectAnswer(False, "", refused)
        coded = target in catalogue.enrollable_names()
        if coded and catalogue.entry(target).requires:
            needs = ", ".join(catalogue.entry(target).requires)
            return RedirectAnswer(
                False, "", f"the {target} journey needs {needs}: enroll leads through the API"
            )
        with Session(self.engine) as session:
            lead = session.get(Lead, request.lead_id)
            if lead is None:
                return RedirectAnswer(False, "", f"lead {request.lead_id} does not exist")
            score = lead.score
            defined: dict = {}
            if not coded:
                try:
                    found = journey_store.enrollable(session, target)
                except (journey_store.NotFound, journey_store.Conflict) as err:
                    return RedirectAnswer(False, "", str(err))
                defined = {
                    "journey": entry_for(found.key),
                    "keys": {"key": found.key},
                    "inputs": {"definition": found.compiled, "chain": list(request.chain)},
                    "rules": found.rules,
                }
        spec = catalogue.entry(target) if coded else defined["journey"]
        workflow_id = spec.workflow_id(lead_id=request.lead_id, **defined.get("keys", {}))
        client = activity.client()
        if request.guard == ONCE:
            previous = await describe(client, workflow_id)
            if previous is not None:
                return RedirectAnswer(
                    False,
                    workflow_id,
                    f"the once guard: the lead already went through the {target} journey",
                )

        async def excluded(rules: tuple[str, ...]) -> str:
            with Session(self.engine) as session:
                return exclusion_reason(session, request.lead_id, rules)

        enrollment = await enroll(
            client,
            self.settings,
            lead_id=request.lead_id,
            score=score,
            excluded=excluded,
            **({"journey": target} | defined),
        )
        started = enrollment.status == "started"
        return RedirectAnswer(started, enrollment.workflow_id, enrollment.detail)

    @activity.defn(name="record_enrollment_refusal", no_thread_cancel_exception=True)
    def record_enrollment_refusal(self, record: RefusalRecord) -> str:
        """Record the refusal once (a retried attempt finds it); returns the row's id."""
        key = f"{record.workflow_id}:{record.run_id}:{record.target}"[:300]
        with Session(self.engine) as session:
            found = session.exec(
                select(EnrollmentRefusal.id).where(EnrollmentRefusal.refusal_key == key)
            ).first()
            if found:
                return found
            row = EnrollmentRefusal(
                refusal_key=key,
                lead_id=record.lead_id,
                workflow_id=record.workflow_id[:200],
                source=record.source[:64],
                target=record.target[:64],
                chain=list(record.chain),
                reason=record.reason[:500],
            )
            session.add(row)
            try:
                session.commit()
            except IntegrityError:  # a concurrent attempt recorded it first
                session.rollback()
                return session.exec(
                    select(EnrollmentRefusal.id).where(EnrollmentRefusal.refusal_key == key)
                ).one()
            return row.id
