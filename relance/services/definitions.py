"""Journeys as data, before they run: reading a definition (YAML or JSON), checking it, and
compiling it into what the interpreter receives (relance/contracts/definitions.py).

The checks are pure functions (what they need is passed in: the templates there are, the other
definitions for redirect loops), used at publish and by ``python -m relance journeys check FILE...``
in CI. Each problem names the node and what is wrong with it:

- an edge (``next``, a branch, an arm) to a node that does not exist, a duplicate id, a wait for
  the open or click of a node that is not a message;
- a node no path from the start reaches;
- a branch left without an edge (the journey would stop there without saying so: end it with an
  ``exit``), or a node from which no path reaches an end (exit, goal, redirect);
- a cycle with no delay and no wait in it (it would spin for ever in an instant);
- an experiment whose arms and holdout do not sum to 100 %;
- a template missing for a message's channel (templates/<channel>/);
- redirects between journeys that loop with no guard (relance/contracts/journey_graph.py);
- a marketing message about no topic (none of its own, none for the definition), or about a
  topic the topics file does not declare (config/topics.yaml);
- a switch case asking what a condition may not (the same rules, case by case);
- an update setting an attribute the lead schema does not declare, or a value not of its type;
- a delay until a date attribute that is no date attribute of the lead schema.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy

from relance.contracts import catalogue, signals
from relance.contracts.catalogue import Journey
from relance.contracts.channels import template_file
from relance.contracts.definitions import (
    CompiledArm,
    CompiledCase,
    CompiledDefinition,
    CompiledNode,
    where_key,
)
from relance.contracts.journey_graph import JourneyGraphError, Link, TargetRules, unguarded_cycles
from relance.domain.conditions import problems as rule_problems
from relance.domain.definitions import Definition, edges, open_ends
from relance.domain.lead_schema import AttributeProblems, LeadSchema
from relance.domain.rendering import (
    MESSAGE_VARIABLES,
    TEMPLATES_DIR,
    inline_problems,
    template_variables,
)
from relance.domain.send_window import DAY_NAMES
from relance.domain.settings import Settings
from relance.domain.topics import Topics
from relance.services.journeys import start_journey

# What a message with a promo code gives its template besides (activities/commerce.py).
PROMO_VARIABLES = frozenset({"promo", "promo_code", "promo_expires_at"})

# What a wait for a signal may wait for, besides the lead schema's custom events: the signals the
# product sends journeys by name (the opens, clicks, unsubscribes and goals have their own
# handlers and nodes: wait_for opened / clicked, the definition's goals).
SIGNALS = frozenset(
    {
        signals.EMAIL_CONFIRMED,
        signals.CART_UPDATED,
        signals.PURCHASED,
        signals.EVENT_CHANGED,
        signals.ATTENDED,
        signals.ACTIVITY,
        signals.ASSET_DOWNLOADED,
        signals.DEMO_BOOKED,
        signals.TASK_COMPLETED,
        signals.SCORE_CHANGED,
        signals.PAGE_VIEWED,
    }
)
PAUSES = ("delay", "wait_for")  # a cycle through one of these takes time: it may loop
PERCENT_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Problem:
    node: str | None  # the node at fault (None: the definition as a whole)
    what: str
    trigger: int | None = None  # the entry trigger at fault (its index in ``triggers``)

    def __str__(self) -> str:
        if self.trigger is not None:
            return f"trigger {self.trigger}: {self.what}"
        return f"node {self.node}: {self.what}" if self.node else self.what

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"node": self.node, "problem": self.what}
        if self.trigger is not None:
            out["trigger"] = self.trigger
        return out


class DefinitionError(ValueError):
    """A definition that cannot be published, with every problem found."""

    def __init__(self, problems: list[Problem], source: str = "") -> None:
        self.problems = problems
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(where + "; ".join(str(p) for p in problems))


# Reading ------------------------------------------------------------------------------------------
def read_file(path: Path) -> Any:
    """The document in ``path`` (YAML, of which JSON is a part)."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise DefinitionError([Problem(None, f"cannot read it: {err}")], str(path)) from None


