"""What the interpreter of defined journeys (workflows/defined.py) receives and asks: the compiled
form of a definition (relance/domain/definitions.py), ids and knobs only, and the activity that
evaluates a condition against the lead.

The compiled definition travels in the workflow's input, so a running lead keeps the version it
entered with: publishing a new version never changes a journey in flight. Light on purpose (plain
dataclasses, no pydantic): safe in the workflow sandbox, decoded by Temporal's converter.
"""

from __future__ import annotations

import hashlib
import json
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
class CompiledCase:
    test: dict[str, Any]  # the expression tree, as written (the activity validates it again)
    next: str | None = None


@dataclass
class CompiledNode:
    """One node, its type's fields set and the others left at their defaults."""

    id: str
    type: str  # message | delay | wait_for | condition | experiment | update | switch | ...
    next: str | None = None  # message, delay, update, checkpoint
    # message
    channel: str = ""  # email | sms | webhook | best
    channels: list[str] = field(default_factory=list)  # best: the preference, best first
    template: str = ""
    kind: str = "marketing"
    # message: a single-use promo code issued once per run and node (percent_off 0: none), or
    # the code issued at another message node, given again (promo_of)
    promo_percent_off: int = 0
    promo_valid_days: int = 0
    promo_prefix: str = ""
    promo_of: str = ""
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
    guard: str = ""  # redirect: what stops a loop through it (relance/contracts/journey_graph.py)
    # message: what a marketing message is about (its own topic, else the definition's; "": the
    # journey's topic from the catalogue, as runs compiled before messages named theirs)
    topic: str = ""
    # delay until a date attribute of the lead, ± days, at a local time (until_time: HH:MM)
    date_attribute: str = ""
    offset_days: int = 0
    # update: custom attributes set (None removes one), checked against the lead schema
    attributes: dict[str, Any] = field(default_factory=dict)
    # switch: the cases in order (the first that holds wins), else ``otherwise`` (its default)
    cases: list[CompiledCase] = field(default_factory=list)
    # wait_for custom: the event ``signal`` (its name), its properties equal to ``where``
    # (``where_key`` names the filter in the signal that answers it); downloaded: ``asset``
    where: dict[str, Any] = field(default_factory=dict)
    where_key: str = ""
    asset: str = ""
    # update: the lifecycle stage the lead is raised to ("": none)
    stage: str = ""
    # task: its title and description templates (what to do), due in ``seconds``
    task_title: str = ""
    task_details: str = ""
    # webhook: the named endpoint, the attributes sent, attribute -> JSON pointer of the answer;
    # ``otherwise``: where a failed call goes (next when the definition gives none)
    endpoint: str = ""
    sent_attributes: list[str] = field(default_factory=list)
    map: dict[str, str] = field(default_factory=dict)


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
    # the promo codes the run issued, by message node: what ``promo_used`` asks about
    promos: dict[str, str] = field(default_factory=dict)


@dataclass
class ConditionAnswer:
    holds: bool
    why: str  # e.g. "score >= 20: yes (score 35)" — facts about the lead, never its address


@activity.defn(name="evaluate_condition")
def evaluate_condition(question: ConditionQuestion) -> ConditionAnswer:
    raise NotImplementedError("run by the worker: DefinitionActivities.evaluate_condition")


# A switch's cases, evaluated in one activity: the first that holds wins ---------------------------
@dataclass
class SwitchQuestion:
    lead_id: str
    tests: list[dict[str, Any]]  # the cases' expression trees, in order
    promos: dict[str, str] = field(default_factory=dict)  # as ConditionQuestion's


@dataclass
class SwitchAnswer:
    case: int  # the first case that holds, from 1; 0: none does (the default)
    why: str  # each case asked, and what it found, up to the one that holds


@activity.defn(name="evaluate_switch")
def evaluate_switch(question: SwitchQuestion) -> SwitchAnswer:
    raise NotImplementedError("run by the worker: DefinitionActivities.evaluate_switch")


# A delay until a date attribute: the date and the lead's zone, read at that step ---------------
@dataclass
class LeadDateQuestion:
    lead_id: str
    attribute: str


@dataclass
class LeadDate:
    value: str | None  # YYYY-MM-DD; None: the lead has no such date
    time_zone: str


@activity.defn(name="read_lead_date")
def read_lead_date(question: LeadDateQuestion) -> LeadDate:
    raise NotImplementedError("run by the worker: DefinitionActivities.read_lead_date")


# An update's custom attributes, written as PATCH /leads/{id}/attributes writes them ---------------
@dataclass
class AttributesChange:
    lead_id: str
    values: dict[str, Any]  # None removes an attribute


@dataclass
class AttributesChanged:
    changed: list[str]  # the attributes whose stored value changed (none on a retry)


@activity.defn(name="set_lead_attributes")
def set_lead_attributes(change: AttributesChange) -> AttributesChanged:
    raise NotImplementedError("run by the worker: DefinitionActivities.set_lead_attributes")


# An update's lifecycle stage: a floor, so a stage only moves forward -----------------------------
@dataclass
class StageChange:
    lead_id: str
    stage: str  # lead | mql | sql | customer


@dataclass
class StageChanged:
    stage: str  # the stage the lead shows now (its facts may put it higher than asked)
    raised: bool  # False: the lead was already at that stage or beyond (or a retry)


@activity.defn(name="raise_lead_stage")
def raise_lead_stage(change: StageChange) -> StageChanged:
    raise NotImplementedError("run by the worker: DefinitionActivities.raise_lead_stage")


# Waits for a custom event or a download ----------------------------------------------------------
def where_key(where: dict[str, Any]) -> str:
    """A wait's property filter, named by its content (the same on the API's side, which tells a
    waiting journey which filters an event meets, and in the workflow): no lead data in it."""
    if not where:
        return ""
    canonical = json.dumps(where, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def where_holds(where: dict[str, Any], properties: dict[str, Any]) -> bool:
    """The event's properties equal the filter's (as an event trigger's ``where``)."""
    return all(properties.get(k) == v for k, v in where.items())


@dataclass
class WaitedEvent:
    """What a custom event tells the lead's waiting defined journeys, with the signal of its name:
    the keys of the waits' filters (``where_key``) its properties meet, never the properties."""

    matches: list[str] = field(default_factory=list)


# Webhook calls, made by the worker ---------------------------------------------------------------
@dataclass
class WebhookCall:
    lead_id: str
    journey: str
    node: str
    endpoint: str  # a named endpoint of the settings (journey_webhooks)
    delivery_id: str  # the same on every retry (X-Relance-Delivery): the receiver drops copies
    attributes: list[str] = field(default_factory=list)  # custom attributes sent
    map: dict[str, str] = field(default_factory=dict)  # attribute -> JSON pointer of the answer


@dataclass
class WebhookAnswer:
    ok: bool  # False: refused (a 4xx), or an answer the mapping cannot use
    why: str  # e.g. "200: plan, company_size set" — names and statuses, never values
    written: list[str] = field(default_factory=list)  # the attributes set from the answer


@activity.defn(name="call_journey_webhook")
def call_journey_webhook(call: WebhookCall) -> WebhookAnswer:
    raise NotImplementedError("run by the worker: DefinitionActivities.call_journey_webhook")
