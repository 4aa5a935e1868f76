"""Loops between journeys (a scenario redirecting the lead into another scenario): the
newsletter <-> white paper loop is refused at worker start when nothing guards it, and at run
time by the enrollment chain."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import pytest
from sqlmodel import Session, select
from temporalio.client import WorkflowExecutionStatus

from relance.contracts.catalogue import SCENARIOS, scenario_links
from relance.contracts.journey_graph import JourneyGraphError, Link, chain_refusal, check_graph
from relance.dev.seeding import unique_id
from relance.domain.journey_rules import JourneyRules
from relance.domain.models import EnrollmentRefusal, Message
from worker import build_worker, journey_links, target_rules
from workflows.scenario import ScenarioInput, ScenarioJourney, workflow_id

UNGUARDED = [Link("newsletter", "white_paper"), Link("white_paper", "newsletter")]


def test_an_unguarded_loop_is_a_start_up_error_that_names_it(client, settings, engine):
    with pytest.raises(JourneyGraphError, match="newsletter -> white_paper -> newsletter"):
        build_worker(client, settings, engine, links=UNGUARDED)
    longer = [Link("a", "b"), Link("b", "c"), Link("c", "a"), Link("c", "d")]
    with pytest.raises(JourneyGraphError, match="a -> b -> c -> a"):
        check_graph(longer)


def test_a_guard_on_one_link_lets_the_worker_start():
    check_graph(
        [
            Link("newsletter", "white_paper"),
            Link("white_paper", "newsletter", guard="came_from"),
        ]
    )
    check_graph([Link("a", "b"), Link("b", "c")])  # no loop at all
    check_graph(journey_links())  # what ships: the seed's loop, guarded
    assert {(link.source, link.target) for link in scenario_links(SCENARIOS)} == {
        ("newsletter", "white_paper"),
        ("white_paper", "newsletter"),
    }


def test_the_chain_refuses_a_return_and_a_chain_too_deep():
    assert chain_refusal(["newsletter"], "white_paper") == ""
    assert "would loop: newsletter -> white_paper -> newsletter" in chain_refusal(
        ["newsletter", "white_paper"], "newsletter"
    )
    assert "depth of 2" in chain_refusal(["a", "b"], "c", max_depth=2)


@pytest.fixture
async def own_time_skipping_env():
    """Its own server: the time-skipping test server keeps time locked after a child workflow
    that outlives its parent (ABANDON), which would hang later tests' timers."""
    from temporalio.testing import WorkflowEnvironment

    from relance.services.temporal import bundled_binary, ensure_search_attributes

    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=bundled_binary("temporal-test-server")
    )
    await ensure_search_attributes(env.client, "default")
    yield env
    await env.shutdown()


async def test_at_run_time_the_white_paper_does_not_send_the_lead_back_to_the_newsletter(
    own_time_skipping_env, settings, engine, sink, make_lead
):
    client = own_time_skipping_env.client
    lead = make_lead()
    queue = unique_id("loops")
    async with build_worker(client, settings, engine, task_queue=queue):
        # No wait between the scenarios: the time-skipping server does not skip time for a child
        # workflow's timers while the test waits on it.
        first = await client.execute_workflow(
            ScenarioJourney.run,
            ScenarioInput(lead.id, "newsletter", wait_days=0),
            id=workflow_id("newsletter", lead.id),
            task_queue=queue,
        )
        assert first.outcome == "redirected" and first.redirected_to == "white_paper"
        second = await client.get_workflow_handle(workflow_id("white_paper", lead.id)).result()
    assert second["outcome"] == "redirect_refused"
    assert (
        second["reason"]
        == "enrolling into newsletter would loop: newsletter -> white_paper -> newsletter"
    )
    assert second["chain"] == ["newsletter", "white_paper"]
    with Session(engine) as session:
        sent = session.exec(
            select(Message.journey, Message.step).where(Message.lead_id == lead.id)
        ).all()
    # Once each, no loop (a run keys its send with its start time:
    # "newsletter@2026-11-23T10:00:00").
    assert sorted((journey, step.partition("@")[0]) for journey, step in sent) == [
        ("scenario", "newsletter"),
        ("scenario", "white_paper"),
    ]
    assert len(sink.mails_to(lead.email)) == 2
    with Session(engine) as session:  # the refusal is kept with the lead's data (export, erasure)
        [refusal] = session.exec(
            select(EnrollmentRefusal).where(EnrollmentRefusal.lead_id == lead.id)
        ).all()
    assert (refusal.workflow_id, refusal.source, refusal.target) == (
        workflow_id("white_paper", lead.id),
        "white_paper",
        "newsletter",
    )
    assert refusal.chain == ["newsletter", "white_paper"] and refusal.reason == second["reason"]


async def run_until_closed(client, workflow_id_: str, scenario_input: ScenarioInput, queue: str):
    """Start a scenario and poll until it closed, without waiting on its result: waiting on a
    result lets the time-skipping server skip ahead (to a closed run's timeout: 10 years), and
    this test needs the clock to stand still between the two journeys."""
    handle = await client.start_workflow(
        ScenarioJourney.run, scenario_input, id=workflow_id_, task_queue=queue
    )
    for _ in range(500):
        if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
            return handle
        await asyncio.sleep(0.02)
    raise AssertionError(f"{workflow_id_} did not finish")


