"""Loops between journeys (seed 004, "redirection vers un autre scénario"): which journey may
enroll a lead into which, checked twice.

- At worker start, the declared graph ("A may enroll into B") is searched for cycles. A cycle in
  which no link carries a guard (a condition that stops it: once per lead, a cooldown...) would
  trap a lead for ever: the worker refuses to start and names the cycle.
- At run time, every enrollment carries the chain of journeys that led to it. Enrolling into a
  journey already in the chain, or deeper than ``max_depth``, is refused and recorded.

Pure: no clock, no I/O (journeys call ``chain_refusal`` from workflow code).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_DEPTH = 3


@dataclass(frozen=True)
class Link:
    source: str
    target: str
    guard: str = ""  # what stops a loop through this link ("" = nothing)


class JourneyGraphError(ValueError):
    pass


def unguarded_cycles(links: list[Link]) -> list[list[str]]:
    """Every elementary cycle (as journey names, first repeated last) whose links all lack a guard."""
    graph: dict[str, list[str]] = {}
    for link in links:
        if not link.guard:
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


def check_graph(links: list[Link]) -> None:
    """Raise JourneyGraphError naming the first cycle without a guard."""
    cycles = unguarded_cycles(links)
    if cycles:
        named = "; ".join(" -> ".join(c) for c in cycles)
        raise JourneyGraphError(
            f"journeys enroll each other in a loop with no guard: {named} "
            "(give one link a guard, or remove it)"
        )


def chain_refusal(chain: list[str], target: str, max_depth: int = DEFAULT_MAX_DEPTH) -> str:
    """Why enrolling into ``target`` after ``chain`` (the journeys that led here, this one last)
    is refused; "" when it is allowed."""
    if target in chain:
        return f"enrolling into {target} would loop: {' -> '.join([*chain, target])}"
    if len(chain) >= max_depth:
        return f"enrolling into {target} would exceed the depth of {max_depth}: {' -> '.join([*chain, target])}"
    return ""
