"""The journey catalogue: every workflow Relance runs, declared once.

An entry says what the rest of the code needs to know of a journey without importing it: its
name, its workflow (the type name Temporal knows, and the class the worker registers, as
``"module:Class"``), how its workflow id is built, its goals, its default enrollment rules, how
it is started (id policies, search attributes, signal-with-start) and how its input is built from
the settings, the lead id and the caller's knobs. The input builders return plain dicts, which
Temporal's converter decodes into the workflow's input dataclass on the worker, so nothing below
the worker imports a workflow module.

Readers: ``worker.py`` registers the entries' workflows; the API enrolls into the entries marked
``enrollable`` (and its ``JourneyName`` is built from them); ``workflows/goals.py`` finds the
journeys a goal ends; ``relance/services/journeys.py`` starts them (``start_journey``) and reads
their default rules; the outbox skips the clicks of journeys that score their own; the data
export and the erasure list every per-lead journey id.

A new journey is one module (its workflow) and one entry: add it to ``_ENTRIES`` below, or, for a
journey kept outside this package, call ``register`` before the API and the worker are built.

Names that differ, kept as they are because they are persisted (workflow ids of running and closed
journeys, ``messages.journey``, ``RELANCE_JOURNEY_RULES`` keys, the ``Journey`` search attribute):

- ``reengage`` is the re-engagement journey (class ``ReEngagementJourney``, module
  ``workflows.reengagement``);
- ``nurturing`` runs with ids ``nurture-<lead id>``;
- the scenarios are one entry per scenario (``scenario-newsletter``...), all labelled
  ``scenario`` in messages and rules, with ids ``scenario-<scenario>-<lead id>``.

Light on purpose: safe to import inside the workflow sandbox (no Temporal client, no database).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from relance.contracts.journey_graph import CAME_FROM, Link
from relance.contracts.signals import CART_UPDATED, DEMO_BOOKED_GOAL, PAGE_VIEWED, PURCHASE_GOAL

Input = dict[str, Any]
# (settings, lead_id=..., <id keys>=..., <knobs>=...) -> the workflow's input, as a dict
InputBuilder = Callable[..., Input]


@dataclass(frozen=True)
class Rules:
    """A journey's default enrollment rules (``relance/domain/journey_rules.py`` explains them;
    ``RELANCE_JOURNEY_RULES`` overrides them by journey label)."""

    reenroll: bool = True
    cooldown_days: float | None = None  # None: RELANCE_REENROLL_COOLDOWN_DAYS
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class Start:
    """How the journey is started (``relance/services/journeys.py: start_journey``)."""

    # Running already: FAIL refuses (WorkflowAlreadyStartedError), USE_EXISTING hands the start
    # signal to the running one; None leaves it to the server (which refuses).
    conflict: WorkflowIDConflictPolicy | None = WorkflowIDConflictPolicy.FAIL
    # Closed already: whether a new run may take the id. API enrollment decides it from the
    # journey's rules instead.
    reuse: WorkflowIDReusePolicy | None = None
    signal: str | None = None  # signal-with-start: the caller passes the signal's argument
    timeout: timedelta | None = None  # execution timeout; a caller may pass its own
    lead_attributes: bool = True  # Journey, LeadId and Step search attributes at start
    score: bool = False  # the lead's Score search attribute at start


@dataclass(frozen=True)
class Journey:
    name: str  # the catalogue's key and the API's name
    workflow: str  # where the workflow class lives, "module:Class" (the worker imports it)
    workflow_type: str  # the workflow type name (``@workflow.defn(name=...)``)
    build_input: InputBuilder
    # The label messages, rules and the Journey search attribute use (default: ``name``).
    journey: str = ""
    # The workflow id: "<id_prefix>-<key>-<key>..." with ``id_keys`` from the start's values.
    id_prefix: str = ""  # default: ``name``
    id_keys: tuple[str, ...] = ("lead_id",)
    summary: str = "{name} journey for lead {lead_id}"  # formatted with the keys and the input
    goals: tuple[str, ...] = ()  # a goal reached ends the lead's running run (as converted)
    rules: Rules = Rules()
    start: Start = Start()
    # POST /leads/{id}/journeys/{name} and sign-up's "journeys"; its input builder then takes
    # ``reenrolled`` (the lead went through the journey before).
    enrollable: bool = False
    counted: bool = False  # toward RELANCE_MAX_CONCURRENT_JOURNEYS
    scores_own_clicks: bool = False  # its ``clicked`` handler scores; the outbox must not
    # Knobs the caller must pass to the input builder (API enrollment reads each one:
    # relance/services/journeys.py ENROLLMENT_KNOBS).
    requires: tuple[str, ...] = ()
    # Outcomes after which a journey that allows no re-enrollment may still run again for the
    # lead (the welcome: a lead who let the double opt-in lapse and signs up again).
    again_after: tuple[str, ...] = ()
    # What its marketing messages are about (config/topics.yaml): a lead who turned the topic off
    # gets none of them (the send ledger checks it at each send). A send may name its own
    # (SendRequest.topic). "": the journey sends no marketing message.
    topic: str = ""
    # The journey written as data that took this one's place (its key): this one takes no new
    # leads (an enrollment is refused, naming it), and the leads already in it go on to its end,
    # like a HubSpot workflow turned off for new enrollments. "": it takes leads.
    replaced_by: str = ""

    @property
    def label(self) -> str:
        return self.journey or self.name

    @property
    def prefix(self) -> str:
        return self.id_prefix or self.name

    @property
    def per_lead(self) -> bool:
        """One run at a time per lead, with id ``<prefix>-<lead id>``."""
        return self.id_keys == ("lead_id",)

    def workflow_id(self, **keys: str) -> str:
        missing = [k for k in self.id_keys if not keys.get(k)]
        if missing:
            raise ValueError(f"the {self.name} journey's id needs {', '.join(missing)}")
        return "-".join([self.prefix, *(keys[k] for k in self.id_keys)])

    def input(self, settings: Any, **values: Any) -> Input:
        return self.build_input(settings, **values)


# Scenarios: a journey that redirects the lead to another one when it ends --------------------
@dataclass(frozen=True)
class Scenario:
    template: str
    wait_days: float = 7.0  # after the email, before the redirect
    redirect_to: str | None = None
    # What stops a loop through the redirect: a guard of relance/contracts/journey_graph.py
    # (checked at worker start; "" = nothing).
    guard: str = ""


# The newsletter leads to the white paper, which leads back to the newsletter. The way back is
# guarded: the enrollment chain refuses to re-enroll a lead who came from it. Kept for the leads
# in them and their saved histories; new leads go to the same story written as data
# (config/journeys/newsletter_white_paper.yaml): the scenarios' entries are ``replaced_by`` it.
SCENARIOS_REPLACED_BY = "newsletter_white_paper"
SCENARIOS: dict[str, Scenario] = {
    "newsletter": Scenario(template="nurture_welcome_newsletter", redirect_to="white_paper"),
    "white_paper": Scenario(
        template="nurture_white_paper", redirect_to="newsletter", guard=CAME_FROM
    ),
}


def scenario_links(scenarios: Mapping[str, Scenario]) -> list[Link]:
    return [Link(name, s.redirect_to, s.guard) for name, s in scenarios.items() if s.redirect_to]


def scenario_entry_name(scenario: str) -> str:
    return f"scenario-{scenario}"


# Input builders (settings + lead id + knobs) -----------------------------------------------------
def _welcome(s: Any, *, lead_id: str, reenrolled: bool = False) -> Input:
    return {
        "lead_id": lead_id,
        "relance_after_hours": s.welcome_relance_after_hours,
        "relance_by_sms": s.welcome_relance_by_sms,
        "engagement_window_days": s.welcome_engagement_window_days,
        "confirm_within_hours": s.double_opt_in_hours,
        "relance_channels": list(s.welcome_relance_channels) or None,
    }


def _nurturing(s: Any, *, lead_id: str, sequence: Any, reenrolled: bool = False) -> Input:
    """``sequence``: the nurturing sequence, read (and checked) at each enrollment."""
    return {
        "lead_id": lead_id,
        "sequence": sequence,
        "mql_threshold": s.score_mql_threshold,
        "task_due_business_days": s.sales_task_due_business_days,
        "reenrolled": reenrolled,
    }


def _scenario(name: str) -> InputBuilder:
    def build(s: Any, *, lead_id: str, reenrolled: bool = False) -> Input:
        return {"lead_id": lead_id, "scenario": name}

    return build


def _cart(s: Any, *, lead_id: str) -> Input:
    return {
        "lead_id": lead_id,
        "reminder_delays_hours": list(s.cart_reminder_delays_hours),
        "last_reminder_percent_off": s.cart_last_reminder_percent_off,
    }


def _browse(s: Any, *, lead_id: str) -> Input:
    return {"lead_id": lead_id}


def _purchase(s: Any, *, lead_id: str, order_id: str) -> Input:
    return {"order_id": order_id, "first_purchase_percent_off": s.first_purchase_percent_off}


def _event(s: Any, *, lead_id: str, event_id: str) -> Input:
    return {"event_id": event_id, "lead_id": lead_id, "reminder_by_sms": s.event_reminder_by_sms}


def _premium(s: Any, *, lead_id: str) -> Input:
    return {"lead_id": lead_id}


def _reengage(s: Any, *, lead_id: str) -> Input:
    return {
        "lead_id": lead_id,
        "delays_days": list(s.reengagement_delays_days),
        "sunset": s.reengagement_sunset,
    }


def _defined(
    s: Any,
    *,
    lead_id: str,
    key: str,
    definition: Mapping[str, Any],
    reenrolled: bool = False,
    chain: list[str] | None = None,
) -> Input:
    """``definition``: the compiled definition (relance/contracts/definitions.py) as JSON: it
    travels in the input, so the lead keeps the version it entered with."""
    return {
        "lead_id": lead_id,
        "definition": dict(definition),
        "reenrolled": reenrolled,
        "chain": list(chain or []),
    }


def _sweep(s: Any, *, sweep_id: str = "", inactive_days: float | None = None) -> Input:
    return {
        "inactive_days": s.reengagement_inactive_days if inactive_days is None else inactive_days,
        "batch_size": s.reengagement_batch_size,
    }


def _decay(s: Any) -> Input:
    return {"batch_size": s.score_decay_batch_size}


def _no_input(s: Any) -> Input:
    return {}


def _broadcast(s: Any, *, broadcast_id: str, per_hour: int, send_at: Any = None) -> Input:
    return {"broadcast_id": broadcast_id, "per_hour": per_hour, "send_at": send_at}


_ENROLLED = Start(timeout=timedelta(days=365), score=True)  # API enrollment (reuse: the rules)

_ENTRIES: list[Journey] = [
    Journey(
        name="welcome",
        topic="newsletter",
        workflow="workflows.welcome:WelcomeJourney",
        workflow_type="WelcomeJourney",
        build_input=_welcome,
        goals=(PURCHASE_GOAL,),
        rules=Rules(reenroll=False),  # once per lead
        start=_ENROLLED,
        enrollable=True,
        counted=True,
        scores_own_clicks=True,
        again_after=("not_confirmed",),
    ),
    # Again after its cooldown (a second run keys its sends apart: NurturingInput.reenrolled).
    Journey(
        name="nurturing",
        topic="product",
        workflow="workflows.nurturing:LeadNurturingJourney",
        workflow_type="LeadNurturingJourney",
        build_input=_nurturing,
        id_prefix="nurture",
        goals=(DEMO_BOOKED_GOAL, PURCHASE_GOAL),
        rules=Rules(exclude=("customer",)),
        start=_ENROLLED,
        enrollable=True,
        counted=True,
        scores_own_clicks=True,
        requires=("sequence",),
    ),
    *(
        Journey(
            name=scenario_entry_name(name),
            topic="newsletter",
            workflow="workflows.scenario:ScenarioJourney",
            workflow_type="ScenarioJourney",
            build_input=_scenario(name),
            journey="scenario",
            summary=f"{name} scenario for lead {{lead_id}}",
            goals=(PURCHASE_GOAL,),
            start=_ENROLLED,
            enrollable=True,
            counted=True,
            replaced_by=SCENARIOS_REPLACED_BY,
        )
        for name in SCENARIOS
    ),
    # Signal-with-start: the first cart update starts it, later ones reach it.
    Journey(
        name="cart",
        topic="offers",
        workflow="workflows.abandoned_cart:AbandonedCartJourney",
        workflow_type="AbandonedCartJourney",
        build_input=_cart,
        summary="abandoned-cart journey for lead {lead_id}",
        rules=Rules(cooldown_days=0),  # about one cart: no cooldown
        start=Start(
            conflict=WorkflowIDConflictPolicy.USE_EXISTING,  # running: just deliver the signal
            reuse=WorkflowIDReusePolicy.ALLOW_DUPLICATE,  # a new cart after the last one ended
            signal=CART_UPDATED,
        ),
        counted=True,
        scores_own_clicks=True,
    ),
    Journey(
        name="browse",
        topic="product",
        workflow="workflows.browse:BrowseAbandonmentJourney",
        workflow_type="BrowseAbandonmentJourney",
        build_input=_browse,
        summary="browse-abandonment journey for lead {lead_id}",
        rules=Rules(cooldown_days=7),
        start=Start(
            conflict=WorkflowIDConflictPolicy.USE_EXISTING,
            reuse=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            signal=PAGE_VIEWED,
        ),
        counted=True,
    ),
    # One run per order, so a shop retrying the event counts it once.
    Journey(
        name="purchase",
        topic="offers",
        workflow="workflows.purchase:PurchaseFollowUp",
        workflow_type="PurchaseFollowUp",
        build_input=_purchase,
        id_keys=("order_id",),
        summary="follow-up of order {order_id} for lead {lead_id}",
        rules=Rules(cooldown_days=0),
        start=Start(conflict=None, reuse=WorkflowIDReusePolicy.REJECT_DUPLICATE),
    ),
    # One run per registration; not counted: the lead asked for it.
    Journey(
        name="event",
        topic="events",
        workflow="workflows.event_reminder:EventReminderJourney",
        workflow_type="EventReminderJourney",
        build_input=_event,
        id_keys=("event_id", "lead_id"),
        summary="event {event_id} journey for lead {lead_id}",
        rules=Rules(cooldown_days=0),
        # The timeout: the caller's, from the event's end (a safety net, not a plan).
        start=Start(reuse=WorkflowIDReusePolicy.REJECT_DUPLICATE, score=True),
    ),
    # Once per lead ever (the send ledger and leads.premium_offered_at keep it so).
    Journey(
        name="premium",
        topic="product",
        workflow="workflows.premium:PremiumOfferJourney",
        workflow_type="PremiumOfferJourney",
        build_input=_premium,
        summary="premium-content offer for lead {lead_id}",
        start=Start(conflict=None, reuse=WorkflowIDReusePolicy.REJECT_DUPLICATE),
        counted=True,
    ),
    Journey(
        name="reengage",
        topic="newsletter",
        workflow="workflows.reengagement:ReEngagementJourney",
        workflow_type="ReEngagementJourney",
        build_input=_reengage,
        summary="re-engagement journey for lead {lead_id}",
        goals=(PURCHASE_GOAL,),
        start=Start(
            # Running: the lead is enrolled already (an overlapping sweep); skipped.
            conflict=WorkflowIDConflictPolicy.FAIL,
            # Closed: a lead who came back and went quiet again may be re-engaged again.
            reuse=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        ),
        counted=True,
    ),
    # Journeys written as data (relance/domain/definitions.py), all run by one interpreter, with
    # ids journey-<key>-<lead id>. Started by relance/services/definitions.py with the entry's
    # label set to the definition's key (its messages' label and its rules' name).
    Journey(
        name="defined",
        topic="newsletter",
        workflow="workflows.defined:DefinedJourney",
        workflow_type="DefinedJourney",
        build_input=_defined,
        id_prefix="journey",
        id_keys=("key", "lead_id"),
        summary="{key} journey (version {definition[version]}) for lead {lead_id}",
        start=_ENROLLED,
    ),
    # Sweeps: not a lead's journey; by hand (POST /sweeps/re-engagement) or by their schedules
    # (relance/services/schedules.py, which name their own ids).
    Journey(
        name="reengagement-sweep",
        workflow="workflows.sweep:ReEngagementSweep",
        workflow_type="ReEngagementSweep",
        build_input=_sweep,
        id_prefix="reengagement-sweep-manual",
        id_keys=("sweep_id",),
        summary="re-engagement sweep by hand ({inactive_days:g} days)",
        start=Start(conflict=None, lead_attributes=False),
    ),
    Journey(
        name="score-decay",
        workflow="workflows.decay:ScoreDecaySweep",
        workflow_type="ScoreDecaySweep",
        build_input=_decay,
        id_keys=(),
        summary="daily score decay",
        start=Start(conflict=None, lead_attributes=False),
    ),
    Journey(
        name="trigger-sweep",
        workflow="workflows.triggers:TriggerSweep",
        workflow_type="TriggerSweep",
        build_input=_no_input,
        id_keys=(),
        summary="hourly date and segment triggers",
        start=Start(conflict=None, lead_attributes=False),
    ),
    # Broadcasts: one campaign to an audience (POST /broadcasts), not a lead's journey.
    Journey(
        name="broadcast",
        workflow="workflows.broadcast:BroadcastWorkflow",
        workflow_type="BroadcastWorkflow",
        build_input=_broadcast,
        id_keys=("broadcast_id",),
        summary="broadcast {broadcast_id} ({per_hour} an hour)",
        start=Start(lead_attributes=False),
    ),
]

JOURNEYS: dict[str, Journey] = {}


class CatalogueError(ValueError):
    pass


def register(entry: Journey) -> Journey:
    """Add a journey to the catalogue: before the API and the worker are built (they read it
    when they are), e.g. at the import of the module that declares it.

    The worker shares the catalogue with its journeys' sandboxes (worker.SANDBOX_PASSTHROUGH)
    and runs each journey's module again in each: there, the module's own entry is in the
    catalogue already, and stays as the worker registered it."""
    if entry.name in JOURNEYS:
        if workflow.unsafe.in_sandbox() and JOURNEYS[entry.name].workflow == entry.workflow:
            return JOURNEYS[entry.name]
        raise CatalogueError(f"a journey named {entry.name!r} is in the catalogue already")
    if any(e.per_lead and entry.per_lead and e.prefix == entry.prefix for e in JOURNEYS.values()):
        raise CatalogueError(f"another journey runs with ids {entry.prefix}-<lead id>")
    same_label = [e for e in JOURNEYS.values() if e.label == entry.label]
    if same_label and same_label[0].rules != entry.rules:
        raise CatalogueError(f"the journeys labelled {entry.label!r} must share their rules")
    JOURNEYS[entry.name] = entry
    return entry


for _entry in _ENTRIES:
    register(_entry)


# What the readers ask -----------------------------------------------------------------------------
def entry(name: str) -> Journey:
    try:
        return JOURNEYS[name]
    except KeyError:
        raise CatalogueError(f"no journey named {name!r} in the catalogue") from None


def by_workflow_type(workflow_type: str) -> Journey:
    for e in JOURNEYS.values():
        if e.workflow_type == workflow_type:
            return e
    raise CatalogueError(f"no journey runs the workflow type {workflow_type!r}")


def enrollable_names() -> tuple[str, ...]:
    """The journeys the API enrolls leads into (POST /leads/{id}/journeys/{name})."""
    return tuple(e.name for e in JOURNEYS.values() if e.enrollable)


def workflow_types() -> list[Journey]:
    """One entry per workflow type (the scenarios share theirs), in catalogue order."""
    seen: dict[str, Journey] = {}
    for e in JOURNEYS.values():
        seen.setdefault(e.workflow_type, e)
    return list(seen.values())


def default_rules(label: str) -> Rules:
    """The default rules of the journeys labelled ``label`` (messages.journey); a label no entry
    declares (or a rule name of a journey gone) gets the general default."""
    for e in JOURNEYS.values():
        if e.label == label:
            return e.rules
    return Rules()


def counted_workflow_ids(lead_id: str) -> list[str]:
    """The lead's journeys counted against RELANCE_MAX_CONCURRENT_JOURNEYS (by their ids)."""
    return [e.workflow_id(lead_id=lead_id) for e in JOURNEYS.values() if e.counted and e.per_lead]


