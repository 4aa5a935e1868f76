"""Defined journeys' hand-offs and waits for what the lead does elsewhere (workflows/defined.py):
a task for a sales rep, a signed webhook call whose answer becomes custom attributes, a wait for
a custom event (with a property filter) or for a download. The real API over the test database,
a real local HTTP receiver, the mail sink and a worker on the time-skipping server; and each
node's bad definitions refused naming the node, at check and at publish."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from sqlmodel import Session, select

from activities.sales import SalesActivities
from api.main import create_app
from relance.contracts.definitions import workflow_id
from relance.contracts.sales import TaskRequest
from relance.dev.serving import ServedApp
from relance.domain.lead_schema import load_lead_schema
from relance.domain.models import Lead, SalesTask, as_utc, utcnow
from relance.domain.rendering import Renderer
from relance.domain.settings import JourneyWebhook
from relance.domain.tokens import TokenSigner
from relance.domain.webhook_signing import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify,
)
from relance.services import journey_store
from relance.services.definitions import DefinitionError, checked, known_templates
from tests.conftest import unique_id
from tests.waiting import eventually
from worker import build_worker
from workflows.defined import DefinedJourney, DefinedResult

SECRET = "crm-shared-secret"
ENDPOINT = "enrich"
EXIT = {"id": "done", "type": "exit"}
PAPER = {"id": "paper", "type": "message", "template": "nurture_white_paper", "next": "done"}
LEAD_SCHEMA = load_lead_schema(
    Path(__file__).resolve().parent.parent / "config" / "lead_schema.yaml"
)


class Receiver:
    """A CRM: records every POST; answers each lead's calls with what a test queued for that
    lead (a status, or a status and a JSON body), then 200 with ``{"ok": true}``."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, dict]] = []
        self.queued: dict[str, list[tuple[int, dict | None]]] = defaultdict(list)
        self.app = FastAPI()

        @self.app.post("/hooks/relance")
        async def hook(request: Request) -> Response:
            body = await request.body()
            self.calls.append((body, dict(request.headers)))
            queued = self.queued[json.loads(body)["lead_id"]]
            status, answer = queued.pop(0) if queued else (200, {"ok": True})
            if answer is None:
                return Response(status_code=status, content=b"not now")
            return Response(json.dumps(answer), status_code=status, media_type="application/json")

    def answer(self, lead_id: str, *answers: tuple[int, dict | None]) -> None:
        self.queued[lead_id].extend(answers)

    def of(self, lead_id: str) -> list[tuple[bytes, dict]]:
        return [(b, h) for b, h in self.calls if json.loads(b)["lead_id"] == lead_id]


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    served = ServedApp(receiver.app)
    await served.start()
    receiver.url = f"{served.url}/hooks/relance"
    yield receiver
    await served.stop()


@pytest.fixture
def hand_off_settings(settings, receiver):
    return settings.model_copy(
        update={
            "journey_webhooks": {ENDPOINT: JourneyWebhook(url=receiver.url, secret=SECRET)},
            "temporal_task_queue": unique_id("hand-offs"),
        }
    )


@pytest.fixture
async def worker(client, hand_off_settings, engine):
    async with build_worker(client, hand_off_settings, engine) as running:
        yield running


@pytest.fixture
async def api(hand_off_settings, client) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(hand_off_settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app),
            base_url="http://testserver",
            headers={"X-API-Key": hand_off_settings.api_key},
        ) as http,
    ):
        app.state.temporal = client
        yield http


PUBLISHED: list[str] = []


@pytest.fixture(autouse=True)
def archived_after(engine):
    """Each test's journeys are archived after it: their waits must not be told the events of
    the suite's other tests."""
    yield
    while PUBLISHED:
        with Session(engine) as session:
            journey_store.move(session=session, key=PUBLISHED.pop(), action="archive")


def definition(*nodes: dict, **fields) -> dict:
    return {
        "key": f"t_{uuid.uuid4().hex[:10]}",
        "name": "test",
        "topic": "events",
        "nodes": list(nodes),
        **fields,
    }


async def run(api: httpx.AsyncClient, client, lead: Lead, data: dict, *, ready=None, skip=None):
    """Publish the definition, enroll the lead through the API, and (``ready``: an async
    callable given the handle) act once the journey is where the test wants it; the result,
    after ``skip`` (the time-skipping server, a duration) went by."""
    PUBLISHED.append(data["key"])
    created = await api.post("/journeys", json=data)
    assert created.status_code == 201, created.text
    published = await api.post(f"/journeys/{data['key']}/publish")
    assert published.status_code == 201, published.text
    enrolled = await api.post(f"/leads/{lead.id}/journeys/{data['key']}")
    assert enrolled.status_code in (200, 201, 202), enrolled.text
    handle = client.get_workflow_handle(
        workflow_id(data["key"], lead.id), result_type=DefinedResult
    )
    if ready is not None:
        await ready(handle)
    if skip is not None:  # a handle the test's client did not start skips no time of its own
        await skip[0].sleep(skip[1])
    return await handle.result()