def parse(data: Any, source: str = "") -> Definition:
    """The definition ``data`` holds, or DefinitionError naming the node of each problem."""
    try:
        return Definition.model_validate(data)
    except ValidationError as err:
        raise DefinitionError(
            [_problem_of(data, e) for e in err.errors(include_url=False)], source
        ) from None


def _problem_of(data: Any, error: Mapping[str, Any]) -> Problem:
    loc = list(error["loc"])
    node = None
    if len(loc) >= 2 and loc[0] == "triggers" and isinstance(loc[1], int):
        field = ".".join(str(p) for p in loc[2:])
        message = error["msg"].removeprefix("Value error, ")
        return Problem(None, f"{field}: {message}" if field else message, trigger=loc[1])
    if len(loc) >= 2 and loc[0] == "nodes" and isinstance(loc[1], int):
        raw = data.get("nodes", [])[loc[1]] if isinstance(data, dict) else None
        node = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
        node = node or f"#{loc[1] + 1}"
        kind = raw.get("type") if isinstance(raw, dict) else None
        loc = loc[3:] if len(loc) > 2 and loc[2] == kind else loc[2:]
    field = ".".join(str(p) for p in loc)
    message = error["msg"].removeprefix("Value error, ")
    return Problem(node, f"{field}: {message}" if field else message)


# Checking -----------------------------------------------------------------------------------------
def trigger_problems(
    definition: Definition,
    lead_schema: LeadSchema,
    segment_exists: Callable[[str], bool] | None = None,
) -> list[Problem]:
    """What is wrong with the entry triggers: a custom event or an attribute the lead schema
    does not declare, a date trigger on an attribute that is no date, an unknown segment
    (``segment_exists``: checked only with the stored segments at hand)."""
    problems = []
    events = ", ".join(sorted(lead_schema.events)) or "none"
    for i, trigger in enumerate(definition.triggers):
        if trigger.event is not None and trigger.event.name not in lead_schema.events:
            problems.append(
                Problem(
                    None,
                    f"event: {trigger.event.name!r} is no custom event of the lead schema "
                    f"(its events: {events})",
                    trigger=i,
                )
            )
        if trigger.event is not None and trigger.event.name in lead_schema.events:
            declared = lead_schema.events[trigger.event.name].properties
            for name in trigger.event.where:
                if declared and name not in declared:
                    problems.append(
                        Problem(
                            None,
                            f"event.where: {name!r} is no property of {trigger.event.name} "
                            f"(its properties: {', '.join(sorted(declared))})",
                            trigger=i,
                        )
                    )
        if trigger.date is not None:
            spec = lead_schema.attributes.get(trigger.date.attribute)
            if spec is None:
                known = ", ".join(sorted(lead_schema.attributes)) or "none"
                problems.append(
                    Problem(
                        None,
                        f"date: {trigger.date.attribute!r} is no attribute of the lead schema "
                        f"(its attributes: {known})",
                        trigger=i,
                    )
                )
            elif spec.type != "date":
                problems.append(
                    Problem(
                        None,
                        f"date: the attribute {trigger.date.attribute!r} is a {spec.type}, "
                        "not a date",
                        trigger=i,
                    )
                )
        if (
            trigger.segment_entered is not None
            and segment_exists is not None
            and not segment_exists(trigger.segment_entered.segment)
        ):
            problems.append(
                Problem(
                    None,
                    f"segment_entered: no saved segment with the id "
                    f"{trigger.segment_entered.segment!r}",
                    trigger=i,
                )
            )
    return problems


def known_templates(templates_dir: Path = TEMPLATES_DIR) -> set[str]:
    """The template files there are, as ``template_file`` names them ("email/welcome_new.jinja")."""
    return {
        p.relative_to(templates_dir).as_posix() for p in templates_dir.glob("*/*") if p.is_file()
    }


