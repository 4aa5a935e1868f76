"""The nurturing journey over HTTP on the real dev server: enroll, a download, the sales task
listed, completed by the rep (meeting booked: converted), and the task endpoints' errors."""

from __future__ import annotations

import asyncio
import uuid

from sqlmodel import Session

from relance.domain.models import SalesTask
from tests.conftest import LiveStack
from tests.test_api_welcome_e2e import links, sign_up_body

REP = "e2e-rep@sales.example.com"


async def sign_up(live: LiveStack, **extra) -> dict:
    email = f"nina.{uuid.uuid4().hex[:10]}@example.com"
    response = await live.http.post("/leads", json=sign_up_body(email, first_name="Nina", **extra))
    assert response.status_code == 201, response.text
    return response.json()


async def state_when(live: LiveStack, lead_id: str, predicate, timeout: float = 10.0) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        response = await live.http.get(f"/leads/{lead_id}/journeys/nurturing")
        assert response.status_code == 200, response.text
        if predicate(state := response.json()):
            return state
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"journey never reached the expected state; last: {state}")
        await asyncio.sleep(0.05)


async def tasks_when(
    live: LiveStack, params: dict, count: int, timeout: float = 10.0
) -> list[dict]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        response = await live.http.get("/tasks", params=params)
        assert response.status_code == 200, response.text
        if len(tasks := response.json()) >= count:
            return tasks
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{len(tasks)} task(s) for {params}, expected {count}")
        await asyncio.sleep(0.05)


async def test_download_hands_the_lead_to_sales_and_a_booked_meeting_converts(live: LiveStack):
    body = await sign_up(live, country="fr", journeys=["nurturing"])
    lead = body["lead"]
    assert lead["country"] == "FR"
    [enrollment] = body["enrollments"]
    assert (
        enrollment["status"] == "started" and enrollment["workflow_id"] == f"nurture-{lead['id']}"
    )
    [mail] = await live.sink.wait_for_mail(to=lead["email"])
    assert mail.subject == "Welcome to the Relance newsletter"
    state = await state_when(live, lead["id"], lambda s: s["step"] == "waiting_for_case_study")
    assert state["open_tasks"] == [] and state["downloads"] == []

    again = await live.http.post(f"/leads/{lead['id']}/journeys/nurturing")
    assert again.status_code == 409 and "already in the nurturing journey" in again.json()["detail"]

    download = {"type": "asset_downloaded", "lead": lead["id"], "asset": "white-paper"}
    response = await live.http.post("/events/track", json=download)
    assert response.status_code == 202 and response.json()["workflow_id"] == f"nurture-{lead['id']}"

    [task] = await tasks_when(live, {"assignee": REP, "lead": lead["id"], "status": "open"}, 1)
    assert (
        task["reason"] == "downloaded the white-paper"
        and task["assignee"] == REP
        and task["status"] == "open"
    )
    assert task["due_at"] > task["created_at"]
    [note] = await live.sink.wait_for_mail(to=REP, subject_contains="Nina")
    assert f"/tasks/{task['id']}/complete" in note.text
    state = await state_when(live, lead["id"], lambda s: s["open_tasks"])
    assert state["downloads"] == ["white-paper"] and state["open_tasks"][0]["task_id"] == task["id"]
    assert (await live.http.get(f"/tasks/{task['id']}")).json() == task

    done = await live.http.post(
        f"/tasks/{task['id']}/complete", json={"outcome": "meeting_booked", "note": "Tue 10:00"}
    )
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "done" and done.json()["outcome"] == "meeting_booked"
    state = await state_when(live, lead["id"], lambda s: s["status"] == "COMPLETED")
    assert state["result"]["outcome"] == "converted"

    twice = await live.http.post(f"/tasks/{task['id']}/complete", json={"outcome": "called"})
    assert twice.status_code == 409 and "already completed" in twice.json()["detail"]
    with Session(live.engine) as session:
        assert (
            session.get(SalesTask, task["id"]).outcome == "meeting_booked"
        )  # the second call changed nothing
    assert await tasks_when(live, {"assignee": REP, "lead": lead["id"], "status": "open"}, 0) == []


async def test_demo_booked_by_the_lead_ends_the_nurturing(live: LiveStack):
    lead = (await sign_up(live))["lead"]
    enrolled = await live.http.post(f"/leads/{lead['id']}/journeys/nurturing")
    assert enrolled.status_code == 201 and enrolled.json()["workflow_id"] == f"nurture-{lead['id']}"
    await state_when(live, lead["id"], lambda s: s["step"] == "waiting_for_case_study")
    response = await live.http.post(
        "/events/track", json={"type": "demo_booked", "lead": lead["id"]}
    )
    assert response.status_code == 202 and "goal reached" in response.json()["detail"]
    state = await state_when(live, lead["id"], lambda s: s["status"] == "COMPLETED")
    assert state["result"]["outcome"] == "goal_reached" and state["result"]["steps_sent"] == [
        "welcome_newsletter"
    ]


async def test_a_download_without_a_running_journey_is_accepted_and_goes_nowhere(live: LiveStack):
    lead = (await sign_up(live))["lead"]
    response = await live.http.post(
        "/events/track",
        json={"type": "asset_downloaded", "lead": lead["id"], "asset": "white-paper"},
    )
    assert response.status_code == 202 and response.json()["workflow_id"] is None
    assert (await live.http.get("/tasks", params={"lead": lead["id"]})).json() == []


async def test_a_click_on_the_tracked_white_paper_link_is_a_download(live: LiveStack):
    """The real path: the email's signed link, the redirect, the outbox, the click signal with its
    URL."""
    from relance.services.nurturing import parse_sequence
    from workflows.nurturing import LeadNurturingJourney, NurturingInput

    sequence = parse_sequence("""
steps:
  - {name: white_paper, template: nurture_white_paper, delay_days: 0}
  - name: demo_proposal
    template: nurture_demo_proposal
    delay_days: 3
    requires: {downloaded: white-paper, alternatives: [nurture_case_study_alt]}
assets: {white-paper: /resources/white-paper}
hand_off: {on_download: [white-paper]}
""")
    lead = (await sign_up(live))["lead"]
    handle = await live.temporal.start_workflow(
        LeadNurturingJourney.run,
        NurturingInput(lead_id=lead["id"], sequence=sequence),
        id=f"nurture-{lead['id']}",
        task_queue=live.settings.temporal_task_queue,
    )
    [mail] = await live.sink.wait_for_mail(to=lead["email"])
    [link] = links(
        mail.html, "c"
    )  # the white paper's call to action (the unsubscribe link is not a click link)
    response = await live.public.get(link)
    assert response.status_code == 302 and response.headers["location"].endswith(
        "/resources/white-paper"
    )

    state = await state_when(live, lead["id"], lambda s: s["downloads"] and s["open_tasks"])
    assert state["downloads"] == ["white-paper"] and state["step"] == "waiting_for_demo_proposal"
    [task] = await tasks_when(live, {"lead": lead["id"]}, 1)
    done = await live.http.post(f"/tasks/{task['id']}/complete", json={"outcome": "not_interested"})
    assert done.status_code == 200
    result = await handle.result()
    assert result.outcome == "not_interested" and result.steps_sent == ["white_paper"]