def at(node_id: str):
    async def ready(handle) -> None:
        async def there() -> bool:
            return (await handle.query(DefinedJourney.status)).node == node_id

        await eventually(there, timeout=10, what=f"the journey at {node_id}")

    return ready


def set_lead(engine, lead_id: str, **values) -> None:
    with Session(engine) as session:
        lead = session.get(Lead, lead_id)
        for name, value in values.items():
            setattr(lead, name, value)
        session.add(lead)
        session.commit()


def attributes_of(engine, lead_id: str) -> dict:
    with Session(engine) as session:
        return dict(session.get(Lead, lead_id).attributes or {})


# Task ---------------------------------------------------------------------------------------------
TASK = {
    "id": "call",
    "type": "task",
    "title": "Call {{ first_name }} ({{ attributes.plan }} plan)",
    "description": "Score {{ score }}. Ask about {{ attributes.job_title or 'their role' }}.",
    "due_in": "3d",
    "next": "done",
}


async def test_a_task_node_hands_the_lead_to_a_rep_once_with_its_templates_rendered_as_text(
    api, client, worker, make_lead, engine, sink
):
    lead = make_lead(first_name="Ada {{ 7 * 7 }}")  # lead data is printed, never run
    set_lead(engine, lead.id, attributes={"plan": "pro"}, score=35)
    result = await run(api, client, lead, definition(TASK, EXIT))

    assert result.outcome == "exited" and result.path == ["call", "done"]
    with Session(engine) as session:
        [task] = session.exec(select(SalesTask).where(SalesTask.lead_id == lead.id)).all()
    assert task.reason == "Call Ada {{ 7 * 7 }} (pro plan)"
    assert task.description == "Score 35. Ask about their role."
    assert task.assignee == "e2e-rep@sales.example.com" and task.status == "open"
    assert as_utc(task.due_at) - as_utc(task.created_at) == pytest.approx(
        timedelta(days=3), abs=timedelta(minutes=1)
    )
    assert result.decisions == [f"call: task {task.id} for Rep (the rep emailed)"]
    [mail] = await sink.wait_for_mail(to=task.assignee, subject_contains=task.reason)
    text = mail.message.get_body(("plain",)).get_content()
    assert f"A lead from the {result.key} journey" in text
    assert "Score 35. Ask about their role." in text


def test_a_retried_task_creation_finds_the_task_it_made(settings, engine, make_lead):
    """A worker lost after creating the task retries the activity with the same request (the
    run, the node, the visit): one task all the same, rendered once."""
    lead = make_lead()
    sales = SalesActivities(
        settings, engine, Renderer(TokenSigner("k", max_age_seconds=60), "http://x.invalid")
    )
    request = TaskRequest(
        lead.id,
        f"journey-t-{lead.id}",
        f"journey-t-{lead.id}:call@260101000000",
        "Call {{ first_name }}",
        utcnow() + timedelta(days=1),
        templated=True,
    )
    first = sales.create_sales_task(request)
    set_lead(engine, lead.id, first_name="Grace")
    again = sales.create_sales_task(request)
    assert again.task_id == first.task_id
    with Session(engine) as session:
        [task] = session.exec(select(SalesTask).where(SalesTask.lead_id == lead.id)).all()
    assert task.reason == "Call Ada"


# Webhook ------------------------------------------------------------------------------------------
def webhook(**more) -> dict:
    return {
        "id": "enrich",
        "type": "webhook",
        "endpoint": ENDPOINT,
        "attributes": ["job_title", "plan"],
        "map": {"company_size": "/company/employees", "plan": "/account/plan"},
        "next": "paper",
        **more,
    }