def check(
    definition: Definition,
    *,
    templates: set[str] | None = None,
    others: Iterable[Definition] = (),
    default_cooldown_days: float = 30.0,
    templates_dir: Path = TEMPLATES_DIR,
    lead_schema: LeadSchema | None = None,
    topics: Topics | None = None,
    webhooks: Collection[str] | None = None,
) -> list[Problem]:
    """Every problem of the definition (none: it may be published). ``templates``: the template
    files there are (``known_templates`` of ``templates_dir``; None: not checked, nor what they
    need); ``others``: the other definitions its redirects may loop through; ``lead_schema``: the
    custom events a wait may name and the attributes and events conditions read (None: not
    checked); ``topics``: the topics marketing messages may be about (None: any topic named);
    ``webhooks``: the endpoints webhook nodes may name (None: not checked)."""
    nodes = {}
    problems: list[Problem] = (
        trigger_problems(definition, lead_schema) if lead_schema is not None else []
    )
    for node in definition.nodes:
        if node.id in nodes:
            problems.append(Problem(node.id, "two nodes have this id"))
        nodes.setdefault(node.id, node)
    if definition.first not in nodes:
        problems.append(Problem(None, f"the start {definition.first!r} is no node"))
        return problems
    for node in definition.nodes:
        for label, target in edges(node):
            if target not in nodes:
                problems.append(Problem(node.id, f"its {label} edge goes to no node: {target!r}"))
        for branch in open_ends(node):
            problems.append(
                Problem(node.id, f"its {branch} branch leads nowhere (end it with an exit node)")
            )
        if node.type == "wait_for" and node.message:
            if node.message not in nodes or nodes[node.message].type != "message":
                problems.append(
                    Problem(
                        node.id,
                        f"it waits for the {node.event} of {node.message!r}, "
                        "which is no message node",
                    )
                )
        if (
            node.type == "wait_for"
            and node.event == "signal"
            and lead_schema is not None
            and node.signal not in SIGNALS
            and node.signal not in lead_schema.events
        ):
            known = ", ".join(sorted(lead_schema.events)) or "none"
            problems.append(
                Problem(
                    node.id,
                    f"it waits for {node.signal!r}, which is no signal of Relance and no custom "
                    f"event of the lead schema (its events: {known})",
                )
            )
        if node.type == "experiment":
            arms = [*node.arms, *([node.holdout] if node.holdout else [])]
            total = sum(a.percent for a in arms)
            if abs(total - 100) > PERCENT_TOLERANCE:
                problems.append(
                    Problem(node.id, f"its arms and holdout sum to {total:g} %, not 100 %")
                )
            names = [a.name for a in arms]
            if len(set(names)) != len(names):
                problems.append(Problem(node.id, "two arms have the same name"))
        if node.type == "condition":
            for asked in sorted(node.if_.promo_nodes()):
                if asked not in nodes or not _issues_promo(nodes[asked]):
                    problems.append(
                        Problem(
                            node.id,
                            f"its condition asks whether the promo code of {asked!r} was used, "
                            "but that is no message node with a promo",
                        )
                    )
        if node.type == "message" and node.promo_of is not None:
            if node.promo_of not in nodes or not _issues_promo(nodes[node.promo_of]):
                problems.append(
                    Problem(
                        node.id,
                        f"it repeats the promo code of {node.promo_of!r}, "
                        "which is no message node with a promo",
                    )
                )
        if node.type == "redirect" and node.journey in catalogue.enrollable_names():
            if replaced_by := catalogue.entry(node.journey).replaced_by:
                problems.append(
                    Problem(
                        node.id,
                        f"its redirect goes to {node.journey}, which takes no new leads: "
                        f"redirect to {replaced_by}, the journey that tells its story now",
                    )
                )
        if node.type == "condition" and lead_schema is not None:
            problems += [
                Problem(node.id, f"its condition at {p}")
                for p in rule_problems(node.if_, lead_schema)
            ]
        if node.type == "message" and templates is not None:
            for channel in node.channels if node.channel == "best" else [node.channel]:
                path = template_file(channel, node.template)
                if path not in templates:
                    problems.append(
                        Problem(
                            node.id,
                            f"no template {node.template!r} for {channel} (templates/{path})",
                        )
                    )
                    continue
                # A defined journey's message is about the lead alone: a template that needs an
                # event or a cart (an event journey's reminder) would fail at every attempt.
                given = MESSAGE_VARIABLES | (
                    PROMO_VARIABLES if node.promo is not None or node.promo_of else frozenset()
                )
                needs = template_variables(path, templates_dir) - given
                if needs:
                    problems.append(
                        Problem(
                            node.id,
                            f"its template {node.template} needs {', '.join(sorted(needs))}, "
                            "which a defined journey's message does not have (it is about the "
                            f"lead alone): templates/{path}",
                        )
                    )
    problems += _node_problems(definition, nodes, lead_schema, topics)
    problems += _hand_off_problems(definition, lead_schema=lead_schema, webhooks=webhooks)
    if problems and any(
        "edge goes to no node" in p.what or "two nodes" in p.what for p in problems
    ):
        # The graph is not what it means to be yet: what it would say of paths is noise.
        return problems + _redirect_loops(definition, list(others), default_cooldown_days)
    graph = {n.id: [t for _, t in edges(n)] for n in nodes.values()}
    reached = _reachable(definition.first, graph)
    for node_id in nodes:
        if node_id not in reached:
            problems.append(Problem(node_id, "no path from the start reaches it"))
    ends = {n.id for n in nodes.values() if n.type in ("goal", "exit", "redirect") or open_ends(n)}
    ending = _reaching(ends, graph)
    for node_id in nodes:
        if node_id in reached and node_id not in ending:
            problems.append(
                Problem(node_id, "no path from it reaches an end (exit, goal or redirect)")
            )
    instant = {
        k: [t for t in v if nodes[t].type not in PAUSES]
        for k, v in graph.items()
        if nodes[k].type not in PAUSES
    }
    for cycle in _cycles(instant):
        problems.append(
            Problem(cycle[0], "it loops with no delay or wait: " + " -> ".join([*cycle, cycle[0]]))
        )
    problems.extend(_redirect_loops(definition, list(others), default_cooldown_days))
    return problems


