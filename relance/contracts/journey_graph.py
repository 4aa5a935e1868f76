"""Loops between journeys (a scenario that redirects the lead into another scenario): which
journey may enroll a lead into which, checked twice.

- At worker start, the declared graph ("A may enroll into B") is searched for cycles. A cycle in
  which no link carries a guard that holds would trap a lead for ever: the worker refuses to start
  and names the cycle. A guard is one of ``GUARDS``, a condition the redirect enforces at run time
  and the start checks against the target's enrollment rules; any other text is a start-up error.
- At run time, every enrollment carries the chain of journeys that led to it. Enrolling into a
  journey already in the chain, or deeper than ``max_depth``, is refused and recorded; so are the
  target's own rules (once per lead, cooldown, exclusions).

Pure: no clock, no I/O (journeys call ``chain_refusal`` from workflow code).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_MAX_DEPTH = 3

# The guards: what stops a loop through a link.
CAME_FROM = "came_from"
ONCE = "once"
COOLDOWN = "cooldown"
GUARDS = {
    # Every redirect carries the chain and refuses a target already in it (``chain_refusal``).
    CAME_FROM: "never back into a journey the lead came from (the enrollment chain)",
    # The redirect applies the target's rules: holds when the target allows no re-enrollment.
    ONCE: "the target takes a lead once (its rules allow no re-enrollment)",
    # Holds when the target's cooldown is longer than zero: a lead goes round at most once per
    # cooldown, and the depth of the chain ends it.
    COOLDOWN: "the target's cooldown keeps a lead who left it out for a while",
}


@dataclass(frozen=True)
class TargetRules:
    """What a guard needs to know of the target's enrollment rules."""

    reenroll: bool
    cooldown_days: float  # resolved: the journey's own, else RELANCE_REENROLL_COOLDOWN_DAYS


@dataclass(frozen=True)
class Link:
    source: str
    target: str
    guard: str = ""  # what stops a loop through this link: one of GUARDS ("" = nothing)


class JourneyGraphError(ValueError):
    pass


RulesOf = Callable[[str], TargetRules]


def guard_problem(link: Link, rules_of: RulesOf | None = None) -> str:
    """Why the link's guard does not stop a loop ("" when it does); a link without one: "none"."""
    if not link.guard:
        return "none"
    where = f"{link.source} -> {link.target}"
    if link.guard not in GUARDS:
        known = ", ".join(f"{name!r} ({what})" for name, what in GUARDS.items())
        raise JourneyGraphError(
            f"unknown guard {link.guard!r} on {where}; a guard is one of {known}"
        )
    if link.guard == CAME_FROM:
        return ""
    if rules_of is None:
        return f"the {link.guard} guard on {where} needs the target's rules to be checked"
    rules = rules_of(link.target)
    if not rules.reenroll:
        return ""
    if link.guard == ONCE:
        return f"the once guard on {where} does not hold: {link.target} allows re-enrollment"
    if rules.cooldown_days <= 0:
        return f"the cooldown guard on {where} does not hold: {link.target} has no cooldown"
    return ""


def unguarded_cycles(links: list[Link], rules_of: RulesOf | None = None) -> list[list[str]]:
    """Every elementary cycle (as journey names, first repeated last) whose links all lack a
    guard that holds."""
    graph: dict[str, list[str]] = {}
    for link in links:
        if guard_problem(link, rules_of):
            graph.setdefault(link.source, []).append(link.target)
    cycles: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in graph.get(node, []):
            if nxt == start:
                key = _canonical(path)
                if key not in seen:
                    seen.add(key)
                    cycles.append([*path, start])
            elif nxt not in path:
                walk(start, nxt, [*path, nxt])

    for start in sorted(graph):
        walk(start, start, [start])
    return cycles


def _canonical(path: list[str]) -> tuple[str, ...]:
    i = path.index(min(path))
    return tuple(path[i:] + path[:i])


def check_graph(links: list[Link], rules_of: RulesOf | None = None) -> None:
    """Raise JourneyGraphError naming every cycle without a guard that holds (and why the guards
    on it do not), or an unknown guard."""
    cycles = unguarded_cycles(links, rules_of)
    if cycles:
        named = "; ".join(" -> ".join(c) for c in cycles)
        on_cycles = {(a, b) for c in cycles for a, b in zip(c, c[1:], strict=False)}
        why = [
            problem
            for link in links
            if (link.source, link.target) in on_cycles
            and (problem := guard_problem(link, rules_of)) != "none"
        ]
        raise JourneyGraphError(
            f"journeys enroll each other in a loop with no guard: {named} "
            + (f"({'; '.join(why)}) " if why else "")
            + f"(give one link a guard: {', '.join(GUARDS)}; or remove it)"
        )


def chain_refusal(chain: list[str], target: str, max_depth: int = DEFAULT_MAX_DEPTH) -> str:
    """Why enrolling into ``target`` after ``chain`` (the journeys that led here, this one last)
    is refused; "" when it is allowed."""
    if target in chain:
        return f"enrolling into {target} would loop: {' -> '.join([*chain, target])}"
    if len(chain) >= max_depth:
        return (
            f"enrolling into {target} would exceed the depth of {max_depth}: "
            f"{' -> '.join([*chain, target])}"
        )
    return ""