async def test_a_webhook_call_is_signed_retried_on_a_5xx_and_its_answer_becomes_attributes(
    api, client, worker, make_lead, engine, receiver
):
    lead = make_lead()
    hostile = '", "lead_id": "someone-else'  # JSON-escaped in the body, never a field of its own
    set_lead(engine, lead.id, attributes={"job_title": hostile, "plan": "free"})
    receiver.answer(
        lead.id,
        (503, None),  # the CRM is down for a moment: retried, with the same delivery id
        (200, {"company": {"employees": 250}, "account": {"plan": "enterprise"}}),
    )
    result = await run(api, client, lead, definition(webhook(), PAPER, EXIT))

    assert result.path == ["enrich", "paper", "done"]
    assert result.decisions == ["enrich: enrich accepted: 200: company_size, plan set -> next"]
    assert attributes_of(engine, lead.id) == {
        "job_title": hostile,
        "plan": "enterprise",
        "company_size": 250,
    }
    first, second = receiver.of(lead.id)
    body, headers = second
    assert json.loads(body) == {
        "type": "journey_webhook",
        "delivery_id": headers[DELIVERY_HEADER.lower()],
        "lead_id": lead.id,
        "journey": result.key,
        "node": "enrich",
        "attributes": {"job_title": hostile, "plan": "free"},
    }
    assert first[1][DELIVERY_HEADER.lower()] == headers[DELIVERY_HEADER.lower()]
    assert verify(
        SECRET,
        body,
        headers[SIGNATURE_HEADER.lower()],
        headers[TIMESTAMP_HEADER.lower()],
        tolerance_seconds=300,
    )


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ((422, None), "the enrich endpoint refused: 422"),
        ((200, {"company": {"employees": "many"}}), "company_size: "),  # not a number
    ],
    ids=["a 4xx", "an answer the lead schema refuses"],
)
async def test_a_refused_webhook_call_takes_on_failure_and_writes_nothing(
    api, client, worker, make_lead, engine, receiver, answer, why
):
    lead = make_lead()
    set_lead(engine, lead.id, attributes={"plan": "free"})
    receiver.answer(lead.id, answer)
    data = definition(webhook(on_failure="done"), PAPER, EXIT)
    result = await run(api, client, lead, data)

    assert result.path == ["enrich", "done"] and result.messages == []
    [decision] = result.decisions
    assert decision.startswith("enrich: enrich failed: ") and decision.endswith("-> on_failure")
    assert why in decision and "not now" not in decision  # the receiver's text stays out
    assert attributes_of(engine, lead.id) == {"plan": "free"}
    assert len(receiver.of(lead.id)) == 1  # a refusal is not retried


# Waits for a custom event or a download -----------------------------------------------------------
def custom_wait(**more) -> dict:
    return {
        "id": "wait",
        "type": "wait_for",
        "event": "custom",
        "name": "webinar_attended",
        "where": {"webinar": "q3-launch"},
        "within": "3d",
        "then": "paper",
        "timeout": "done",
        **more,
    }


def attended(lead_id: str, webinar: str) -> dict:
    return {
        "type": "custom",
        "lead": lead_id,
        "name": "webinar_attended",
        "properties": {"webinar": webinar, "minutes": 42},
    }


async def test_a_wait_for_a_custom_event_takes_then_only_for_an_event_its_filter_holds_for(
    api, client, worker, make_lead, time_skipping_env
):
    data = definition(custom_wait(), PAPER, EXIT)
    other, lead = make_lead(), make_lead()

    async def another_webinar(handle) -> None:
        await at("wait")(handle)
        told = await api.post("/events/track", json=attended(other.id, "q2-recap"))
        assert told.status_code == 202 and handle.id in told.json()["detail"]

    # The event came, of another webinar: the wait times out.
    missed = await run(
        api, client, other, data, ready=another_webinar, skip=(time_skipping_env, timedelta(days=4))
    )
    assert missed.path == ["wait", "done"]
    assert missed.decisions == [
        "wait: the event webinar_attended (webinar=q3-launch) did not come -> timeout"
    ]

    async def this_webinar(handle) -> None:
        await at("wait")(handle)
        await api.post("/events/track", json=attended(lead.id, "q3-launch"))

    came = await run(api, client, lead, {**data, "key": f"{data['key']}b"}, ready=this_webinar)
    assert came.path == ["wait", "paper", "done"]
    assert came.decisions == ["wait: the event webinar_attended (webinar=q3-launch) came -> then"]


async def test_a_wait_for_a_custom_event_with_no_filter_takes_any_event_of_its_name(
    api, client, worker, make_lead
):
    lead = make_lead()

    async def any_webinar(handle) -> None:
        await at("wait")(handle)
        await api.post("/events/track", json=attended(lead.id, "q2-recap"))

    data = definition(custom_wait(where={}), PAPER, EXIT)
    result = await run(api, client, lead, data, ready=any_webinar)
    assert result.path == ["wait", "paper", "done"]
    assert result.decisions == ["wait: the event webinar_attended came -> then"]