def _node_problems(
    definition: Definition,
    nodes: Mapping[str, Any],
    lead_schema: LeadSchema | None,
    topics: Topics | None,
) -> list[Problem]:
    """What is wrong with the nodes' topics, switches, attributes set and dates waited for."""
    problems: list[Problem] = []
    for node in definition.nodes:
        if node.type == "message" and node.kind == "marketing":
            topic = node.topic or definition.topic
            if topic is None:
                problems.append(
                    Problem(
                        node.id,
                        "a marketing message is about a topic: name one (topic: <key> of "
                        "config/topics.yaml), or give the definition a topic its messages inherit",
                    )
                )
            elif topics is not None and topics.get(topic) is None:
                whose = "" if node.topic else " (the definition's)"
                problems.append(
                    Problem(
                        node.id,
                        f"its topic {topic!r}{whose} is not declared in the topics file "
                        f"(declared: {', '.join(topics.keys)})",
                    )
                )
        if node.type == "switch":
            for i, case in enumerate(node.cases, start=1):
                for asked in sorted(case.if_.promo_nodes()):
                    if asked not in nodes or not _issues_promo(nodes[asked]):
                        problems.append(
                            Problem(
                                node.id,
                                f"its case {i} asks whether the promo code of {asked!r} was "
                                "used, but that is no message node with a promo",
                            )
                        )
                if lead_schema is not None:
                    problems += [
                        Problem(node.id, f"its case {i} at {p}")
                        for p in rule_problems(case.if_, lead_schema)
                    ]
        if node.type == "update" and node.set and lead_schema is not None:
            try:
                lead_schema.check_attributes(dict(node.set))
            except AttributeProblems as err:
                problems += [
                    Problem(node.id, f"its set of {name!r}: {what}")
                    for name, what in err.problems.items()
                ]
        if node.type == "delay" and node.until_date is not None and lead_schema is not None:
            name = node.until_date.attribute
            spec = lead_schema.attributes.get(name)
            if spec is None:
                known = ", ".join(sorted(lead_schema.attributes)) or "none"
                problems.append(
                    Problem(
                        node.id,
                        f"it waits until {name!r}, which is no attribute of the lead schema "
                        f"(its attributes: {known})",
                    )
                )
            elif spec.type != "date":
                problems.append(
                    Problem(
                        node.id, f"it waits until {name!r}, whose type is {spec.type}, not date"
                    )
                )
    return problems


