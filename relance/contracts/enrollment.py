"""Journey-to-journey enrollments: may a journey enroll its lead into another one now, and the
record of a refusal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio import activity


@dataclass
class RefusalRecord:
    lead_id: str
    workflow_id: str  # the journey that meant to enroll the lead
    run_id: str
    source: str
    target: str
    reason: str
    chain: list[str] = field(default_factory=list)


@dataclass
class EnrollmentCheck:
    """May a journey enroll the lead into ``journey`` (workflow id ``workflow_id``) now?"""

    lead_id: str
    journey: str  # its rules' name (relance/domain/journey_rules.py), e.g. scenario
    workflow_id: str
    label: str = ""  # how the refusal names it, e.g. "white_paper scenario"; "" = journey


# The activities, as journeys call them (``workflow.execute_activity(check_enrollment, ...)``):
# only the name and the types count here; the worker runs the implementation registered under
# the same name (activities/enrollment.py EnrollmentActivities). tests/test_layers.py checks both
# agree.


@activity.defn(name="check_enrollment")
def check_enrollment(check: EnrollmentCheck) -> str:
    raise NotImplementedError("run by the worker: EnrollmentActivities.check_enrollment")


@activity.defn(name="record_enrollment_refusal")
def record_enrollment_refusal(record: RefusalRecord) -> str:
    raise NotImplementedError("run by the worker: EnrollmentActivities.record_enrollment_refusal")


@dataclass
class RedirectRequest:
    """A defined journey's redirect node: enroll the lead into ``target`` (a coded journey of
    the catalogue or a published definition's key) through the enrollment path, under ``guard``
    (relance/contracts/journey_graph.py GUARDS) and the target's own rules."""

    lead_id: str
    target: str
    guard: str
    chain: list[str]  # the journeys that led here, the redirecting one last
    source_workflow_id: str


@dataclass
class RedirectAnswer:
    enrolled: bool
    workflow_id: str  # the target's run for the lead ("" when there is none)
    detail: str  # "started", or why the enrollment was refused


@activity.defn(name="redirect_lead")
def redirect_lead(request: RedirectRequest) -> RedirectAnswer:
    raise NotImplementedError("run by the worker: EnrollmentActivities.redirect_lead")
