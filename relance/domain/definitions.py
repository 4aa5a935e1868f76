"""Journeys as data: a definition a marketer or a growth engineer writes as YAML or JSON, checked
before it ships and run by one durable interpreter (workflows/defined.py).

A definition has a key, a name, its enrollment rules (``JourneyRules``: re-entry, cooldown,
exclusions), the goals that end it, and typed nodes, each with an id and the edges to the next:

    message     one message (a channel, or "best" of a preference list), a template, marketing
                or transactional: through the send ledger like every journey's
    delay       a duration, or until a local time (and weekdays) in the lead's time zone
    wait_for    an open or a click of a message node, or a signal / event by name, with a
                timeout: branches ``then`` and ``timeout``
    condition   if / else on a rule tree (relance/domain/conditions.py: the language segments
                use too), evaluated against the lead by an activity
    experiment  A/B/n arms with percentages and an optional holdout, sticky per lead
    update      add score points (an event of the scoring rules), add or remove a list
    checkpoint  a named point, recorded (reports count leads through it)
    goal        the journey's conversion: recorded, the journey exits at once
    exit        the end
    redirect    enroll the lead into another defined journey (guarded against loops)

The pydantic models validate the document's shape; what no shape can say (an edge to no node, a
node no path reaches, a branch that never ends...) is checked by relance/services/definitions.py.
What a workflow receives is the light compiled form of relance/contracts/definitions.py.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from relance.domain.conditions import MAX_DURATION, Duration, ScoreTest, Test, bounded
from relance.domain.journey_rules import JourneyRules

__all__ = [
    "MAX_DURATION",
    "Definition",
    "Duration",
    "ScoreTest",
    "Test",
    "edges",
    "json_schema",
    "open_ends",
]

NODE_ID = r"^[a-z][a-z0-9_]{0,23}$"
KEY = r"^[a-z][a-z0-9_]{0,39}$"
NodeId = Annotated[str, StringConstraints(pattern=NODE_ID)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
TEMPLATE = r"^[a-z0-9_]{1,64}$"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Conditions: the rule language shared with segments (relance/domain/conditions.py).


# Nodes --------------------------------------------------------------------------------------------
class _Node(_Strict):
    id: NodeId
    description: str = Field(default="", max_length=500)


class Message(_Node):
    type: Literal["message"]
    channel: Literal["email", "sms", "webhook", "best"] = "email"
    channels: list[Literal["email", "sms", "webhook"]] = Field(
        default_factory=lambda: ["sms", "email"],
        min_length=1,
        max_length=3,
        description='"best": the channels in order of preference; the last is the fallback',
    )
    template: Annotated[str, StringConstraints(pattern=TEMPLATE)]
    kind: Literal["marketing", "transactional"] = "marketing"
    next: NodeId | None = None


class Until(_Strict):
    time: Annotated[str, StringConstraints(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")] = Field(
        description="local time of day, HH:MM, in the lead's time zone"
    )
    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=lambda: list(WEEKDAYS), min_length=1
    )


class Delay(_Node):
    type: Literal["delay"]
    duration: Duration | None = None
    until: Until | None = None
    next: NodeId | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Delay:
        if (self.duration is None) == (self.until is None):
            raise ValueError("a delay has a duration or an until, not both")
        if self.duration is not None:
            bounded(self.duration)
        return self


class WaitFor(_Node):
    type: Literal["wait_for"]
    event: Literal["opened", "clicked", "signal"]
    message: NodeId | None = Field(default=None, description="opened / clicked: the message node")
    signal: Name | None = Field(default=None, description="signal: the signal or event's name")
    within: Duration
    then: NodeId | None = None
    timeout: NodeId | None = None

    @model_validator(mode="after")
    def _what(self) -> WaitFor:
        bounded(self.within)
        if self.event == "signal" and not self.signal:
            raise ValueError("waiting for a signal names it (signal: <name>)")
        if self.event != "signal" and not self.message:
            raise ValueError(f"waiting for {self.event} names the message node (message: <id>)")
        return self


class Condition(_Node):
    type: Literal["condition"]
    if_: Test = Field(alias="if")
    then: NodeId | None = None
    else_: NodeId | None = Field(default=None, alias="else")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Arm(_Strict):
    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,12}$")]
    percent: float = Field(gt=0, le=100)
    next: NodeId | None = None


class Experiment(_Node):
    type: Literal["experiment"]
    arms: list[Arm] = Field(min_length=1, max_length=10)
    holdout: Arm | None = Field(
        default=None, description="leads kept out of every arm (named, with their percent)"
    )


class Update(_Node):
    type: Literal["update"]
    score_event: Name | None = Field(
        default=None, description="an event of the scoring rules: its points are added, once"
    )
    add_to_list: Name | None = None
    remove_from_list: Name | None = None
    next: NodeId | None = None

    @model_validator(mode="after")
    def _something(self) -> Update:
        if not (self.score_event or self.add_to_list or self.remove_from_list):
            raise ValueError("an update adds score points, or adds to or removes from a list")
        return self


class Checkpoint(_Node):
    type: Literal["checkpoint"]
    name: Name
    next: NodeId | None = None


class Goal(_Node):
    type: Literal["goal"]
    goal: Name = Field(description="the conversion recorded; the journey exits at once")


class Exit(_Node):
    type: Literal["exit"]


class Redirect(_Node):
    type: Literal["redirect"]
    journey: Annotated[str, StringConstraints(pattern=KEY)]
    guard: Literal["", "came_from", "once", "cooldown"] = Field(
        default="came_from",
        description="what stops a loop through this redirect (relance/contracts/journey_graph.py)",
    )


Node = Annotated[
    Message
    | Delay
    | WaitFor
    | Condition
    | Experiment
    | Update
    | Checkpoint
    | Goal
    | Exit
    | Redirect,
    Field(discriminator="type"),
]
TERMINAL = ("goal", "exit", "redirect")  # nodes after which the journey is over


class Definition(_Strict):
    """A journey written as data (see the module's docstring)."""

    key: Annotated[str, StringConstraints(pattern=KEY)] = Field(
        description="the journey's key: its workflow ids, its messages' label"
    )
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    rules: JourneyRules = Field(default_factory=JourneyRules)
    goals: list[Name] = Field(
        default_factory=list,
        max_length=10,
        description="goals (e.g. purchase) that end the journey at once, as converted",
    )
    start: NodeId | None = Field(default=None, description="the first node (default: the first)")
    nodes: list[Node] = Field(min_length=1, max_length=200)

    @property
    def first(self) -> str:
        return self.start or self.nodes[0].id


def edges(node: Any) -> list[tuple[str, str]]:
    """The node's outgoing edges as (label, target id)."""
    out: list[tuple[str, str | None]] = []
    if node.type in ("message", "delay", "update", "checkpoint"):
        out = [("next", node.next)]
    elif node.type == "wait_for":
        out = [("then", node.then), ("timeout", node.timeout)]
    elif node.type == "condition":
        out = [("then", node.then), ("else", node.else_)]
    elif node.type == "experiment":
        arms = [*node.arms, *([node.holdout] if node.holdout else [])]
        out = [(f"arm {a.name}", a.next) for a in arms]
    return [(label, target) for label, target in out if target is not None]


def open_ends(node: Any) -> list[str]:
    """The node's branches that lead nowhere (an edge left out): the journey ends there."""
    if node.type in TERMINAL:
        return []
    if node.type in ("message", "delay", "update", "checkpoint"):
        return ["next"] if node.next is None else []
    if node.type == "wait_for":
        return [b for b, t in (("then", node.then), ("timeout", node.timeout)) if t is None]
    if node.type == "condition":
        return [b for b, t in (("then", node.then), ("else", node.else_)) if t is None]
    arms = [*node.arms, *([node.holdout] if node.holdout else [])]
    return [f"arm {a.name}" for a in arms if a.next is None]


def json_schema() -> dict[str, Any]:
    """The definition's JSON Schema (GET /journeys/schema; editors validate against it)."""
    schema = Definition.model_json_schema(by_alias=True)
    schema["$id"] = "https://relance.dev/schemas/journey-definition.json"
    schema["title"] = "Relance journey definition"
    return schema
