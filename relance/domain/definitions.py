"""Journeys as data: a definition a marketer or a growth engineer writes as YAML or JSON, checked
before it ships and run by one durable interpreter (workflows/defined.py).

A definition has a key, a name, its entry triggers (what enrolls a lead besides the API:
a custom event, a list joined, a segment entered, a date attribute; relance/services/triggers.py),
its enrollment rules (``JourneyRules``: re-entry, cooldown,
exclusions), the goals that end it, and typed nodes, each with an id and the edges to the next:

    message     one message (a channel, or "best" of a preference list), a template, marketing
                or transactional: through the send ledger like every journey's; it may carry a
                single-use promo code (``promo``: issued once per run and node) or repeat the
                code issued at an earlier node (``promo_of``: a reminder); a marketing message
                is about a topic (``topic``, else the definition's ``topic``; config/topics.yaml)
    delay       a duration, or until a local time (and weekdays) in the lead's time zone, or
                until a date attribute of the lead ± days, at a local time (``until_date``)
    wait_for    an open or a click of a message node, or a signal / event by name, with a
                timeout: branches ``then`` and ``timeout``
    condition   if / else on a rule tree (relance/domain/conditions.py: the language segments
                use too), evaluated against the lead by an activity
    experiment  A/B/n arms with percentages and an optional holdout, sticky per lead
    update      add score points (an event of the scoring rules), add or remove a list, set
                custom attributes of the lead schema (``set``)
    checkpoint  a named point, recorded (reports count leads through it)
    goal        the journey's conversion: recorded, the journey exits at once
    exit        the end
    redirect    enroll the lead into another journey (a coded one of the catalogue or a
                published definition) through the enrollment path, with its guard; then ends
    switch      a multi-way split: the first of its ``cases`` whose test holds, else ``default``
    task        a task for a sales rep through the sales hand-off (assigned, the rep emailed):
                a title and a description rendered with the lead's fields, due in a while
    webhook     a signed POST to a named endpoint of the settings (never a URL of the
                definition's own), the response's fields mapped into custom attributes; a
                refusal or a receiver down for good takes ``on_failure`` (default: ``next``)

A ``wait_for`` may also wait for a custom event of the lead schema (``event: custom``, by
``name``, its properties equal to ``where``) or for the download of an asset
(``event: downloaded``, ``asset``).

The pydantic models validate the document's shape; what no shape can say (an edge to no node, a
node no path reaches, a branch that never ends...) is checked by relance/services/definitions.py.
What a workflow receives is the light compiled form of relance/contracts/definitions.py.
"""

from __future__ import annotations

from datetime import timedelta
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
from relance.domain.topics import TopicKey

__all__ = [
    "MAX_DURATION",
    "Definition",
    "Promo",
    "Duration",
    "ScoreTest",
    "Test",
    "Trigger",
    "UntilDate",
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


# Entry triggers -----------------------------------------------------------------------------------
LOCAL_TIME = r"^([01]\d|2[0-3]):[0-5]\d$"
AttributeName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
ListName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.\-]{0,63}$")]
Scalar = bool | int | float | str
AssetName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]


class EventTrigger(_Strict):
    name: AttributeName = Field(description="a custom event of the lead schema")
    where: dict[AttributeName, Scalar] = Field(
        default_factory=dict, max_length=20, description="properties the event must have (equal)"
    )


class ListJoined(_Strict):
    list: ListName


class SegmentEntered(_Strict):
    segment: Annotated[str, StringConstraints(min_length=1, max_length=32)] = Field(
        description="a saved segment's id: its new members enter (evaluated every hour)"
    )


class DateTrigger(_Strict):
    attribute: AttributeName = Field(description="a date attribute of the lead schema")
    every_year: bool = Field(
        default=False, description="its month and day, every year (a 29 February on the 28th)"
    )
    offset_days: int = Field(default=0, ge=-366, le=366, description="days after (- before) it")
    at: Annotated[str, StringConstraints(pattern=LOCAL_TIME)] = Field(
        default="09:00", description="local time of day, HH:MM, in the lead's time zone"
    )


class Trigger(_Strict):
    """One entry trigger: exactly one of its fields."""

    event: EventTrigger | None = None
    list_joined: ListJoined | None = None
    segment_entered: SegmentEntered | None = None
    date: DateTrigger | None = None

    @model_validator(mode="after")
    def _one(self) -> Trigger:
        given = [k for k in TRIGGER_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a trigger is one of " + ", ".join(TRIGGER_KINDS) + f" (given: {given or 'none'})"
            )
        return self

    @property
    def kind(self) -> str:
        return next(k for k in TRIGGER_KINDS if getattr(self, k) is not None)


