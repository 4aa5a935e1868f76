"""A journey kept outside the product, added the way a contributor adds one: its module (this
workflow and its input) and one catalogue entry, registered when the module is imported.

Loaded as a pytest plugin (``-p tests.tiny_journey``) by tests/test_catalogue.py, so it is
registered before the API and the worker are built; the rest of the suite never imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import workflow

from relance.contracts import catalogue
from workflows.journey import Journey
from workflows.steps import JourneyStatus


@dataclass
class TinyInput:
    lead_id: str
    greeting: str


@workflow.defn(name="TinyJourney")
class TinyJourney(Journey):
    """On the shared frame (workflows/journey.py): steps, messages, unsubscribe and goals."""

    NAME = "tiny"

    @workflow.init
    def __init__(self, input: TinyInput) -> None:
        super().__init__(input.lead_id)

    @workflow.run
    async def run(self, input: TinyInput) -> dict:
        self.enter("greeted", f"Greeted the lead: {input.greeting}")
        return {"outcome": "greeted", "greeting": f"{input.greeting}, {input.lead_id}"}

    @workflow.query(name="status")
    def status(self) -> JourneyStatus:
        return JourneyStatus(self.step, messages=list(self.messages))


def tiny_input(settings, *, lead_id: str, reenrolled: bool = False) -> dict:
    return {"lead_id": lead_id, "greeting": f"hello from {settings.temporal_task_queue}"}


ENTRY = catalogue.register(
    catalogue.Journey(
        name="tiny",
        workflow="tests.tiny_journey:TinyJourney",
        workflow_type="TinyJourney",
        build_input=tiny_input,
        start=catalogue.Start(score=True),
        enrollable=True,
        counted=True,
    )
)
