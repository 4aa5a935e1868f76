"""Journeys as data through the API: drafts, published versions, pause / resume / archive, and
the leads enrolled into them (the real API over the test database, a worker on the
time-skipping server, the mail sink)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from api.main import create_app

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
        "nodes": list(nodes),
        **fields,
    }


@pytest.fixture
async def api(settings, client) -> AsyncIterator[httpx.AsyncClient]:
    """The API app in-process, its Temporal client the time-skipping server's."""
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app),
            base_url="http://testserver",
            headers={"X-API-Key": settings.api_key},
        ) as http,
    ):
        app.state.temporal = client
        yield http


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