def lead_workflow_ids(lead_id: str) -> list[str]:
    """Every journey id known from the lead id alone (``<prefix>-<lead id>``)."""
    return [e.workflow_id(lead_id=lead_id) for e in JOURNEYS.values() if e.per_lead]


def journeys_with_goal(lead_id: str, goal: str) -> list[str]:
    """The workflow ids of the lead's journeys that declare ``goal`` (running or not)."""
    return [
        e.workflow_id(lead_id=lead_id) for e in JOURNEYS.values() if goal in e.goals and e.per_lead
    ]


def goals_of(label: str) -> tuple[str, ...]:
    """The goals the journeys labelled ``label`` declare (for their goal signal handler)."""
    goals = {e.goals for e in JOURNEYS.values() if e.label == label}
    if len(goals) != 1:
        raise CatalogueError(f"the journeys labelled {label!r} declare different goals: {goals}")
    return goals.pop()


# The topic of a marketing message whose journey declares none (a journey written as data, a
# label the catalogue does not know): the newsletter, which every topics file must declare.
DEFAULT_TOPIC = "newsletter"


def topic_of(label: str) -> str:
    """The topic of the marketing messages of the journeys labelled ``label`` (messages.journey)
    when the send names none."""
    for e in JOURNEYS.values():
        if e.label == label and e.topic:
            return e.topic
    return DEFAULT_TOPIC


def topics_named() -> frozenset[str]:
    """Every topic the catalogue's journeys send on (the topics file must declare each one)."""
    return frozenset({DEFAULT_TOPIC, *(e.topic for e in JOURNEYS.values() if e.topic)})


def labels_scoring_own_clicks() -> frozenset[str]:
    return frozenset(e.label for e in JOURNEYS.values() if e.scores_own_clicks)