TRIGGER_KINDS = ("event", "list_joined", "segment_entered", "date")


# Nodes --------------------------------------------------------------------------------------------
class _Node(_Strict):
    id: NodeId
    description: str = Field(default="", max_length=500)


class Promo(_Strict):
    """A single-use promo code the message gives its template (``promo_code``,
    ``promo_expires_at``, and ``promo``: code, percent_off, expires_at)."""

    percent_off: int = Field(ge=1, le=100)
    valid_days: int = Field(default=30, ge=1, le=366, description="days the code can be used")
    prefix: Annotated[str, StringConstraints(pattern=r"^[A-Z0-9]{1,12}$")] = Field(
        default="RL", description="the code's first letters: BDAY-7K2QX9PM"
    )


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
    promo: Promo | None = Field(
        default=None, description="a single-use promo code, issued once per run and node"
    )
    promo_of: NodeId | None = Field(
        default=None, description="the code issued at that message node, given again (a reminder)"
    )
    next: NodeId | None = None
    topic: TopicKey | None = Field(
        default=None,
        description="marketing: what it is about (config/topics.yaml; default: the definition's)",
    )

    @model_validator(mode="after")
    def _one_promo(self) -> Message:
        if self.promo is not None and self.promo_of is not None:
            raise ValueError("a message issues a promo code or repeats one (promo_of), not both")
        return self


class Until(_Strict):
    time: Annotated[str, StringConstraints(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")] = Field(
        description="local time of day, HH:MM, in the lead's time zone"
    )
    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=lambda: list(WEEKDAYS), min_length=1
    )


class UntilDate(_Strict):
    """A date attribute of the lead ± days, at a local time in the lead's zone (a renewal date,
    30 days before). A lead without the date, or whose moment has passed, goes on at once."""

    attribute: AttributeName = Field(description="a date attribute of the lead schema")
    offset_days: int = Field(default=0, ge=-366, le=366, description="days after (- before) it")
    at: Annotated[str, StringConstraints(pattern=LOCAL_TIME)] = Field(
        default="09:00", description="local time of day, HH:MM, in the lead's time zone"
    )


class Delay(_Node):
    type: Literal["delay"]
    duration: Duration | None = None
    until: Until | None = None
    next: NodeId | None = None
    until_date: UntilDate | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Delay:
        if self.until_date is not None and (self.duration is not None or self.until is not None):
            raise ValueError("a delay until a date attribute has no duration and no until")
        if self.until_date is None and (self.duration is None) == (self.until is None):
            raise ValueError("a delay has a duration or an until, not both")
        if self.duration is not None:
            bounded(self.duration)
        return self


class WaitFor(_Node):
    type: Literal["wait_for"]
    event: Literal["opened", "clicked", "signal", "custom", "downloaded"]
    message: NodeId | None = Field(default=None, description="opened / clicked: the message node")
    signal: Name | None = Field(default=None, description="signal: the signal or event's name")
    within: Duration
    then: NodeId | None = None
    timeout: NodeId | None = None
    # custom: a custom event of the lead schema, its properties equal to ``where``
    name: AttributeName | None = Field(default=None, description="custom: the custom event")
    where: dict[AttributeName, Scalar] = Field(
        default_factory=dict, max_length=20, description="custom: properties it must have (equal)"
    )
    # downloaded: the asset of POST /events/track {"type": "asset_downloaded", "asset": ...}
    asset: AssetName | None = Field(default=None, description="downloaded: the asset's id")

    @model_validator(mode="after")
    def _what(self) -> WaitFor:
        bounded(self.within)
        if self.event == "signal" and not self.signal:
            raise ValueError("waiting for a signal names it (signal: <name>)")
        if self.event == "custom" and not self.name:
            raise ValueError("waiting for a custom event names it (name: <event>)")
        if self.event == "downloaded" and not self.asset:
            raise ValueError("waiting for a download names the asset (asset: <id>)")
        if self.event in ("opened", "clicked") and not self.message:
            raise ValueError(f"waiting for {self.event} names the message node (message: <id>)")
        if self.where and self.event != "custom":
            raise ValueError("only a wait for a custom event has a where")
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
    set: dict[AttributeName, Scalar | None] = Field(
        default_factory=dict,
        max_length=50,
        description="custom attributes of the lead schema and their values (null removes one)",
    )
    stage: Literal["lead", "mql", "sql", "customer"] | None = Field(
        default=None,
        description=(
            "raises the lead's lifecycle stage to at least this one; a stage only moves forward"
            " (a lead the facts put higher stays higher, a later lower one changes nothing)"
        ),
    )

    @model_validator(mode="after")
    def _something(self) -> Update:
        if not (
            self.score_event or self.add_to_list or self.remove_from_list or self.set or self.stage
        ):
            raise ValueError(
                "an update adds score points, adds to or removes from a list, sets attributes"
                " or raises the stage"
            )
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
    journey: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,39}$")] = Field(
        description="a published definition's key, or a coded journey of the catalogue"
    )
    guard: Literal["", "came_from", "once", "cooldown"] = Field(
        default="came_from",
        description="what stops a loop through this redirect (relance/contracts/journey_graph.py)",
    )