def _hand_off_problems(
    definition: Definition,
    *,
    lead_schema: LeadSchema | None = None,
    webhooks: Collection[str] | None = None,
) -> list[Problem]:
    """What is wrong with the task, webhook and custom-event or download wait nodes: a task's
    template that does not parse or reads what it lacks; a webhook's endpoint the settings do not
    name (``webhooks``), an attribute it sends or maps that the lead schema lacks; a wait for a
    custom event the lead schema does not declare, or a property of it the event lacks."""
    problems = []
    for node in definition.nodes:
        if node.type == "task":
            for part in ("title", "description"):
                wrong = inline_problems(getattr(node, part))
                if wrong:
                    problems.append(Problem(node.id, f"its {part}: {wrong}"))
        if node.type == "webhook" and webhooks is not None and node.endpoint not in webhooks:
            known = ", ".join(sorted(webhooks)) or "none"
            problems.append(
                Problem(
                    node.id,
                    f"it calls {node.endpoint!r}, which is no endpoint of the settings "
                    f"(RELANCE_JOURNEY_WEBHOOKS: {known})",
                )
            )
        if node.type == "webhook" and lead_schema is not None:
            known = ", ".join(sorted(lead_schema.attributes)) or "none"
            for part, names in (("attributes", node.attributes), ("map", list(node.map))):
                for name in names:
                    if name not in lead_schema.attributes:
                        problems.append(
                            Problem(
                                node.id,
                                f"its {part}: {name!r} is no attribute of the lead schema "
                                f"(its attributes: {known})",
                            )
                        )
        if node.type == "wait_for" and node.event == "custom" and lead_schema is not None:
            spec = lead_schema.events.get(node.name or "")
            if spec is None:
                known = ", ".join(sorted(lead_schema.events)) or "none"
                problems.append(
                    Problem(
                        node.id,
                        f"it waits for {node.name!r}, which is no custom event of the lead "
                        f"schema (its events: {known})",
                    )
                )
            else:
                for name in node.where:
                    if spec.properties and name not in spec.properties:
                        problems.append(
                            Problem(
                                node.id,
                                f"its where: {name!r} is no property of {node.name} "
                                f"(its properties: {', '.join(sorted(spec.properties))})",
                            )
                        )
    return problems


def _reachable(start: str, graph: Mapping[str, list[str]]) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in graph.get(todo.pop(), []):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _reaching(targets: set[str], graph: Mapping[str, list[str]]) -> set[str]:
    back: dict[str, list[str]] = {}
    for src, outs in graph.items():
        for t in outs:
            back.setdefault(t, []).append(src)
    seen, todo = set(targets), list(targets)
    while todo:
        for prev in back.get(todo.pop(), []):
            if prev not in seen:
                seen.add(prev)
                todo.append(prev)
    return seen


