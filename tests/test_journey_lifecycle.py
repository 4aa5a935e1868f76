"""Journeys as data through the API: drafts, published versions, pause / resume / archive, and
the leads enrolled into them (the real API over the test database, a worker on the
time-skipping server, the mail sink)."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from sqlmodel import Session, select

from api.main import create_app
from relance.contracts.catalogue import SCENARIOS
from relance.domain.lists import add_member
from relance.domain.models import Message
from relance.services import migrate
from relance.services.definitions import check_files
from relance.services.journey_store import load_dir
from tests.conftest import LiveStack
from tests.test_api_cart_e2e import purchase_event
from tests.test_api_welcome_e2e import new_email, sign_up_body
from tests.waiting import eventually, finished
from workflows.scenario import ScenarioInput, ScenarioJourney, ScenarioOutcome

ROOT = Path(__file__).resolve().parent.parent
EXIT = {"id": "done", "type": "exit"}


def definition(key: str | None = None, *nodes: dict, **fields) -> dict:
    """A definition with a key of its own (each test's journeys apart): one email and an exit."""
    nodes = nodes or (
        {"id": "paper", "type": "message", "template": "nurture_white_paper", "next": "done"},
        EXIT,
    )
    return {
        "key": key or f"t_{uuid.uuid4().hex[:10]}",
        "name": "Lifecycle test",
        "topic": "newsletter",
        "nodes": list(nodes),
        **fields,
    }


# Drafts ------------------------------------------------------------------------------------------
async def test_a_draft_is_created_read_listed_and_replaced(api):
    data = definition()
    key = data["key"]
    created = await api.post("/journeys", json=data)
    assert created.status_code == 201, created.text
    assert created.json() | {"created_at": None, "updated_at": None} == {
        "key": key,
        "kind": "defined",
        "name": "Lifecycle test",
        "status": "draft",
        "version": None,
        "draft_changed": True,
        "replaced_by": None,
        "created_at": None,
        "updated_at": None,
        "draft": data,
    }
    renamed = {**data, "name": "Renamed"}
    replaced = await api.put(f"/journeys/{key}", json=renamed)
    assert replaced.status_code == 200 and replaced.json()["draft"]["name"] == "Renamed"
    assert (await api.get(f"/journeys/{key}")).json()["name"] == "Renamed"
    listed = {j["key"]: j for j in (await api.get("/journeys")).json()}
    assert listed["welcome"] == {
        "key": "welcome",
        "kind": "coded",
        "name": "welcome",
        "status": "published",
        "version": None,
        "draft_changed": None,
        "replaced_by": None,
        "created_at": None,
        "updated_at": None,
    }
    assert (listed[key]["kind"], listed[key]["status"]) == ("defined", "draft")
    # the routes of the definition's checks are not keys
    assert (await api.get("/journeys/schema")).json()["title"] == "Relance journey definition"
    assert (await api.post("/journeys/check", json=data)).status_code == 200


async def test_a_bad_draft_is_refused_422_naming_the_node_and_nothing_is_stored(api):
    data = definition(
        None,
        {"id": "paper", "type": "message", "template": "nurture_white_paper", "next": "nowhere"},
        EXIT,
    )
    response = await api.post("/journeys", json=data)
    assert response.status_code == 422
    assert {"loc": ["body", "nodes", "paper"], "type": "value_error"}.items() <= response.json()[
        "detail"
    ][0].items()
    assert "node paper: its next edge goes to no node: 'nowhere'" in [
        p["msg"] for p in response.json()["detail"]
    ]
    assert (await api.get(f"/journeys/{data['key']}")).status_code == 404
    # a bad replacement leaves the draft as it was
    good = definition()
    await api.post("/journeys", json=good)
    bad = {**good, "nodes": [{**good["nodes"][0], "template": "no_such_template"}, EXIT]}
    refused = await api.put(f"/journeys/{good['key']}", json=bad)
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "nodes", "paper"]
    assert "no template 'no_such_template' for email" in refused.json()["detail"][0]["msg"]
    assert (await api.get(f"/journeys/{good['key']}")).json()["draft"] == good


