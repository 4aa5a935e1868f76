"""What a journey costs in Temporal actions (billed per action on Temporal Cloud): the welcome's
whole path at least 30 % cheaper since the ``fewer-actions`` patch, on the worker production runs
(its run recorded in ``journey_runs`` included), and what the saving keeps: the steps a journey
waits in stay searchable, an open still shows the click step at once."""

from __future__ import annotations

import json
import re
from pathlib import Path

from sqlmodel import select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from bench.actions import count, load
from relance.contracts import search_attributes as sa
from relance.contracts.signals import CLICKED, EMAIL_CONFIRMED, OPENED, TrackingSignal
from relance.dev.seeding import unique_id
from relance.domain.db import session_scope
from relance.domain.models import Consent, JourneyRun
from relance.domain.tokens import TokenSigner
from relance.services.tracking import Hit, record_hits
from tests.waiting import eventually
from workflows.welcome import WelcomeInput, WelcomeJourney

HISTORIES = Path(__file__).parent / "histories"


def test_the_welcomes_whole_path_costs_at_least_30_percent_fewer_actions_since_the_patch():
    """Confirm, welcome, open, click: as journeys started before the patch ran it, and since."""
    before = count(load(HISTORIES / "welcome_double_opt_in_opened_clicked.json"))
    since = count(load(HISTORIES / "welcome_double_opt_in_opened_clicked_fewer_actions.json"))
    assert before.billable == 23  # the figure the journey was measured at
    assert since.signals == before.signals == 3  # the lead's confirm, open and click, all told
    assert since.billable <= 0.7 * before.billable, (since.describe(), before.describe())


def test_the_sdks_own_version_marker_is_not_counted_as_a_billed_upsert():
    """Temporal Cloud does not bill the ``TemporalChangeVersion`` upserts of ``workflow.patched``;
    the history holds two of them (double opt-in, send window) beside its 9 billed upserts."""
    path = HISTORIES / "welcome_double_opt_in_opened_clicked.json"
    upserts = [
        e
        for e in json.loads(path.read_text())["events"]
        if e["eventType"] == "EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES"
    ]
    assert len(upserts) == 11
    assert count(load(path)).search_attributes == 9


async def start(client: Client, settings, lead) -> WorkflowHandle:
    return await client.start_workflow(
        WelcomeJourney.run,
        WelcomeInput(lead_id=lead.id),
        id=unique_id(f"welcome-{lead.id}"),
        task_queue=settings.temporal_task_queue,
    )


async def shows_step(handle: WorkflowHandle, step: str) -> None:
    """Wait (with a deadline) until the ``Step`` search attribute says ``step``."""

    async def shown() -> bool:
        return (await handle.describe()).typed_search_attributes.get(sa.STEP) == step

    await eventually(shown, timeout=10, what=f"the Step search attribute to say {step}")


async def test_the_whole_path_on_the_production_worker_records_its_run_and_stays_30_percent_cheaper(
    client, settings, engine, worker, sink, make_lead
):
    """Confirm, welcome, open, click, on the worker ``build_worker`` makes (its interceptors
    record the run in ``journey_runs``): what production pays, against the 23 actions of the
    journey before the patch. The run's record costs one activity, its end."""
    lead = make_lead(consents=())
    with session_scope(engine) as session:
        session.add(Consent(lead_id=lead.id, channel="email", status="pending"))
    handle = await start(client, settings, lead)
    [mail] = await sink.wait_for_mail(to=lead.email)
    signer = TokenSigner(settings.secret_key, max_age_seconds=3600)
    token = signer.verify("confirm", re.search(r'/confirm/([^"]+)"', mail.html).group(1))
    record_hits(engine, [Hit(token, EMAIL_CONFIRMED, "test", "203.0.113.1")])
    await handle.signal(EMAIL_CONFIRMED, TrackingSignal(token.message_id))
    await sink.wait_for_mail(to=lead.email, count=2)
    await shows_step(handle, "waiting_for_open")
    welcome = (await handle.query(WelcomeJourney.status)).messages[1].message_id
    await handle.signal(OPENED, TrackingSignal(welcome))
    await shows_step(handle, "waiting_for_click")
    await handle.signal(CLICKED, TrackingSignal(welcome, "https://example.com/x"))
    result = await handle.result()

    assert result.outcome == "clicked"
    with session_scope(engine) as session:
        [run] = session.exec(select(JourneyRun).where(JourneyRun.lead_id == lead.id)).all()
        assert run.closed_at is not None and run.outcome == "clicked"
    history = await handle.fetch_history()
    activities = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert activities.count("record_journey_run") == 1
    since, before = (
        count(history),
        count(load(HISTORIES / "welcome_double_opt_in_opened_clicked.json")),
    )
    assert since.signals == 3
    assert since.billable <= 0.7 * before.billable, (since.describe(), before.describe())


async def test_an_open_shows_the_click_step_at_once_and_the_click_ends_the_journey_on_one_timer(
    client, settings, worker, sink, make_lead
):
    lead = make_lead()
    handle = await start(client, settings, lead)
    await sink.wait_for_mail(to=lead.email)
    await shows_step(handle, "waiting_for_open")
    status = await handle.query(WelcomeJourney.status)
    welcome = status.messages[0].message_id

    await handle.signal(OPENED, TrackingSignal(welcome))
    # The Temporal UI (and a search on Step) shows the lead is now counted for clicks.
    await shows_step(handle, "waiting_for_click")
    await handle.signal(CLICKED, TrackingSignal(welcome, "https://example.com/x"))
    result = await handle.result()

    assert result.outcome == "clicked" and result.relanced_by is None
    history = await handle.fetch_history()
    timers = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED]
    assert len(timers) == 1  # the 48 h wait, not cancelled by the open
    upserts = [
        e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES
    ]
    steps = [fields["Step"].data.decode() for fields in upserts if "Step" in fields]
    # Only the steps the journey stays in are searchable: not checking the consent, not sending.
    assert steps == ['"waiting_for_open"', '"waiting_for_click"', '"completed"']
    assert (await handle.describe()).typed_search_attributes.get(sa.SCORE) == result.score