def _cycles(graph: Mapping[str, list[str]]) -> list[list[str]]:
    """One cycle per strongly connected component that loops (Tarjan), in node order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, []):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, []):
                found.append(sorted(component, key=lambda n: index[n]))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def _redirect_loops(
    definition: Definition, others: list[Definition], default_cooldown_days: float
) -> list[Problem]:
    everyone = {d.key: d for d in [*others, definition]}
    links = [
        Link(d.key, n.journey, n.guard)
        for d in everyone.values()
        for n in d.nodes
        if n.type == "redirect"
    ]

    def rules_of(key: str) -> TargetRules:
        target = everyone.get(key)
        if target is None:
            return TargetRules(True, default_cooldown_days)
        cooldown = target.rules.cooldown_days
        return TargetRules(
            target.rules.reenroll, default_cooldown_days if cooldown is None else cooldown
        )

    try:
        cycles = unguarded_cycles(links, rules_of)
    except JourneyGraphError as err:
        return [Problem(None, str(err))]
    problems = []
    for cycle in cycles:
        if definition.key not in cycle:
            continue
        i = cycle.index(definition.key)
        target = cycle[i + 1]
        [node] = [n.id for n in definition.nodes if n.type == "redirect" and n.journey == target][
            :1
        ]
        problems.append(
            Problem(
                node,
                "its redirect loops between journeys with no guard that holds: "
                + " -> ".join(cycle),
            )
        )
    return problems


def checked(
    data: Any,
    *,
    source: str = "",
    templates: set[str] | None = None,
    others: Iterable[Definition] = (),
    lead_schema: LeadSchema | None = None,
    topics: Topics | None = None,
    webhooks: Collection[str] | None = None,
) -> Definition:
    """``data`` parsed and checked, or DefinitionError with every problem, each naming its node."""
    definition = parse(data, source)
    problems = check(
        definition,
        templates=templates,
        others=others,
        lead_schema=lead_schema,
        topics=topics,
        webhooks=webhooks,
    )
    if problems:
        raise DefinitionError(problems, source)
    return definition


def _issues_promo(node: Any) -> bool:
    return node.type == "message" and node.promo is not None


# Compiling ----------------------------------------------------------------------------------------
def compile_definition(definition: Definition, version: int = 0) -> CompiledDefinition:
    """What the interpreter receives: the nodes' ids and knobs (no PII, no prose)."""
    return CompiledDefinition(
        key=definition.key,
        version=version,
        name=definition.name,
        goals=list(definition.goals),
        start=definition.first,
        nodes=[_with_topic(_compile(n), definition.topic) for n in definition.nodes],
        exclude=list(definition.rules.exclude),
    )


def _with_topic(node: CompiledNode, default: str | None) -> CompiledNode:
    """A marketing message's topic: its own, else the definition's."""
    if node.type == "message" and node.kind == "marketing" and not node.topic:
        node.topic = default or ""
    return node


def _compile(node: Any) -> CompiledNode:
    c = CompiledNode(id=node.id, type=node.type)
    match node.type:
        case "message":
            c.next, c.channel, c.template, c.kind = (
                node.next,
                node.channel,
                node.template,
                node.kind,
            )
            c.channels = list(node.channels) if node.channel == "best" else []
            if node.promo is not None:
                c.promo_percent_off = node.promo.percent_off
                c.promo_valid_days = node.promo.valid_days
                c.promo_prefix = node.promo.prefix
            c.promo_of = node.promo_of or ""
            c.topic = (node.topic or "") if node.kind == "marketing" else ""
        case "delay" if node.until_date is not None:
            c.next, c.date_attribute = node.next, node.until_date.attribute
            c.offset_days, c.until_time = node.until_date.offset_days, node.until_date.at
        case "delay":
            c.next = node.next
            if node.duration is not None:
                c.seconds = node.duration.total_seconds()
            else:
                c.until_time = node.until.time
                c.until_days = sorted(DAY_NAMES.index(d) + 1 for d in set(node.until.weekdays))
        case "wait_for":
            c.event, c.message, c.signal = node.event, node.message or "", node.signal or ""
            c.seconds, c.then, c.otherwise = node.within.total_seconds(), node.then, node.timeout
        case "condition":
            c.test = node.if_.model_dump(mode="json", by_alias=True, exclude_none=True)
            c.then, c.otherwise = node.then, node.else_
        case "experiment":
            c.arms = [CompiledArm(a.name, a.percent, a.next) for a in node.arms]
            if node.holdout is not None:
                h = node.holdout
                c.holdout = CompiledArm(h.name, h.percent, h.next)
        case "update":
            c.next, c.score_event = node.next, node.score_event or ""
            c.add_to_list, c.remove_from_list = node.add_to_list or "", node.remove_from_list or ""
            c.attributes = dict(node.set)
            c.stage = node.stage or ""
        case "checkpoint":
            c.next, c.name = node.next, node.name
        case "goal":
            c.goal = node.goal
        case "redirect":
            c.journey, c.guard = node.journey, node.guard
        case "switch":
            c.cases = [
                CompiledCase(
                    case.if_.model_dump(mode="json", by_alias=True, exclude_none=True), case.next
                )
                for case in node.cases
            ]
            c.otherwise = node.default
        case "task":
            c.next, c.task_title, c.task_details = node.next, node.title, node.description
            c.seconds = node.due_in.total_seconds()
        case "webhook":
            c.next, c.otherwise, c.endpoint = node.next, node.on_failure, node.endpoint
            c.sent_attributes, c.map = list(node.attributes), dict(node.map)
    if node.type == "wait_for" and node.event == "custom":
        c.signal, c.where, c.where_key = node.name or "", dict(node.where), where_key(node.where)
    if node.type == "wait_for" and node.event == "downloaded":
        c.asset = node.asset or ""
    return c