async def test_a_key_taken_or_a_coded_journeys_is_refused_409(api):
    data = definition()
    assert (await api.post("/journeys", json=data)).status_code == 201
    again = await api.post("/journeys", json={**data, "name": "another"})
    assert again.status_code == 409 and "exists" in again.json()["detail"]
    for coded in ("welcome", "nurture", "scenario", "reengage", "schema"):
        response = await api.post("/journeys", json=definition(coded))
        assert response.status_code == 409, coded
        assert "coded journey" in response.json()["detail"]
    other = definition()
    moved = await api.put(f"/journeys/{data['key']}", json=other)  # a body of another key
    assert moved.status_code == 422 and "is not" in moved.json()["detail"][0]["msg"]
    missing = definition()
    assert (await api.put(f"/journeys/{missing['key']}", json=missing)).status_code == 404


async def test_two_creates_of_one_key_at_once_make_one_journey(api):
    data = definition()
    answers = await asyncio.gather(*(api.post("/journeys", json=data) for _ in range(4)))
    assert sorted(a.status_code for a in answers) == [201, 409, 409, 409]


# Publishing ------------------------------------------------------------------------------------
async def test_publishing_makes_immutable_versions_and_an_unchanged_draft_publishes_nothing(api):
    data = definition()
    key = data["key"]
    await api.post("/journeys", json=data)
    first = await api.post(f"/journeys/{key}/publish")
    assert first.status_code == 201, first.text
    assert (first.json()["version"], first.json()["created"]) == (1, True)
    same = await api.post(f"/journeys/{key}/publish")
    assert same.status_code == 200 and same.json() == {**first.json(), "created": False}
    # the same content written another way is the same version
    rewritten = {**data, "nodes": [*data["nodes"]], "rules": {}, "goals": []}
    await api.put(f"/journeys/{key}", json=rewritten)
    assert (await api.post(f"/journeys/{key}/publish")).json()["version"] == 1

    changed = {**data, "nodes": [{**data["nodes"][0], "template": "nurture_case_study"}, EXIT]}
    await api.put(f"/journeys/{key}", json=changed)
    state = (await api.get(f"/journeys/{key}")).json()
    assert (state["status"], state["version"], state["draft_changed"]) == ("published", 1, True)
    second = await api.post(f"/journeys/{key}/publish")
    assert (second.status_code, second.json()["version"]) == (201, 2)
    versions = (await api.get(f"/journeys/{key}/versions")).json()
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[0] == {k: v for k, v in first.json().items() if k != "created"}
    assert versions[0]["body"]["nodes"][0]["template"] == "nurture_white_paper"
    assert versions[1]["body"]["nodes"][0]["template"] == "nurture_case_study"
    assert versions[0]["content_hash"] != versions[1]["content_hash"]
    listed = {j["key"]: j for j in (await api.get("/journeys")).json()}
    assert (listed[key]["version"], listed[key]["draft_changed"]) == (2, False)


async def test_two_publishes_at_once_make_one_version(api):
    data = definition()
    await api.post("/journeys", json=data)
    answers = await asyncio.gather(
        *(api.post(f"/journeys/{data['key']}/publish") for _ in range(4))
    )
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 201]
    assert {a.json()["version"] for a in answers} == {1}
    assert len((await api.get(f"/journeys/{data['key']}/versions")).json()) == 1


