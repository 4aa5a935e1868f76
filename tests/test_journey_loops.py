"""Loops between journeys (issue 7, seed 004 "redirection vers un autre scénario"): the
newsletter <-> white paper loop is refused at worker start when nothing guards it, and at run
time by the enrollment chain."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from relance.models import EnrollmentRefusal, Message
from tests.conftest import unique_id
from worker import build_worker, journey_links
from workflows.journey_graph import JourneyGraphError, Link, chain_refusal, check_graph
from workflows.scenario import SCENARIOS, ScenarioInput, ScenarioJourney, scenario_links, workflow_id

UNGUARDED = [Link("newsletter", "white_paper"), Link("white_paper", "newsletter")]


def test_an_unguarded_loop_is_a_start_up_error_that_names_it(client, settings, engine):
    with pytest.raises(JourneyGraphError, match="newsletter -> white_paper -> newsletter"):
        build_worker(client, settings, engine, links=UNGUARDED)
    longer = [Link("a", "b"), Link("b", "c"), Link("c", "a"), Link("c", "d")]
    with pytest.raises(JourneyGraphError, match="a -> b -> c -> a"):
        check_graph(longer)


def test_a_guard_on_one_link_lets_the_worker_start():
    check_graph([Link("newsletter", "white_paper"), Link("white_paper", "newsletter", guard="once per lead")])
    check_graph([Link("a", "b"), Link("b", "c")])  # no loop at all
    check_graph(journey_links())  # what ships: the seed's loop, guarded
    assert {(link.source, link.target) for link in scenario_links(SCENARIOS)} == {
        ("newsletter", "white_paper"), ("white_paper", "newsletter")}


def test_the_chain_refuses_a_return_and_a_chain_too_deep():
    assert chain_refusal(["newsletter"], "white_paper") == ""
    assert "would loop: newsletter -> white_paper -> newsletter" in chain_refusal(["newsletter", "white_paper"],
                                                                                  "newsletter")
    assert "depth of 2" in chain_refusal(["a", "b"], "c", max_depth=2)


@pytest.fixture
async def own_time_skipping_env():
    """Its own server: the time-skipping test server keeps time locked after a child workflow
    that outlives its parent (ABANDON), which would hang later tests' timers."""
    from temporalio.testing import WorkflowEnvironment

    from relance.temporal import bundled_binary, ensure_search_attributes

    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=bundled_binary("temporal-test-server"))
    await ensure_search_attributes(env.client, "default")
    yield env
    await env.shutdown()


async def test_at_run_time_the_white_paper_does_not_send_the_lead_back_to_the_newsletter(
        own_time_skipping_env, settings, engine, sink, make_lead):
    client = own_time_skipping_env.client
    lead = make_lead()
    queue = unique_id("loops")
    async with build_worker(client, settings, engine, task_queue=queue):
        # No wait between the scenarios: the time-skipping server does not skip time for a child
        # workflow's timers while the test waits on it.
        first = await client.execute_workflow(ScenarioJourney.run, ScenarioInput(lead.id, "newsletter", wait_days=0),
                                              id=workflow_id("newsletter", lead.id), task_queue=queue)
        assert first.outcome == "redirected" and first.redirected_to == "white_paper"
        second = await client.get_workflow_handle(workflow_id("white_paper", lead.id)).result()
    assert second["outcome"] == "redirect_refused"
    assert second["reason"] == "enrolling into newsletter would loop: newsletter -> white_paper -> newsletter"
    assert second["chain"] == ["newsletter", "white_paper"]
    with Session(engine) as session:
        sent = session.exec(select(Message.journey, Message.step).where(Message.lead_id == lead.id)).all()
    assert sorted(sent) == [("scenario", "newsletter"), ("scenario", "white_paper")]  # once each, no loop
    assert len(sink.mails_to(lead.email)) == 2
    with Session(engine) as session:  # the refusal is kept with the lead's data (export, erasure)
        [refusal] = session.exec(select(EnrollmentRefusal).where(EnrollmentRefusal.lead_id == lead.id)).all()
    assert (refusal.workflow_id, refusal.source, refusal.target) == (workflow_id("white_paper", lead.id), "white_paper",
                                                                     "newsletter")
    assert refusal.chain == ["newsletter", "white_paper"] and refusal.reason == second["reason"]
