"""The webinar follow-up shipped as a definition (config/journeys/webinar_followup.yaml): the
webinar platform's ``webinar_registered`` event enrolls the lead, ``webinar_attended`` takes it to
the thanks experiment (two arms and a holdout), a trial ends it as converted. Through the API
(which loads config/journeys at start), a worker on the time-skipping server, the real database
and mail sink; and the simulator on the same file."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import yaml

from api.main import create_app
from relance.contracts.definitions import assign_arm, workflow_id
from relance.domain.journey_rules import JourneyRules
from relance.services.definitions import compile_definition, parse
from tests.waiting import eventually
from worker import build_worker
from workflows.defined import DefinedJourney, DefinedResult

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "config/journeys/webinar_followup.yaml"
LEAD = ROOT / "tests/definitions/webinar_followup.lead.json"
SCRIPT = ROOT / "tests/definitions/webinar_followup.script.json"
# The shipped file under a key of the tests' own: the shipped key may be paused or archived by
# another test of the same database (the API fuzzing drives every operation, archive too).
KEY = f"webinar_{uuid.uuid4().hex[:10]}"
THANKS = next(
    n for n in compile_definition(parse(yaml.safe_load(SHIPPED.read_text()))).nodes
    if n.id == "thanks"
)  # fmt: skip


def arm_of(lead_id: str) -> str:
    return assign_arm(KEY, "thanks", lead_id, [*THANKS.arms, THANKS.holdout]).name


@pytest.fixture
async def api(settings, client) -> AsyncIterator[httpx.AsyncClient]:
    """The API as shipped, but a lead may register again at once (the journey's 30 days of
    cooldown are counted on the wall clock, which the time-skipping server does not move)."""
    rules = yaml.safe_load(SHIPPED.read_text())["rules"]
    again = JourneyRules.model_validate({**rules, "cooldown_days": 0})
    app = create_app(settings.model_copy(update={"journey_rules": {KEY: again}}))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app),
            base_url="http://testserver",
            headers={"X-API-Key": settings.api_key},
        ) as http,
    ):
        app.state.temporal = client
        created = await http.post(
            "/journeys", json={**yaml.safe_load(SHIPPED.read_text()), "key": KEY}
        )
        assert created.status_code in (201, 409), created.text  # 409: an earlier test's
        published = await http.post(f"/journeys/{KEY}/publish")
        assert published.status_code in (200, 201), published.text
        yield http


@pytest.fixture
async def worker(client, settings, engine):
    async with build_worker(client, settings, engine) as running:
        yield running


async def tell(api, lead_id: str, name: str, **properties) -> dict:
    event = {"type": "custom", "lead": lead_id, "name": name, "properties": properties}
    answer = await api.post("/events/track", json=event)
    assert answer.status_code == 202, answer.text
    return answer.json()


async def at_node(client, lead_id: str, node: str) -> None:
    handle = client.get_workflow_handle(workflow_id(KEY, lead_id))

    async def there() -> bool:
        return (await handle.query(DefinedJourney.status)).node == node

    await eventually(there, timeout=20, what=f"the webinar follow-up at {node}")


async def attended_then_trial(api, client, lead_id: str) -> DefinedResult:
    """The lead registered: it attends, then starts a trial; the run's result."""
    await at_node(client, lead_id, "attended")
    await tell(api, lead_id, "webinar_attended", webinar="growth", minutes=40)
    await at_node(client, lead_id, "trial")
    await tell(api, lead_id, "trial_started", plan="pro")
    handle = client.get_workflow_handle(workflow_id(KEY, lead_id), result_type=DefinedResult)
    return await handle.result()


def lead_on(make_lead, arms: tuple[str, ...]):
    """A new lead whose arm of the thanks is one of ``arms`` (the arm is a hash of the lead id:
    a few leads are made until one falls there)."""
    for _ in range(200):
        lead = make_lead()
        if arm_of(lead.id) in arms:
            return lead
    raise AssertionError(f"no lead on {arms} in 200")