async def test_pause_resume_and_archive_and_what_each_refuses(api):
    data = definition()
    key = data["key"]
    await api.post("/journeys", json=data)
    never = await api.post(f"/journeys/{key}/pause")
    assert never.status_code == 409 and "never published" in never.json()["detail"]
    await api.post(f"/journeys/{key}/publish")
    assert (await api.post(f"/journeys/{key}/pause")).json()["status"] == "paused"
    assert (await api.post(f"/journeys/{key}/pause")).json()["status"] == "paused"
    assert (await api.post(f"/journeys/{key}/resume")).json()["status"] == "published"
    assert (await api.post(f"/journeys/{key}/archive")).json()["status"] == "archived"
    for refused in (
        api.post(f"/journeys/{key}/publish"),
        api.post(f"/journeys/{key}/resume"),
        api.post(f"/journeys/{key}/pause"),
        api.put(f"/journeys/{key}", json=data),
    ):
        response = await refused
        assert response.status_code == 409 and "archived" in response.json()["detail"]
    assert (await api.post("/journeys", json=data)).status_code == 409  # the key stays taken
    missing = f"t_{uuid.uuid4().hex[:10]}"
    for path in ("", "/versions"):
        assert (await api.get(f"/journeys/{missing}{path}")).status_code == 404
    for action in ("publish", "pause", "resume", "archive"):
        assert (await api.post(f"/journeys/{missing}/{action}")).status_code == 404
    assert (await api.get("/journeys/Not-A-Key")).status_code == 422


# Enrolling ------------------------------------------------------------------------------------
def two_emails(key: str | None = None, second: str = "nurture_case_study", **fields) -> dict:
    """The white paper, two days, then ``second``."""
    return definition(
        key,
        {"id": "paper", "type": "message", "template": "nurture_white_paper", "next": "pause"},
        {"id": "pause", "type": "delay", "duration": "2d", "next": "second"},
        {"id": "second", "type": "message", "template": second, "next": "done"},
        EXIT,
        **fields,
    )


async def published(api, data: dict) -> str:
    assert (await api.post("/journeys", json=data)).status_code == 201
    assert (await api.post(f"/journeys/{data['key']}/publish")).status_code == 201
    return data["key"]


async def enrolled(api, lead_id: str, key: str) -> dict:
    response = await api.post(f"/leads/{lead_id}/journeys/{key}")
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def result_of(client, time_skipping_env):
    """The run's result (its JSON), once ``wait`` went by on the time-skipping server (a handle
    not started by the test's client skips no time of its own)."""

    async def result(answer: dict, wait: timedelta = timedelta(days=3)) -> dict:
        if wait:
            await time_skipping_env.sleep(wait)
        handle = client.get_workflow_handle(answer["workflow_id"], run_id=answer["run_id"])
        return await handle.result()

    return result


async def at_step(api, lead_id: str, key: str, step: str) -> dict:
    async def state() -> dict | None:
        answer = (await api.get(f"/leads/{lead_id}/journeys/{key}")).json()
        return answer if answer.get("step") == step else None

    return await eventually(state, timeout=15, what=f"the {key} journey at {step}")


async def templates_sent(api, lead_id: str) -> list[str]:
    messages = (await api.get(f"/leads/{lead_id}/messages")).json()
    return [m["template"] for m in messages if m["status"] == "sent"]


async def test_a_lead_in_flight_keeps_version_1_when_version_2_is_published(
    api, client, worker, make_lead, result_of
):
    key = await published(api, two_emails())
    first, later = make_lead(), make_lead()
    answer = await enrolled(api, first.id, key)
    assert answer["workflow_id"] == f"journey-{key}-{first.id}" and answer["journey"] == key
    await at_step(api, first.id, key, "delay:pause")
    await api.put(f"/journeys/{key}", json=two_emails(key, "nurture_promotional_offer"))
    assert (await api.post(f"/journeys/{key}/publish")).json()["version"] == 2
    answers = [answer, await enrolled(api, later.id, key)]

    results = [await result_of(a) for a in answers]
    assert [r["version"] for r in results] == [1, 2]
    assert await templates_sent(api, first.id) == ["nurture_white_paper", "nurture_case_study"]
    assert await templates_sent(api, later.id) == [
        "nurture_white_paper",
        "nurture_promotional_offer",
    ]
    state = (await api.get(f"/leads/{first.id}/journeys/{key}")).json()
    assert (state["status"], state["result"]["outcome"]) == ("COMPLETED", "exited")