async def test_a_redirect_into_a_scenario_the_lead_left_within_its_cooldown_is_refused_and_recorded(
    client, settings, engine, sink, make_lead
):
    """Journey-to-journey enrollments follow the target's rules too: the lead went through the
    white paper (that run closed just now), so the newsletter may not send it back there yet."""
    lead = make_lead()
    queue = unique_id("rules")
    async with build_worker(client, settings, engine, task_queue=queue):
        # The white paper alone (depth 1: it redirects nowhere), then the newsletter.
        first = await run_until_closed(
            client,
            workflow_id("white_paper", lead.id),
            ScenarioInput(lead.id, "white_paper", max_depth=1, wait_days=0),
            queue,
        )
        second = await run_until_closed(
            client,
            workflow_id("newsletter", lead.id),
            ScenarioInput(lead.id, "newsletter", wait_days=0),
            queue,
        )
        alone, result = await first.result(), await second.result()
    assert alone.outcome == "redirect_refused" and "depth of 1" in alone.reason
    assert result.outcome == "redirect_refused" and result.redirected_to == "white_paper", result
    assert re.fullmatch(
        r"left the white_paper scenario journey (just now|\d+ seconds? ago); cooldown 30 days",
        result.reason,
    ), result.reason
    with Session(engine) as session:
        refusals = session.exec(
            select(EnrollmentRefusal)
            .where(EnrollmentRefusal.lead_id == lead.id)
            .order_by(EnrollmentRefusal.created_at)
        ).all()
    assert [(r.source, r.target, r.reason) for r in refusals] == [
        ("white_paper", "newsletter", alone.reason),
        ("newsletter", "white_paper", result.reason),
    ]
    assert (
        len(sink.mails_to(lead.email)) == 2
    )  # the white paper, the newsletter; not the white paper again


async def test_a_scenario_run_again_sends_again(
    client, time_skipping_env, settings, engine, sink, make_lead
):
    """Once the cooldown allows it, a lead may go through a scenario again: the second run's send
    is keyed apart from the first run's (which is done), so it goes out."""
    lead = make_lead()
    queue = unique_id("again")
    async with build_worker(client, settings, engine, task_queue=queue):
        handles = []
        for _ in range(2):
            handles.append(
                await run_until_closed(
                    client,
                    workflow_id("white_paper", lead.id),
                    ScenarioInput(lead.id, "white_paper", max_depth=1, wait_days=0),
                    queue,
                )
            )
            await time_skipping_env.sleep(timedelta(seconds=2))
        results = [await h.result() for h in handles]
    assert [r.messages[0].status for r in results] == ["sent", "sent"]
    assert len(await sink.wait_for_mail(to=lead.email, count=2)) == 2
    with Session(engine) as session:
        keys = session.exec(select(Message.send_key).where(Message.lead_id == lead.id)).all()
        refusals = session.exec(
            select(EnrollmentRefusal).where(EnrollmentRefusal.lead_id == lead.id)
        ).all()
    assert len(set(keys)) == 2 and len(refusals) == 2  # one redirect refused (depth) per run


# Guards are conditions, checked ------------------------------------------------------------------
LOOP = [Link("newsletter", "white_paper"), Link("white_paper", "newsletter")]


def test_a_guard_is_a_known_condition_not_any_text(client, settings, engine):
    with pytest.raises(JourneyGraphError, match="unknown guard 'once per lead' on white_paper"):
        check_graph([LOOP[0], Link("white_paper", "newsletter", guard="once per lead")])
    with pytest.raises(JourneyGraphError, match="unknown guard"):  # even off any loop
        build_worker(client, settings, engine, links=[Link("a", "b", guard="trust me")])


def test_a_guard_that_the_targets_rules_do_not_make_true_does_not_guard(settings):
    once = [LOOP[0], Link("white_paper", "newsletter", guard="once")]
    cooldown = [LOOP[0], Link("white_paper", "newsletter", guard="cooldown")]
    # The scenarios allow re-enrollment after RELANCE_REENROLL_COOLDOWN_DAYS (30 by default).
    with pytest.raises(JourneyGraphError, match="once guard .* does not hold: newsletter allows"):
        check_graph(once, target_rules(settings))
    check_graph(cooldown, target_rules(settings))
    no_cooldown = settings.model_copy(
        update={"journey_rules": {"scenario": JourneyRules(cooldown_days=0)}}
    )
    with pytest.raises(JourneyGraphError, match="cooldown guard .* newsletter has no cooldown"):
        check_graph(cooldown, target_rules(no_cooldown))
    once_only = settings.model_copy(
        update={"journey_rules": {"scenario": JourneyRules(reenroll=False)}}
    )
    check_graph(once, target_rules(once_only))
    check_graph(journey_links(), target_rules(no_cooldown))  # what ships: the enrollment chain
