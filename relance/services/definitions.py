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
- redirects between journeys that loop with no guard (relance/contracts/journey_graph.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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
from relance.contracts.definitions import CompiledArm, CompiledDefinition, CompiledNode
from relance.contracts.journey_graph import JourneyGraphError, Link, TargetRules, unguarded_cycles
from relance.domain.conditions import problems as rule_problems
from relance.domain.definitions import Definition, edges, open_ends
from relance.domain.lead_schema import LeadSchema
from relance.domain.rendering import MESSAGE_VARIABLES, TEMPLATES_DIR, template_variables
from relance.domain.send_window import DAY_NAMES
from relance.domain.settings import Settings
from relance.services.journeys import start_journey

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

    def __str__(self) -> str:
        return f"node {self.node}: {self.what}" if self.node else self.what

    def as_json(self) -> dict[str, Any]:
        return {"node": self.node, "problem": self.what}


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
) -> list[Problem]:
    """Every problem of the definition (none: it may be published). ``templates``: the template
    files there are (``known_templates`` of ``templates_dir``; None: not checked, nor what they
    need); ``others``: the other definitions its redirects may loop through; ``lead_schema``: the
    custom events a wait may name and the attributes and events conditions read (None: not
    checked)."""
    nodes = {}
    problems: list[Problem] = []
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
                needs = template_variables(path, templates_dir) - MESSAGE_VARIABLES
                if needs:
                    problems.append(
                        Problem(
                            node.id,
                            f"its template {node.template} needs {', '.join(sorted(needs))}, "
                            "which a defined journey's message does not have (it is about the "
                            f"lead alone): templates/{path}",
                        )
                    )
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
) -> Definition:
    """``data`` parsed and checked, or DefinitionError with every problem, each naming its node."""
    definition = parse(data, source)
    problems = check(definition, templates=templates, others=others, lead_schema=lead_schema)
    if problems:
        raise DefinitionError(problems, source)
    return definition


# Compiling ----------------------------------------------------------------------------------------
def compile_definition(definition: Definition, version: int = 0) -> CompiledDefinition:
    """What the interpreter receives: the nodes' ids and knobs (no PII, no prose)."""
    return CompiledDefinition(
        key=definition.key,
        version=version,
        name=definition.name,
        goals=list(definition.goals),
        start=definition.first,
        nodes=[_compile(n) for n in definition.nodes],
        exclude=list(definition.rules.exclude),
    )


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
        case "checkpoint":
            c.next, c.name = node.next, node.name
        case "goal":
            c.goal = node.goal
        case "redirect":
            c.journey = node.journey
    return c


def compiled_input(definition: CompiledDefinition) -> dict[str, Any]:
    """The compiled definition as the workflow input's JSON (Temporal decodes it on the worker)."""
    return asdict(definition)


# The command line: python -m relance journeys check FILE... ---------------------------------------
def check_files(
    paths: list[Path], templates_dir: Path = TEMPLATES_DIR, lead_schema: LeadSchema | None = None
) -> list[str]:
    """One line per problem, "<file>: node <id>: <what>"; none: every file may be published.
    ``lead_schema``: the custom events waits may name (None: RELANCE_LEAD_SCHEMA_FILE's)."""
    templates = known_templates(templates_dir)
    if lead_schema is None:
        lead_schema = Settings(_env_file=None).lead_schema()
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