async def test_a_paused_journey_refuses_new_leads_while_the_one_in_it_goes_on(
    api, client, worker, make_lead, result_of
):
    key = await published(api, two_emails())
    inside, outside = make_lead(), make_lead()
    answer = await enrolled(api, inside.id, key)
    await at_step(api, inside.id, key, "delay:pause")
    assert (await api.post(f"/journeys/{key}/pause")).status_code == 200

    refused = await api.post(f"/leads/{outside.id}/journeys/{key}")
    assert refused.status_code == 409
    assert refused.json() == {"detail": f"the {key} journey is paused: it takes no new leads"}
    assert (await result_of(answer))["outcome"] == "exited"
    assert await templates_sent(api, inside.id) == ["nurture_white_paper", "nurture_case_study"]
    assert (await api.get(f"/leads/{outside.id}/journeys/{key}")).status_code == 404

    await api.post(f"/journeys/{key}/resume")
    resumed = await enrolled(api, outside.id, key)
    await api.post(f"/journeys/{key}/archive")
    archived = await api.post(f"/leads/{make_lead().id}/journeys/{key}")
    assert archived.status_code == 409 and "archived" in archived.json()["detail"]
    # the lead who came in before the archive goes on to its end
    assert (await result_of(resumed))["messages"][-1]["template"] == "nurture_case_study"


async def test_a_draft_or_an_unknown_journey_enrolls_nobody(api, make_lead):
    lead = make_lead()
    data = definition()
    await api.post("/journeys", json=data)
    draft = await api.post(f"/leads/{lead.id}/journeys/{data['key']}")
    assert draft.status_code == 404 and "draft: publish it" in draft.json()["detail"]
    unknown = await api.post(f"/leads/{lead.id}/journeys/no_such_journey")
    assert unknown.status_code == 404 and "neither coded nor defined" in unknown.json()["detail"]
    bad = await api.post(f"/leads/{lead.id}/journeys/Not A Key")
    assert bad.status_code == 422


async def test_the_definitions_rules_apply_at_enrollment(
    api, client, worker, make_lead, engine, result_of
):
    key = await published(
        api, definition(rules={"cooldown_days": 30, "exclude": ["list:lifecycle_vip"]})
    )
    vip, lead = make_lead(), make_lead()
    with Session(engine) as session:
        add_member(session, list_name="lifecycle_vip", lead_id=vip.id, reason="test")
        session.commit()
    excluded = await api.post(f"/leads/{vip.id}/journeys/{key}")
    assert excluded.status_code == 409 and excluded.json()["status"] == "refused"
    assert "lifecycle_vip" in excluded.json()["detail"]

    await result_of(await enrolled(api, lead.id, key))
    again = await api.post(f"/leads/{lead.id}/journeys/{key}")
    assert again.status_code == 409 and again.json()["status"] == "refused"
    assert f"left the {key} journey" in again.json()["detail"]
    assert "cooldown 30 days" in again.json()["detail"]

    once = await published(api, definition(rules={"reenroll": False}))
    await result_of(await enrolled(api, lead.id, once))
    twice = await api.post(f"/leads/{lead.id}/journeys/{once}")
    assert twice.status_code == 409 and twice.json()["status"] == "already_enrolled"


async def test_a_purchase_told_to_the_api_ends_a_defined_journey_that_declares_it(
    live: LiveStack, make_lead
):
    """On the live stack (the dev server): the order's follow-up it starts keeps its own time."""
    api = live.http
    key = await published(api, two_emails(goals=["purchase"]))
    other = await published(api, two_emails())  # declares no goal: goes on
    lead = make_lead()
    answer = await enrolled(api, lead.id, key)
    await enrolled(api, lead.id, other)
    await at_step(api, lead.id, key, "delay:pause")
    await at_step(api, lead.id, other, "delay:pause")

    told = await api.post("/events/track", json=purchase_event(lead.id, f"o-{uuid.uuid4().hex}"))
    assert told.status_code == 202, told.text
    assert f"journey-{key}-{lead.id}" in told.json()["converted"]
    assert f"journey-{other}-{lead.id}" not in told.json()["converted"]
    handle = live.temporal.get_workflow_handle(answer["workflow_id"], run_id=answer["run_id"])
    result = await asyncio.wait_for(handle.result(), 20)
    assert (result["outcome"], result["goal"]) == ("converted", "purchase")
    assert result["path"] == ["paper", "pause"]
    await live.temporal.get_workflow_handle(f"journey-{other}-{lead.id}").terminate("test over")


