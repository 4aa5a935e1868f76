"""The layers hold: api and worker.py on top, then journeys (workflows/) and activities/ (which
never import each other), then relance.services, relance.contracts and relance.domain at the
bottom; relance.dev apart, imported by nothing in the product; no import circle anywhere.

The contracts are import-linter's (``[tool.importlinter]`` in pyproject.toml); this runs them
like CI does, and checks what import-linter cannot take: worker.py (a top-level module, not a
package), a submodule of an external package (``temporalio.client``), and the workflow sandbox as
it really loads modules. Function-level imports count everywhere: they hide circles.
"""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import grimp
from sqlmodel import create_engine
from temporalio import activity

import relance.contracts
from activities import build_activities
from relance.domain.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PRODUCT_PACKAGES = ("relance", "workflows", "activities", "api")


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function (absolute imports only: the
    project uses no relative ones)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_import_contracts_hold():
    """lint-imports from this venv, without its cache: a broken contract shows its import chain."""
    run = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout, run.stdout


def import_circles() -> list[list[str]]:
    """The strongly connected sets of more than one module in the product's import graph
    (grimp, import-linter's graph: function-level imports included). worker.py is not in the
    graph: nothing in the product imports it (an import-linter contract), so it closes no circle."""
    graph = grimp.build_graph(*PRODUCT_PACKAGES, cache_dir=None)
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []
    for root in sorted(edges):  # Tarjan's algorithm, iterative (no recursion limit)
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    circles.append(sorted(component))
    return circles


def test_no_import_circle():
    assert import_circles() == []


def test_worker_py_imports_no_dev_tool_test_or_bench_module():
    """worker.py is on top with the API: it may import any layer, but not the dev tools, the
    tests or the benchmarks (import-linter cannot take a top-level module)."""
    wrong = {
        m
        for m in imports_of(ROOT / "worker.py")
        if any(under(m, p) for p in ("relance.dev", "tests", "bench"))
    }
    assert wrong == set()


def test_domain_and_contracts_do_not_import_the_temporal_client():
    """Starting or signalling workflows is for services and above; the bottom layers may use
    Temporal's converter and common types only (import-linter forbids external packages whole)."""
    wrong = {}
    for folder in ("relance/domain", "relance/contracts"):
        for path in sorted((ROOT / folder).glob("*.py")):
            bad = {m for m in imports_of(path) if under(m, "temporalio.client")}
            if bad:
                wrong[str(path.relative_to(ROOT))] = sorted(bad)
    assert wrong == {}


def test_journey_modules_load_no_activity_implementation_nor_heavy_library():
    """What the workflow sandbox loads with each journey (package __init__ files included, which
    import-linter's graph does not follow): contracts and domain types only."""
    code = (
        "import importlib, json, pkgutil, sys, workflows\n"
        "for m in pkgutil.iter_modules(workflows.__path__):\n"
        "    importlib.import_module('workflows.' + m.name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    loaded = json.loads(run.stdout)
    heavy = ("activities", "api", "relance.services", "sqlalchemy", "sqlmodel", "smtplib", "httpx")
    assert [m for m in loaded if any(under(m, h) for h in heavy)] == []


def contract_stubs() -> dict[str, activity._Definition]:
    stubs = {}
    for info in pkgutil.iter_modules(relance.contracts.__path__):
        module = importlib.import_module(f"relance.contracts.{info.name}")
        for value in vars(module).values():
            definition = activity._Definition.from_callable(value) if callable(value) else None
            if definition is not None and value.__module__ == module.__name__:
                stubs[definition.name] = definition
    return stubs


def test_every_activity_the_worker_runs_has_its_contract_with_the_same_types():
    """Journeys call activities through the stubs in relance/contracts: each must name an
    activity the worker registers, with the same argument and result types (the result type is
    what the journey decodes the answer into)."""
    settings = Settings(_env_file=None, secret_key="only-to-build-the-activities")
    implementations = {
        d.name: d
        for d in map(
            activity._Definition.must_from_callable,
            build_activities(settings, create_engine("sqlite://")),
        )
    }
    stubs = contract_stubs()
    assert sorted(stubs) == sorted(implementations)
    for name, stub in stubs.items():
        real = implementations[name]
        assert (stub.arg_types, stub.ret_type) == (real.arg_types, real.ret_type), name


def test_benchmarks_and_history_recorders_seed_through_the_package_not_test_modules():
    """bench/ and tests/histories/record*.py take their seeding helpers from relance.dev.seeding:
    a test module's fixtures and copies stay the tests' own to change."""
    wrong = {}
    for path in sorted((ROOT / "bench").glob("*.py")):
        bad = {m for m in imports_of(path) if under(m, "tests")}
        if bad:
            wrong[str(path.relative_to(ROOT))] = sorted(bad)
    for path in sorted((ROOT / "tests" / "histories").glob("record*.py")):
        # the recorders' own harness and the test suite's waiting helpers are theirs to use
        bad = {
            m
            for m in imports_of(path)
            if under(m, "tests")
            and not any(under(m, ok) for ok in ("tests.histories", "tests.waiting"))
        }
        if bad:
            wrong[str(path.relative_to(ROOT))] = sorted(bad)
    assert wrong == {}
