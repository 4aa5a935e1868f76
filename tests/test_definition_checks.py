"""Definitions are checked before they ship (relance/services/definitions.py): a corpus of bad
definitions, each answered with the node at fault and what is wrong; the command line CI runs;
the experiment's assignment, sticky and on its percentages."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
import yaml

from api.main import create_app
from relance.contracts.definitions import CompiledArm, assign_arm
from relance.domain.definitions import json_schema
from relance.domain.lead_schema import load_lead_schema
from relance.domain.topics import topics_from
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
TOPICS = topics_from(ROOT / "config" / "topics.yaml")


def journey(*nodes: dict, key: str = "bad", **fields) -> dict:
    return {
        "key": key,
        "name": "a bad journey",
        "topic": "newsletter",
        "nodes": list(nodes),
        **fields,
    }


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
    (
        "a redirect to a coded scenario, which takes no new leads",
        journey({"id": "on", "type": "redirect", "journey": "scenario-white_paper"}),
        "on",
        "which takes no new leads: redirect to newsletter_white_paper",
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
    # Topics, switches, attributes set, delays until a date attribute
    (
        "a marketing message about no topic",
        journey(MAIL, EXIT, topic=None),
        "mail",
        "a marketing message is about a topic: name one",
    ),
    (
        "a message about a topic the topics file does not declare",
        journey({**MAIL, "topic": "gossip"}, EXIT),
        "mail",
        "its topic 'gossip' is not declared in the topics file (declared: newsletter, events",
    ),
    (
        "a definition's topic the topics file does not declare",
        journey(MAIL, EXIT, topic="gossip"),
        "mail",
        "its topic 'gossip' (the definition's) is not declared in the topics file",
    ),
    (
        "a switch case left without an edge",
        journey({"id": "tier", "type": "switch", "cases": [
            {"if": {"score": {"gte": 50}}, "next": "done"}, {"if": {"consent": "sms"}}],
            "default": "done"}, EXIT),
        "tier",
        "its case 2 branch leads nowhere",
    ),
    (
        "a switch case to no node",
        journey({"id": "tier", "type": "switch", "cases": [
            {"if": {"score": {"gte": 50}}, "next": "hot"}], "default": "done"}, EXIT),
        "tier",
        "its case 1 edge goes to no node: 'hot'",
    ),
    (
        "a switch case that never ends",
        journey(
            {"id": "tier", "type": "switch", "cases": [
                {"if": {"score": {"gte": 50}}, "next": "done"},
                {"if": {"score": {"gte": 20}}, "next": "pause"}], "default": "done"},
            {"id": "pause", "type": "delay", "duration": "1d", "next": "again"},
            {**MAIL, "id": "again", "next": "pause"},
            EXIT,
        ),
        "pause",
        "no path from it reaches an end",
    ),
    (
        "a switch without a default",
        journey({"id": "tier", "type": "switch", "cases": [
            {"if": {"score": {"gte": 50}}, "next": "done"}]}, EXIT),
        "tier",
        "its default branch leads nowhere",
    ),
    (
        "a switch case on an attribute the lead schema lacks",
        journey({"id": "tier", "type": "switch", "cases": [
            {"if": {"attribute": {"name": "shoe", "op": "exists"}}, "next": "done"}],
            "default": "done"}, EXIT),
        "tier",
        "its case 1 at attribute: no attribute",
    ),
    (
        "a switch with no case",
        journey({"id": "tier", "type": "switch", "cases": [], "default": "done"}, EXIT),
        "tier",
        "cases",
    ),
    (
        "an update setting an attribute the lead schema lacks",
        journey({"id": "up", "type": "update", "set": {"shoe_size": 42}, "next": "done"}, EXIT),
        "up",
        "its set of 'shoe_size': no such attribute",
    ),
    (
        "an update setting a number attribute to a string",
        journey({"id": "up", "type": "update", "set": {"company_size": "big"}, "next": "done"},
                EXIT),
        "up",
        "its set of 'company_size': expected a number",
    ),
    (
        "an update setting an enum attribute to a value it does not allow",
        journey({"id": "up", "type": "update", "set": {"plan": "gold"}, "next": "done"}, EXIT),
        "up",
        "its set of 'plan': expected one of free, starter, pro, enterprise",
    ),
    (
        "an update setting a date attribute to no date",
        journey({"id": "up", "type": "update", "set": {"renewal_date": "next spring"},
                 "next": "done"}, EXIT),
        "up",
        "its set of 'renewal_date': expected a date as YYYY-MM-DD",
    ),
    (
        "a delay until an attribute the lead schema lacks",
        journey({"id": "before", "type": "delay", "until_date": {"attribute": "renewal"},
                 "next": "done"}, EXIT),
        "before",
        "it waits until 'renewal', which is no attribute of the lead schema",
    ),
    (
        "a delay until an attribute that is no date",
        journey({"id": "before", "type": "delay", "until_date": {"attribute": "plan"},
                 "next": "done"}, EXIT),
        "before",
        "it waits until 'plan', whose type is enum, not date",
    ),
    (
        "a delay until a date and for a duration",
        journey({"id": "before", "type": "delay", "duration": "1d",
                 "until_date": {"attribute": "renewal_date"}, "next": "done"}, EXIT),
        "before",
        "a delay until a date attribute has no duration and no until",
    ),
]  # fmt: skip
NEW_NODES = CORPUS[CORPUS.index(next(c for c in CORPUS if c[0].startswith("a marketing"))) :]


@pytest.mark.parametrize("data,node,words", [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_each_bad_definition_is_answered_with_the_node_and_what_is_wrong(data, node, words):
    with pytest.raises(DefinitionError) as raised:
        checked(data, templates=TEMPLATES, lead_schema=LEAD_SCHEMA, topics=TOPICS)
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
        "goal", "exit", "redirect", "switch", "task", "webhook",
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


@pytest.mark.parametrize(
    "data,node,words", [c[1:] for c in NEW_NODES], ids=[c[0] for c in NEW_NODES]
)
async def test_a_bad_topic_switch_update_or_date_delay_is_refused_422_at_check_and_at_publish(
    settings, data, node, words
):
    """The API's check and the draft (checked as publishing checks it) answer alike, naming the
    node; nothing is stored."""
    app = create_app(settings)
    data = {**data, "key": f"bad_{uuid.uuid4().hex[:10]}"}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app),
            base_url="http://testserver",
            headers={"X-API-Key": settings.api_key},
        ) as api,
    ):
        checked_ = await api.post("/journeys/check", json=data)
        drafted = await api.post("/journeys", json=data)
        stored = await api.get(f"/journeys/{data['key']}")
    for answer in (checked_, drafted):
        assert answer.status_code == 422, answer.text
        assert any(
            p["loc"] == ["body", "nodes", node] and words in p["msg"]
            for p in answer.json()["detail"]
        ), answer.json()
    assert stored.status_code == 404


def test_a_switch_reached_by_every_case_passes_and_compiles_its_cases_in_order():
    data = journey(
        {"id": "tier", "type": "switch", "cases": [
            {"if": {"score": {"gte": 50}}, "next": "hot"},
            {"if": {"segment": "warm"}, "next": "warm"}], "default": "done"},
        {"id": "hot", "type": "update", "set": {"plan": "pro"}, "next": "done"},
        {"id": "warm", "type": "delay", "until_date": {"attribute": "renewal_date",
         "offset_days": -30}, "next": "done"},
        EXIT,
    )  # fmt: skip
    definition = checked(data, templates=TEMPLATES, lead_schema=LEAD_SCHEMA, topics=TOPICS)
    nodes = {n.id: n for n in compile_definition(definition).nodes}
    assert [(c.test, c.next) for c in nodes["tier"].cases] == [
        ({"score": {"gte": 50}}, "hot"),
        ({"segment": ["warm"]}, "warm"),  # one value or a list: a list
    ]
    assert nodes["tier"].otherwise == "done"
    assert nodes["hot"].attributes == {"plan": "pro"}
    assert (nodes["warm"].date_attribute, nodes["warm"].offset_days) == ("renewal_date", -30)
    assert nodes["warm"].until_time == "09:00"


def test_a_message_inherits_the_definitions_topic_and_a_transactional_one_needs_none():
    data = journey(
        {**MAIL, "next": "receipt"},
        {**MAIL, "id": "receipt", "kind": "transactional", "next": "offer"},
        {**MAIL, "id": "offer", "topic": "offers"},
        EXIT,
        topic="product",
    )
    nodes = {n.id: n for n in compile_definition(checked(data, topics=TOPICS)).nodes}
    assert (nodes["mail"].topic, nodes["receipt"].topic, nodes["offer"].topic) == (
        "product",
        "",
        "offers",
    )
    transactional = journey({**MAIL, "kind": "transactional"}, EXIT, topic=None)
    assert check(parse(transactional), topics=TOPICS) == []
