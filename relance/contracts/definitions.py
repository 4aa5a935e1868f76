"""What the interpreter of defined journeys (workflows/defined.py) receives and asks: the compiled
form of a definition (relance/domain/definitions.py), ids and knobs only, and the activity that
evaluates a condition against the lead.

The compiled definition travels in the workflow's input, so a running lead keeps the version it
entered with: publishing a new version never changes a journey in flight. Light on purpose (plain
dataclasses, no pydantic): safe in the workflow sandbox, decoded by Temporal's converter.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity

WORKFLOW_TYPE = "DefinedJourney"
ID_PREFIX = "journey"


def workflow_id(key: str, lead_id: str) -> str:
    """A defined journey's run for a lead: ``journey-<key>-<lead id>``."""
    return f"{ID_PREFIX}-{key}-{lead_id}"


@dataclass
class CompiledArm:
    name: str
    percent: float
    next: str | None = None


@dataclass
class CompiledNode:
    """One node, its type's fields set and the others left at their defaults."""

    id: str
    type: str  # message | delay | wait_for | condition | experiment | update | checkpoint | ...
    next: str | None = None  # message, delay, update, checkpoint
    # message
    channel: str = ""  # email | sms | webhook | best
    channels: list[str] = field(default_factory=list)  # best: the preference, best first
    template: str = ""
    kind: str = "marketing"
    # delay: seconds, or until a local time on some weekdays (ISO: 1 = Monday)
    seconds: float = 0.0
    until_time: str = ""
    until_days: list[int] = field(default_factory=list)
    # wait_for: opened | clicked (of ``message``) | signal (``signal``), within ``seconds``
    event: str = ""
    message: str = ""
    signal: str = ""
    then: str | None = None  # wait_for, condition
    otherwise: str | None = None  # wait_for: timeout; condition: else
    # condition: the expression tree, as written (the activity validates it again)
    test: dict[str, Any] = field(default_factory=dict)
    # experiment
    arms: list[CompiledArm] = field(default_factory=list)
    holdout: CompiledArm | None = None
    # update
    score_event: str = ""
    add_to_list: str = ""
    remove_from_list: str = ""
    # checkpoint / goal / redirect
    name: str = ""
    goal: str = ""
    journey: str = ""


@dataclass
class CompiledDefinition:
    key: str
    version: int  # 0: a draft (a test, a simulation); published versions count from 1
    name: str
    goals: list[str]
    start: str
    nodes: list[CompiledNode]
    # The definition's exclusions (JourneyRules.exclude): the send ledger checks them before
    # each marketing message, as it checks a coded journey's.
    exclude: list[str] = field(default_factory=list)

    def node(self, node_id: str) -> CompiledNode:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(f"the {self.key} journey has no node {node_id!r}")


@dataclass
class DefinedJourneyInput:
    lead_id: str
    definition: CompiledDefinition
    reenrolled: bool = False
    chain: list[str] = field(default_factory=list)  # the journeys that led here (redirects)


def assign_arm(key: str, node_id: str, lead_id: str, arms: list[CompiledArm]) -> CompiledArm:
    """The experiment's arm for the lead: sticky and deterministic (the same arm on replay, on
    re-entry and on every worker), no randomness: a hash of the journey's key, the experiment
    node and the lead id, read as a point in [0, 100) and placed on the arms' percentages."""
    digest = hashlib.sha256(f"{key}:{node_id}:{lead_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64 * 100
    total = 0.0
    for arm in arms:
        total += arm.percent
        if point < total:
            return arm
    return arms[-1]  # rounding of percentages that sum to 100


# Conditions, evaluated against the lead by the worker ---------------------------------------------
@dataclass
class ConditionQuestion:
    lead_id: str
    test: dict[str, Any]  # a condition node's expression tree (relance/domain/definitions.py)


@dataclass
class ConditionAnswer:
    holds: bool
    why: str  # e.g. "score >= 20: yes (score 35)" — facts about the lead, never its address


@activity.defn(name="evaluate_condition")
def evaluate_condition(question: ConditionQuestion) -> ConditionAnswer:
    raise NotImplementedError("run by the worker: DefinitionActivities.evaluate_condition")