async def test_registering_enrolls_an_attendee_thanked_on_the_same_arm_each_time(
    api, client, worker, make_lead, sink
):
    lead = lead_on(make_lead, ("slides", "demo"))
    arm = arm_of(lead.id)
    answer = await tell(api, lead.id, "webinar_registered", webinar="growth")

    assert KEY in answer["detail"], answer
    handle = client.get_workflow_handle(workflow_id(KEY, lead.id))
    first_run = (await handle.describe()).run_id
    first = await attended_then_trial(api, client, lead.id)
    assert first.arms == {"thanks": arm}
    assert first.path == ["attended", "thanks", f"thanks_{arm}", "thanked", "trial", "converted"]
    assert (first.outcome, first.goal, first.checkpoints) == (
        "converted",
        "trial_started",
        ["attendee_thanked"],
    )
    [thanks] = first.messages
    assert (thanks.template, thanks.step.split("@")[0]) == (
        f"webinar_thanks_{arm}",
        f"thanks_{arm}:{arm}",
    )
    await sink.wait_for_mail(to=lead.email)

    # the next webinar: registered again, the same arm (sticky per lead, not drawn again)
    again = await tell(api, lead.id, "webinar_registered", webinar="pricing")
    assert KEY in again["detail"], again
    assert (await handle.describe()).run_id != first_run
    second = await attended_then_trial(api, client, lead.id)
    assert second.arms == {"thanks": arm}
    assert [m.template for m in second.messages] == [f"webinar_thanks_{arm}"]


async def test_an_attendee_in_the_holdout_gets_no_thanks_and_is_not_counted_thanked(
    api, client, worker, make_lead
):
    lead = lead_on(make_lead, ("hold",))
    await tell(api, lead.id, "webinar_registered", webinar="growth")
    result = await attended_then_trial(api, client, lead.id)
    assert result.arms == {"thanks": "hold"}
    assert result.path == ["attended", "thanks", "trial", "converted"]
    assert result.messages == [] and result.checkpoints == []
    assert "thanks: arm hold (holdout)" in result.decisions


def test_the_arms_share_the_attendees_as_declared():
    """45 / 45 / 10 over 20,000 lead ids (of the form the database gives) in the shipped
    journey: each share within four standard deviations of a fair draw of that many leads (1.4
    points for the arms, 0.85 for the holdout)."""
    n = 20_000
    key = yaml.safe_load(SHIPPED.read_text())["key"]
    arms_of = [*THANKS.arms, THANKS.holdout]
    arms = [
        assign_arm(key, "thanks", uuid.uuid5(uuid.NAMESPACE_URL, f"lead-{i}").hex, arms_of).name
        for i in range(n)
    ]
    for name, percent in (("slides", 45), ("demo", 45), ("hold", 10)):
        share = arms.count(name) / n * 100
        bound = 4 * math.sqrt(percent * (100 - percent) / n)
        assert abs(share - percent) < bound, (name, share, bound)


def simulate(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "relance", "journeys", "simulate", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_the_shipped_file_checks_clean():
    run = subprocess.run(
        [sys.executable, "-m", "relance", "journeys", "check", str(SHIPPED)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert run.returncode == 0 and "no problem found" in run.stdout, run.stdout + run.stderr


def test_simulated_an_attendee_is_thanked_then_offered_a_call_without_a_trial():
    """The example lead (a fit, score 30) attends 20 hours in and starts no trial: its arm's
    thanks, the checkpoint, a week's wait, the condition's reasons, the call and sales' list."""
    run = simulate(SHIPPED, "--lead", LEAD, "--events", SCRIPT, "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    out = json.loads(run.stdout)
    arm = out["arms"]["thanks"]
    assert arm in ("slides", "demo", "hold")
    thanked = [] if arm == "hold" else [f"thanks_{arm}", "thanked"]
    assert out["path"] == [
        "attended", "thanks", *thanked, "trial", "fit", "questions", "to_sales", "done"
    ]  # fmt: skip
    texts = [e["text"] for e in out["entries"]]
    assert "attended: the signal webinar_attended came -> then" in texts
    assert "trial: the signal trial_started did not come -> timeout" in texts
    assert any(t.startswith("fit: (score >= 20: yes (score 30)") for t in texts)
    assert "to_sales: added to the list webinar_hot" in texts
    assert [m["template"] for m in out["messages"]][-1] == "webinar_questions"


def test_simulated_a_registrant_who_missed_it_gets_the_replay_then_the_last_call(tmp_path):
    script = tmp_path / "missed.json"
    script.write_text(json.dumps({"events": []}))
    lead = tmp_path / "lead.json"
    lead.write_text(json.dumps({"email": "linus@example.com", "first_name": "Linus", "score": 5}))
    run = simulate(SHIPPED, "--lead", lead, "--events", script)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "attended: the signal webinar_attended did not come -> timeout" in out
    assert "replay: webinar_replay by email: sent" in out
    assert "replay_click: the clicked of replay did not come -> timeout" in out
    assert "last_call: webinar_last_chance by email: sent" in out
    assert "fit: (score >= 20: no (score 5)" in out
    assert "2 message(s) sent" in out
