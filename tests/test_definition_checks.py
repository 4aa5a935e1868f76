"""Definitions are checked before they ship (relance/services/definitions.py): a corpus of bad
definitions, each answered with the node at fault and what is wrong; the command line CI runs;
the experiment's assignment, sticky and on its percentages."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest
import yaml

from api.main import create_app
from relance.contracts.definitions import CompiledArm, assign_arm
from relance.domain.definitions import json_schema
from relance.domain.lead_schema import load_lead_schema
from relance.services.definitions import (
    DefinitionError,
    check,
    check_files,
    checked,
    compile_definition,
    known_templates,
    parse,
)

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = known_templates()
LEAD_SCHEMA = load_lead_schema(ROOT / "config" / "lead_schema.yaml")


def journey(*nodes: dict, key: str = "bad", **fields) -> dict:
    return {"key": key, "name": "a bad journey", "nodes": list(nodes), **fields}


EXIT = {"id": "done", "type": "exit"}
MAIL = {"id": "mail", "type": "message", "template": "nurture_white_paper", "next": "done"}

# (what is wrong, the definition, the node named, words of the problem)
CORPUS = [
    (
        "an edge to no node",
        journey({**MAIL, "next": "nowhere"}, EXIT),
        "mail",
        "its next edge goes to no node: 'nowhere'",
    ),
    (
        "a node no path reaches",
        journey(MAIL, EXIT, {"id": "orphan", "type": "exit"}),
        "orphan",
        "no path from the start reaches it",
    ),
    (
        "a branch left without an edge",
        journey(
            {"id": "fit", "type": "condition", "if": {"consent": "sms"}, "then": "done"}, EXIT
        ),
        "fit",
        "its else branch leads nowhere",
    ),
    (
        "a branch that never ends",
        journey(
            {"id": "pause", "type": "delay", "duration": "1d", "next": "again"},
            {**MAIL, "id": "again", "next": "pause"},
            {"id": "fit", "type": "condition", "if": {"consent": "sms"}, "then": "pause",
             "else": "done"},
            EXIT,
            start="fit",
        ),
        "pause",
        "no path from it reaches an end",
    ),
    (
        "a cycle with no wait in it",
        journey(
            {"id": "tag", "type": "update", "add_to_list": "x", "next": "fit"},
            {"id": "fit", "type": "condition", "if": {"in_list": "y"}, "then": "tag",
             "else": "done"},
            EXIT,
        ),
        "tag",
        "it loops with no delay or wait: tag -> fit -> tag",
    ),
    (
        "experiment percentages not summing to 100",
        journey(
            {"id": "ab", "type": "experiment", "arms": [
                {"name": "a", "percent": 50, "next": "done"},
                {"name": "b", "percent": 30, "next": "done"}]},
            EXIT,
        ),
        "ab",
        "its arms and holdout sum to 80 %, not 100 %",
    ),
    (
        "a missing template",
        journey({**MAIL, "template": "no_such_template"}, EXIT),
        "mail",
        "no template 'no_such_template' for email (templates/email/no_such_template.jinja)",
    ),
    (
        "a missing template for one of the best channels",
        journey({**MAIL, "channel": "best", "channels": ["sms", "email"]}, EXIT),
        "mail",
        "no template 'nurture_white_paper' for sms",
    ),
    (
        "a wait for the click of a node that is no message",
        journey(
            {"id": "click", "type": "wait_for", "event": "clicked", "message": "done",
             "within": "1d", "then": "done", "timeout": "done"},
            EXIT,
        ),
        "click",
        "it waits for the clicked of 'done', which is no message node",
    ),
    (
        "two nodes with one id",
        journey(MAIL, EXIT, {"id": "done", "type": "exit"}),
        "done",
        "two nodes have this id",
    ),
    (
        "a redirect to itself with no guard",
        journey({"id": "again", "type": "redirect", "journey": "bad", "guard": ""}),
        "again",
        "its redirect loops between journeys with no guard that holds: bad -> bad",
    ),
    # Shapes pydantic refuses, named by node as well
    (
        "an unknown node type",
        journey({"id": "jump", "type": "teleport"}, EXIT),
        "jump",
        "type",
    ),
    (
        "a delay with neither a duration nor an until",
        journey({"id": "pause", "type": "delay", "next": "done"}, EXIT),
        "pause",
        "a delay has a duration or an until, not both",
    ),
    (
        "a bad duration",
        journey({"id": "pause", "type": "delay", "duration": "soon", "next": "done"}, EXIT),
        "pause",
        "duration",
    ),
    (
        "a condition of two facts at once",
        journey(
            {"id": "fit", "type": "condition", "if": {"consent": "sms", "in_list": "x"},
             "then": "done", "else": "done"},
            EXIT,
        ),
        "fit",
        "a condition is exactly one of",
    ),
    (
        "a wait for a signal without its name",
        journey({"id": "w", "type": "wait_for", "event": "signal", "within": "1d",
                 "then": "done", "timeout": "done"}, EXIT),
        "w",
        "waiting for a signal names it",
    ),
    (
        "a message whose template needs what its message does not have",
        journey({**MAIL, "template": "event_reminder_day"}, EXIT),
        "mail",
        "its template event_reminder_day needs event, which a defined journey's message does not",
    ),
    (
        "a wait for an event the lead schema does not declare",
        journey({"id": "w", "type": "wait_for", "event": "signal", "signal": "trial_startd",
                 "within": "1d", "then": "done", "timeout": "done"}, EXIT),
        "w",
        "it waits for 'trial_startd', which is no signal of Relance and no custom event of the "
        "lead schema (its events: ",
    ),
    (
        "an unknown exclusion rule",
        journey(MAIL, EXIT, rules={"exclude": ["martians"]}),
        None,
        "unknown exclusion rule 'martians'",
    ),
]  # fmt: skip


@pytest.mark.parametrize("data,node,words", [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_each_bad_definition_is_answered_with_the_node_and_what_is_wrong(data, node, words):
    with pytest.raises(DefinitionError) as raised:
        checked(data, templates=TEMPLATES, lead_schema=LEAD_SCHEMA)
    problems = raised.value.problems
    assert any(p.node == node and words in p.what for p in problems), [str(p) for p in problems]


def test_a_redirect_loop_across_journeys_names_the_redirect_and_a_guard_ends_it():
    a = journey({"id": "to_b", "type": "redirect", "journey": "b", "guard": ""}, key="a")
    b = journey({"id": "to_a", "type": "redirect", "journey": "a", "guard": ""}, key="b")
    [problem] = check(parse(a), others=[parse(b)])
    assert problem.node == "to_b" and "a -> b -> a" in problem.what
    guarded = journey({"id": "to_a", "type": "redirect", "journey": "a"}, key="b")  # came_from
    assert check(parse(a), others=[parse(guarded)]) == []


GOOD = Path(__file__).parent / "definitions" / "webinar.yaml"


def test_a_good_definition_passes_and_compiles_to_ids_and_knobs():
    definition = checked(yaml.safe_load(GOOD.read_text()), templates=TEMPLATES)
    compiled = compile_definition(definition, version=2)
    assert compiled.start == "invite" and compiled.version == 2
    assert {n.type for n in compiled.nodes} >= {
        "message", "wait_for", "condition", "experiment", "checkpoint", "update", "delay", "exit"
    }  # fmt: skip
    assert "description" not in json.dumps(compiled.__dict__, default=lambda o: o.__dict__)


def test_the_command_line_checks_files_and_fails_on_a_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(CORPUS[0][1]))
    run = subprocess.run(
        [sys.executable, "-m", "relance", "journeys", "check", str(GOOD), str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert run.stdout.strip() == f"{bad}: node mail: its next edge goes to no node: 'nowhere'"
    good = subprocess.run(
        [sys.executable, "-m", "relance", "journeys", "check", str(GOOD)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert good.returncode == 0, good.stdout


def test_the_json_schema_describes_every_node_type():
    schema = json_schema()
    node_types = set()
    for definition in schema["$defs"].values():
        kind = definition.get("properties", {}).get("type", {}).get("const")
        if kind:
            node_types.add(kind)
    assert node_types == {
        "message", "delay", "wait_for", "condition", "experiment", "update", "checkpoint",
        "goal", "exit", "redirect",
    }  # fmt: skip


# The experiment's assignment ------------------------------------------------------------------
def test_an_experiment_splits_2000_leads_within_2_percent_of_its_percentages():
    arms = [CompiledArm("a", 50), CompiledArm("b", 30), CompiledArm("hold", 20)]
    leads = [f"lead-{i:05d}" for i in range(2000)]
    counts = Counter(assign_arm("webinar", "subject", lead, arms).name for lead in leads)
    for arm in arms:
        assert abs(counts[arm.name] / 2000 * 100 - arm.percent) <= 2, counts
    # Sticky: the same lead, the same arm, every time (replay, re-entry, another worker).
    again = Counter(assign_arm("webinar", "subject", lead, arms).name for lead in leads)
    assert again == counts
    # Another experiment (or journey) draws apart: not the same leads in its first arm.
    other = {lead for lead in leads if assign_arm("webinar", "cta", lead, arms).name == "a"}
    first = {lead for lead in leads if assign_arm("webinar", "subject", lead, arms).name == "a"}
    assert 0.4 < len(other & first) / len(first) < 0.6


# Through the API ----------------------------------------------------------------------------------
async def test_the_api_serves_the_schema_and_answers_a_bad_definition_422_naming_the_node(
    settings,
):
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app),
            base_url="http://testserver",
            headers={"X-API-Key": settings.api_key},
        ) as api,
    ):
        schema = await api.get("/journeys/schema")
        bad = await api.post("/journeys/check", json=CORPUS[5][1])  # experiment percentages
        good = await api.post("/journeys/check", json=yaml.safe_load(GOOD.read_text()))
    assert schema.json()["title"] == "Relance journey definition"
    assert bad.status_code == 422
    [problem] = bad.json()["detail"]
    assert problem["loc"] == ["body", "nodes", "ab"]
    assert problem["msg"] == "node ab: its arms and holdout sum to 80 %, not 100 %"
    assert good.status_code == 200 and good.json() == {
        "key": "webinar_followup",
        "nodes": 11,
        "problems": [],
    }


def test_every_definition_shipped_with_the_tests_passes_the_check():
    """The examples the README points to (the webinar follow-ups, the welcome as data) are
    definitions one may publish: their templates exist and need nothing a message lacks, their
    waits name real events."""
    files = sorted((ROOT / "tests" / "definitions").glob("*.yaml"))
    assert {f.name for f in files} >= {
        "webinar.yaml",
        "webinar_replay.yaml",
        "welcome_as_data.yaml",
    }
    assert check_files(files, lead_schema=LEAD_SCHEMA) == []


async def test_a_condition_on_an_attribute_the_lead_schema_lacks_is_refused_at_check(settings):
    """Journey conditions speak the segments' rule language and are checked the same way."""
    definition = journey(
        {
            "id": "fit",
            "type": "condition",
            "if": {"all": [{"consent": "email"}, {"attribute": {"name": "shoe", "op": "exists"}}]},
            "then": "done",
            "else": "done",
        },
        EXIT,
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app),
            base_url="http://testserver",
            headers={"X-API-Key": settings.api_key},
        ) as api,
    ):
        answer = await api.post("/journeys/check", json=definition)
    assert answer.status_code == 422, answer.text
    [problem] = answer.json()["detail"]
    assert problem["loc"] == ["body", "nodes", "fit"]
    assert problem["msg"].startswith("node fit: its condition at all[1].attribute: no attribute")