def compiled_input(definition: CompiledDefinition) -> dict[str, Any]:
    """The compiled definition as the workflow input's JSON (Temporal decodes it on the worker)."""
    return asdict(definition)


# The command line: python -m relance journeys check FILE... ---------------------------------------
def check_files(
    paths: list[Path],
    templates_dir: Path = TEMPLATES_DIR,
    lead_schema: LeadSchema | None = None,
    topics: Topics | None = None,
) -> list[str]:
    """One line per problem, "<file>: node <id>: <what>"; none: every file may be published.
    ``lead_schema``: the custom events waits may name (None: RELANCE_LEAD_SCHEMA_FILE's);
    ``topics``: the topics messages may be about (None: RELANCE_TOPICS_FILE's)."""
    templates = known_templates(templates_dir)
    settings = Settings(_env_file=None)
    if lead_schema is None:
        lead_schema = settings.lead_schema()
    if topics is None:
        topics = settings.topics()
    parsed: dict[Path, Definition] = {}
    lines: list[str] = []
    for path in paths:
        try:
            parsed[path] = parse(read_file(path), str(path))
        except DefinitionError as err:
            lines.extend(f"{path}: {p}" for p in err.problems)
    for path, definition in parsed.items():
        others = [d for p, d in parsed.items() if p != path]
        problems = check(
            definition,
            templates=templates,
            others=others,
            templates_dir=templates_dir,
            lead_schema=lead_schema,
            topics=topics,
            # the endpoints, when this environment names some (a CI job may not hold them)
            webhooks=set(settings.journey_webhooks) or None,
        )
        lines.extend(f"{path}: {p}" for p in problems)
    return lines


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "journeys" or argv[1] != "check" or len(argv) < 3:
        print("usage: python -m relance journeys check FILE...")
        return 2
    lines = check_files([Path(a) for a in argv[2:]])
    for line in lines:
        print(line)
    if not lines:
        print(f"{len(argv) - 2} definition(s): no problem found")
    return 1 if lines else 0


# Starting -----------------------------------------------------------------------------------------
def entry_for(key: str) -> Journey:
    """The catalogue's entry of defined journeys, labelled with this definition's key (its
    messages, its rules' name, its ``Journey`` search attribute)."""
    return replace(catalogue.entry("defined"), journey=key)


async def start_defined(
    client: Client,
    settings: Settings,
    definition: CompiledDefinition,
    *,
    lead_id: str,
    score: int = 0,
    reenrolled: bool = False,
    reuse_policy: WorkflowIDReusePolicy | None = None,
) -> WorkflowHandle:
    """Start the defined journey for the lead (id ``journey-<key>-<lead id>``), with the compiled
    definition in its input."""
    return await start_journey(
        client,
        settings,
        entry_for(definition.key),
        lead_id=lead_id,
        score=score,
        keys={"key": definition.key},
        knobs={"definition": compiled_input(definition), "reenrolled": reenrolled},
        reuse_policy=reuse_policy,
    )