async def test_a_wait_for_a_download_takes_then_when_the_lead_downloads_that_asset(
    api, client, worker, make_lead, time_skipping_env
):
    wait = {
        "id": "wait",
        "type": "wait_for",
        "event": "downloaded",
        "asset": "white_paper",
        "within": "2d",
        "then": "paper",
        "timeout": "done",
    }
    data = definition(wait, PAPER, EXIT)
    lead, other = make_lead(), make_lead()

    def download(lead_id: str, asset: str):
        async def ready(handle) -> None:
            await at("wait")(handle)
            body = {"type": "asset_downloaded", "lead": lead_id, "asset": asset}
            answer = await api.post("/events/track", json=body)
            assert answer.status_code == 202 and handle.id in answer.json()["detail"]

        return ready

    came = await run(api, client, lead, data, ready=download(lead.id, "white_paper"))
    assert came.path == ["wait", "paper", "done"]
    assert came.decisions == ["wait: a download of white_paper came -> then"]
    other_data = {**data, "key": f"{data['key']}b"}
    missed = await run(
        api,
        client,
        other,
        other_data,
        ready=download(other.id, "case-study"),
        skip=(time_skipping_env, timedelta(days=3)),
    )
    assert missed.path == ["wait", "done"]


# Bad definitions, named by node -------------------------------------------------------------------
# (what is wrong, the node, the definition's nodes, words of the problem)
CORPUS = [
    (
        "a task whose title is no template",
        "call",
        ({**TASK, "title": "Call {{ first_name"}, EXIT),
        "its title: not a template",
    ),
    (
        "a task whose description reads what a task lacks",
        "call",
        ({**TASK, "description": "{{ lead.email }}"}, EXIT),
        "its description: it reads lead, which a task's template does not have",
    ),
    (
        "a webhook to an endpoint the settings do not name",
        "enrich",
        (webhook(endpoint="https_evil_example"), PAPER, EXIT),
        "it calls 'https_evil_example', which is no endpoint of the settings",
    ),
    (
        "a webhook mapping into an attribute the lead schema lacks",
        "enrich",
        (webhook(map={"shoe_size": "/shoe"}), PAPER, EXIT),
        "its map: 'shoe_size' is no attribute of the lead schema",
    ),
    (
        "a webhook sending an attribute the lead schema lacks",
        "enrich",
        (webhook(attributes=["salary"]), PAPER, EXIT),
        "its attributes: 'salary' is no attribute of the lead schema",
    ),
    (
        "a webhook mapping with no JSON pointer",
        "enrich",
        (webhook(map={"plan": "account.plan"}), PAPER, EXIT),
        "map.plan",
    ),
    (
        "a wait for a custom event the lead schema does not declare",
        "wait",
        (custom_wait(name="webinar_atended"), PAPER, EXIT),
        "it waits for 'webinar_atended', which is no custom event of the lead schema",
    ),
    (
        "a wait filtering on a property the event lacks",
        "wait",
        (custom_wait(where={"room": "a"}), PAPER, EXIT),
        "its where: 'room' is no property of webinar_attended",
    ),
    (
        "a wait for a custom event without its name",
        "wait",
        ({**custom_wait(), "name": None}, PAPER, EXIT),
        "waiting for a custom event names it",
    ),
    (
        "a wait for a download without its asset",
        "wait",
        ({**custom_wait(event="downloaded"), "where": {}}, PAPER, EXIT),
        "waiting for a download names the asset",
    ),
]


@pytest.mark.parametrize(
    ("node", "nodes", "words"), [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS]
)
def test_each_bad_node_is_refused_by_the_check_naming_it(node, nodes, words):
    with pytest.raises(DefinitionError) as raised:
        checked(
            definition(*nodes),
            templates=known_templates(),
            lead_schema=LEAD_SCHEMA,
            webhooks={ENDPOINT},
        )
    problems = raised.value.problems
    assert any(p.node == node and words in p.what for p in problems), [str(p) for p in problems]


@pytest.mark.parametrize(
    ("node", "nodes", "words"), [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS]
)
async def test_each_bad_node_is_answered_422_at_check_and_at_publish(api, node, nodes, words):
    data = definition(*nodes)
    for answer in (
        await api.post("/journeys/check", json=data),
        await api.post("/journeys", json=data),  # a draft is checked as publishing checks it
    ):
        assert answer.status_code == 422, answer.text
        named = [p for p in answer.json()["detail"] if p["loc"] == ["body", "nodes", node]]
        assert any(words in p["msg"] for p in named), answer.json()
    assert (await api.get(f"/journeys/{data['key']}")).status_code == 404  # nothing stored