class Case(_Strict):
    if_: Test = Field(alias="if")
    next: NodeId | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Switch(_Node):
    """A multi-way split: the first case whose test holds wins; none: ``default``."""

    type: Literal["switch"]
    cases: list[Case] = Field(min_length=1, max_length=20)
    default: NodeId | None = None


class Task(_Node):
    """A task for a sales rep through the sales hand-off (activities/sales.py: assigned by
    territory or round-robin, the rep emailed). ``title`` and ``description`` are templates of
    the lead's fields (``first_name``, ``country``, ``locale``, ``score``, ``attributes.<name>``):
    rendered as text, a value never runs."""

    type: Literal["task"]
    title: str = Field(min_length=1, max_length=300, description="a template: the task's reason")
    description: str = Field(default="", max_length=2000, description="a template: what to do")
    due_in: Duration = Field(
        default=timedelta(days=2), description="when the task is due, from its creation"
    )
    next: NodeId | None = None

    @model_validator(mode="after")
    def _due(self) -> Task:
        bounded(self.due_in)
        return self


JsonPointer = Annotated[str, StringConstraints(pattern=r"^(/[^/]*)*$", max_length=200)]


class Webhook(_Node):
    """A signed POST to a named endpoint (``RELANCE_JOURNEY_WEBHOOKS``: a definition names an
    endpoint the settings hold, never a URL, so no definition makes the worker call an arbitrary
    address). The body: the lead's id, the journey's key, the node's id and the custom
    ``attributes`` it lists; the answer's fields at the ``map``'s JSON pointers become custom
    attributes. A 5xx, a 429 or no answer is retried; a 4xx (or retries run out, or a mapped
    value the lead schema refuses) takes ``on_failure``, or ``next`` when it has none."""

    type: Literal["webhook"]
    endpoint: Name = Field(description="a named endpoint of the settings (journey_webhooks)")
    attributes: list[AttributeName] = Field(
        default_factory=list, max_length=50, description="custom attributes sent with the lead id"
    )
    map: dict[AttributeName, JsonPointer] = Field(
        default_factory=dict,
        max_length=50,
        description="attribute -> JSON pointer into the answer (RFC 6901: /company/size)",
    )
    next: NodeId | None = None
    on_failure: NodeId | None = Field(
        default=None, description="where a failed call goes (default: next)"
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
    | Redirect
    | Switch
    | Task
    | Webhook,
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
    triggers: list[Trigger] = Field(
        default_factory=list,
        max_length=20,
        description="what enrolls a lead (none: the API only, which always works when published)",
    )
    rules: JourneyRules = Field(default_factory=JourneyRules)
    goals: list[Name] = Field(
        default_factory=list,
        max_length=10,
        description="goals (e.g. purchase) that end the journey at once, as converted",
    )
    start: NodeId | None = Field(default=None, description="the first node (default: the first)")
    topic: TopicKey | None = Field(
        default=None,
        description="what its marketing messages are about when they name no topic of their own",
    )
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
    elif node.type == "switch":
        out = [*switch_branches(node)]
    elif node.type == "task":
        out = [("next", node.next)]
    elif node.type == "webhook":
        out = [("next", node.next), ("on_failure", node.on_failure)]
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
    if node.type == "switch":
        return [b for b, t in switch_branches(node) if t is None]
    if node.type in ("task", "webhook"):  # a webhook's failure without its own edge: next
        return ["next"] if node.next is None else []
    arms = [*node.arms, *([node.holdout] if node.holdout else [])]
    return [f"arm {a.name}" for a in arms if a.next is None]


def switch_branches(node: Any) -> list[tuple[str, str | None]]:
    """A switch's branches as (label, target): ``case 1``, ``case 2``..., then ``default``."""
    cases = [(f"case {i}", c.next) for i, c in enumerate(node.cases, start=1)]
    return [*cases, ("default", node.default)]


def json_schema() -> dict[str, Any]:
    """The definition's JSON Schema (GET /journeys/schema; editors validate against it)."""
    schema = Definition.model_json_schema(by_alias=True)
    schema["$id"] = "https://relance.dev/schemas/journey-definition.json"
    schema["title"] = "Relance journey definition"
    return schema