# Files: config/journeys ----------------------------------------------------------------------
def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


async def test_journey_files_are_published_when_changed_left_alone_when_not_and_skipped_if_bad(
    settings, engine, tmp_path, caplog
):
    good = definition()
    write(tmp_path / "good.yaml", good)
    bad = definition(
        None,
        {"id": "paper", "type": "message", "template": "nurture_white_paper", "next": "gone"},
        EXIT,
    )
    write(tmp_path / "bad.yaml", bad)

    first = {str(r.path.name): (r.outcome, r.detail) for r in load_dir(engine, tmp_path)}
    assert first == {
        "bad.yaml": (
            "skipped",
            "skipped, it cannot be published: node paper: its next edge goes to no node: 'gone'",
        ),
        "good.yaml": ("published", f"{good['key']} published as version 1"),
    }
    again = {str(r.path.name): r.outcome for r in load_dir(engine, tmp_path)}
    assert again == {"bad.yaml": "skipped", "good.yaml": "unchanged"}
    write(tmp_path / "good.yaml", {**good, "name": "Renamed in its file"})

    # at API start, and the API starts with the bad file there
    app = create_app(settings.model_copy(update={"journeys_dir": tmp_path}))
    with caplog.at_level(logging.INFO, logger="relance.journeys"):
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app),
                base_url="http://testserver",
                headers={"X-API-Key": settings.api_key},
            ) as api,
        ):
            state = (await api.get(f"/journeys/{good['key']}")).json()
            assert (state["version"], state["name"]) == (2, "Renamed in its file")
            assert (await api.get(f"/journeys/{bad['key']}")).status_code == 404
    logged = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert (
        "WARNING",
        f"journey definition {tmp_path / 'bad.yaml'}: skipped, it cannot be published: "
        "node paper: its next edge goes to no node: 'gone'",
    ) in logged
    assert (
        "INFO",
        f"journey definition {tmp_path / 'good.yaml'}: {good['key']} published as version 2",
    ) in logged


def test_the_command_line_loads_a_directory(tmp_path):
    """Into a database of its own (another process on the suite's SQLite file is not wanted)."""
    good = definition()
    write(tmp_path / "good.yaml", good)
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    migrate.upgrade(url)
    env = {**os.environ, "RELANCE_DATABASE_URL": url}

    def load() -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "relance", "journeys", "load", str(tmp_path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    first, second = load(), load()
    assert (first.returncode, first.stdout) == (
        0,
        f"{tmp_path / 'good.yaml'}: {good['key']} published as version 1\n",
    )
    assert second.stdout == f"{tmp_path / 'good.yaml'}: {good['key']} unchanged (version 1)\n"
    write(tmp_path / "bad.yaml", {**definition(), "nodes": []})
    third = load()
    assert third.returncode == 1 and "bad.yaml: skipped, it cannot be published" in third.stdout


def test_the_shipped_journey_files_check_and_tell_the_newsletter_then_the_white_paper():
    paths = sorted((ROOT / "config" / "journeys").glob("*.yaml"))
    assert check_files(paths) == []
    data = yaml.safe_load(
        (ROOT / "config" / "journeys" / "newsletter_white_paper.yaml").read_text()
    )
    assert [n.get("template") for n in data["nodes"] if n["type"] == "message"] == [
        SCENARIOS["newsletter"].template,
        SCENARIOS["white_paper"].template,
    ]
    [delay] = [n for n in data["nodes"] if n["type"] == "delay"]
    assert delay["duration"] == f"{SCENARIOS['newsletter'].wait_days:g}d"


async def test_the_newsletter_journey_sends_the_white_paper_a_week_later(
    api, worker, make_lead, result_of, engine, settings
):
    """The shipped file, run as it is, under a key of the test's own: the shipped key may have
    been paused or archived by another test of the same database (loading at start is tested
    above, with files of its own)."""
    data = yaml.safe_load((settings.journeys_dir / "newsletter_white_paper.yaml").read_text())
    data["key"] = f"newsletter_{uuid.uuid4().hex[:10]}"
    key = await published(api, data)
    lead = make_lead()
    answer = await enrolled(api, lead.id, key)
    result = await result_of(answer, wait=timedelta(days=8))
    assert (result["outcome"], result["checkpoints"]) == ("exited", ["white_paper"])
    newsletter, paper = result["messages"]
    assert (newsletter["template"], paper["template"]) == (
        "nurture_welcome_newsletter",
        "nurture_white_paper",
    )
    assert paper["at"] > newsletter["at"]


async def test_the_coded_scenarios_take_no_new_lead_and_name_the_journey_that_replaced_them(
    api, client, worker, make_lead, engine, settings
):
    """The newsletter and white-paper scenarios were coded; their story is now the journey
    written as data. Asked for them, the API enrolls nobody and names it; a lead already in one
    goes on, its state read as before."""
    lead = make_lead()
    for name in SCENARIOS:
        refused = await api.post(f"/leads/{lead.id}/journeys/scenario-{name}")
        assert refused.status_code == 409, refused.text
        assert "enroll into newsletter_white_paper" in refused.json()["detail"]
        assert refused.json()["status"] == "refused"
        assert (await api.get(f"/leads/{lead.id}/journeys/scenario-{name}")).status_code == 404
    with Session(engine) as session:
        assert session.exec(select(Message).where(Message.lead_id == lead.id)).all() == []
    # A sign-up that asks for one saves the lead and says why it was not enrolled.
    body = sign_up_body(new_email(), journeys=["scenario-newsletter"])
    signed = await api.post("/leads", json=body)
    assert signed.status_code == 201, signed.text
    [enrollment] = signed.json()["enrollments"]
    assert enrollment["status"] == "refused" and "newsletter_white_paper" in enrollment["detail"]
    # Listed as archived, with their successor; the documentation says so too.
    listed = {j["key"]: j for j in (await api.get("/journeys")).json()}
    assert listed["scenario-newsletter"]["status"] == "archived"
    assert listed["scenario-newsletter"]["replaced_by"] == "newsletter_white_paper"
    assert listed["welcome"]["status"] == "published" and listed["welcome"]["replaced_by"] is None
    spec = (await api.get("/openapi.json")).json()
    [path] = [p for p in spec["paths"] if p.endswith("/journeys/{journey}")]
    [param] = spec["paths"][path]["post"]["parameters"][1:]
    assert "`scenario-newsletter` takes no new leads" in param["schema"]["description"]
    # A lead who entered before goes on to its end: the newsletter, then the white paper.
    inside = make_lead()
    handle = await client.start_workflow(
        ScenarioJourney.run,
        ScenarioInput(lead_id=inside.id, scenario="newsletter", wait_days=0),
        id=f"scenario-newsletter-{inside.id}",
        task_queue=settings.temporal_task_queue,
    )
    assert (await handle.result()).outcome == ScenarioOutcome.REDIRECTED
    paper = client.get_workflow_handle(f"scenario-white_paper-{inside.id}")
    assert (await finished(paper))["outcome"] == ScenarioOutcome.REDIRECT_REFUSED
    for name in SCENARIOS:
        status = await api.get(f"/leads/{inside.id}/journeys/scenario-{name}")
        assert status.status_code == 200 and status.json()["status"] == "COMPLETED", status.text
