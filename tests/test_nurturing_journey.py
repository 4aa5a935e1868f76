"""The lead-nurturing journey on the time-skipping server, with the real activities,
database and mail sink: the sequence, the gate and its feedback loop, sales hand-off tasks."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.sales import SalesActivities
from relance.contracts.nurturing import NurturingSequence
from relance.contracts.sales import TaskNotice, TaskRef, TaskRequest
from relance.contracts.signals import (
    ASSET_DOWNLOADED,
    CLICKED,
    SCORE_CHANGED,
    TASK_COMPLETED,
    AssetSignal,
    ScoreSignal,
    TaskSignal,
    TrackingSignal,
)
from relance.dev.seeding import DEFAULT_SEQUENCE_FILE as DEFAULT_FILE
from relance.dev.seeding import default_sequence, unique_id
from relance.domain.models import Lead, SalesTask
from relance.domain.rendering import Renderer
from relance.domain.settings import SalesRep
from relance.domain.tokens import TokenSigner
from relance.services.nurturing import SequenceError, parse_sequence
from worker import build_worker
from workflows.nurturing import (
    LeadNurturingJourney,
    NurturingInput,
    NurturingResult,
    add_business_days,
)

ROOT = Path(__file__).resolve().parent.parent
ALL_STEPS = [
    "welcome_newsletter",
    "case_study",
    "white_paper",
    "demo_proposal",
    "promotional_offer",
]
DAY = timedelta(days=1)


@pytest.fixture
def sales(settings):
    """Settings with one rep of its own (so its inbox is this test's) and a manager."""
    tag = uuid.uuid4().hex[:8]
    rep = SalesRep(email=f"rep-{tag}@sales.example.com", name=f"Rep {tag}")
    return settings.model_copy(
        update={
            "sales_reps": [rep],
            "sales_manager_email": f"manager-{tag}@sales.example.com",
            "temporal_task_queue": f"nurture-{tag}",
        }
    )


@pytest.fixture
async def worker(client, sales, engine):
    async with build_worker(client, sales, engine) as running:
        yield running


async def start(
    client: Client, sales, lead, sequence: NurturingSequence | None = None, **knobs
) -> WorkflowHandle:
    return await client.start_workflow(
        LeadNurturingJourney.run,
        NurturingInput(
            lead_id=lead.id,
            sequence=sequence or default_sequence(),
            mql_threshold=sales.score_mql_threshold,
            **knobs,
        ),
        id=unique_id(f"nurture-{lead.id}"),
        task_queue=sales.temporal_task_queue,
    )


async def wait_for_step(handle: WorkflowHandle, step: str, timeout: float = 10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while (status := await handle.query(LeadNurturingJourney.status)).step != step:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"journey still at {status.step!r}, expected {step!r}")
        await asyncio.sleep(0.02)
    return status


async def wait_for_tasks(
    engine, lead_id: str, count: int = 1, timeout: float = 10.0
) -> list[SalesTask]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        with Session(engine) as session:
            tasks = session.exec(
                select(SalesTask).where(SalesTask.lead_id == lead_id).order_by(SalesTask.created_at)
            ).all()
        if len(tasks) >= count:
            return list(tasks)
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{len(tasks)} sales task(s) for lead {lead_id}, expected {count}")
        await asyncio.sleep(0.02)


def offsets(result: NurturingResult) -> list[timedelta]:
    t0 = result.messages[0].at
    return [m.at - t0 for m in result.messages]


def approx_days(deltas: list[timedelta], days: list[float]) -> bool:
    return len(deltas) == len(days) and all(
        abs(d - timedelta(days=x)) < timedelta(minutes=1)
        for d, x in zip(deltas, days, strict=False)
    )


# The sequence and its gate ---------------------------------------------------------------------
async def test_white_paper_downloaded_by_its_tracked_link_opens_the_demo_proposal(
    client, time_skipping_env: WorkflowEnvironment, sales, worker, sink, make_lead, engine
):
    lead = make_lead()
    handle = await start(client, sales, lead)
    await wait_for_step(handle, "waiting_for_case_study")
    await time_skipping_env.sleep(8 * DAY + timedelta(hours=1))
    status = await wait_for_step(handle, "waiting_for_demo_proposal")
    assert status.gate == "demo_proposal requires the white-paper downloaded"
    white_paper = status.messages[-1]
    assert white_paper.step == "white_paper"

    # The lead clicks the white paper's tracked link (the click signal carries the destination).
    await handle.signal(
        CLICKED, TrackingSignal(white_paper.message_id, "https://example.com/resources/white-paper")
    )
    result: NurturingResult = await handle.result()

    assert result.outcome == "sequence_completed"
    assert (
        result.steps_sent == ALL_STEPS
        and result.loops == {}
        and result.downloads == ["white-paper"]
    )
    assert approx_days(offsets(result), [0, 4, 8, 12, 16])
    subjects = [m.subject for m in await sink.wait_for_mail(to=lead.email, count=5)]
    assert subjects[3] == "Ada, shall we show you in 30 minutes?"
    assert len(sink.mails_to(lead.email)) == 5
    # The download handed the lead to sales: one task, for the configured rep.
    [task] = result.tasks
    assert task.reason == "downloaded the white-paper" and task.assignee == sales.sales_reps[0].name


async def test_never_downloaded_gets_the_alternative_twice_then_the_configured_end(
    client, sales, worker, sink, make_lead, engine
):
    lead = make_lead()
    result: NurturingResult = await (await start(client, sales, lead)).result()

    assert result.outcome == "gate_not_met"
    assert result.steps_sent == [
        "welcome_newsletter",
        "case_study",
        "white_paper",
        "demo_proposal_alt_1",
        "demo_proposal_alt_2",
    ]
    assert result.loops == {"demo_proposal": 2}  # the configured bound, not one more
    assert approx_days(offsets(result), [0, 4, 8, 12, 16])
    mails = await sink.wait_for_mail(to=lead.email, count=5)
    assert [m.subject for m in mails].count(
        "Another story: from 3 % to 11 % conversion in a quarter"
    ) == 2
    # The journey is over: every send it made was accepted by the sink before its activity ended.
    assert len(sink.mails_to(lead.email)) == 5  # no demo proposal, no offer
    assert result.tasks == []  # no download, no score: nothing for sales


async def test_gate_set_to_skip_moves_on_and_a_download_during_the_loop_ends_the_wait(
    client, time_skipping_env, sales, worker, sink, make_lead
):
    skipping = parse_sequence(
        DEFAULT_FILE.read_text()
        .replace("on_exhausted: end", "on_exhausted: skip")
        .replace("max_loops: 2", "max_loops: 1")
    )
    result = await (await start(client, sales, make_lead(), skipping)).result()
    assert result.outcome == "sequence_completed"
    assert result.steps_sent == [
        "welcome_newsletter",
        "case_study",
        "white_paper",
        "demo_proposal_alt_1",
        "promotional_offer",
    ]
    assert approx_days(
        offsets(result), [0, 4, 8, 12, 20]
    )  # the alternative's wait, then the offer's delay

    lead = make_lead()
    handle = await start(client, sales, lead)
    await wait_for_step(handle, "waiting_for_case_study")
    await time_skipping_env.sleep(12 * DAY + timedelta(hours=1))
    await wait_for_step(handle, "feedback_demo_proposal")
    await time_skipping_env.sleep(DAY)
    await handle.signal(ASSET_DOWNLOADED, AssetSignal("white-paper"))
    await wait_for_step(handle, "waiting_for_promotional_offer")
    status = await handle.query(LeadNurturingJourney.status)
    assert [m.step for m in status.messages][-2:] == ["demo_proposal_alt_1", "demo_proposal"]
    assert status.messages[-1].at - status.messages[-2].at < timedelta(
        days=1, hours=2
    )  # at once, not 4 days later
    assert status.gate is None and [t.reason for t in status.open_tasks] == [
        "downloaded the white-paper"
    ]
    await handle.signal(TASK_COMPLETED, TaskSignal(status.open_tasks[0].task_id, "not_interested"))
    result = await handle.result()
    assert result.outcome == "not_interested" and "promotional_offer" not in result.steps_sent


# Sales hand-off ---------------------------------------------------------------------------------
async def test_download_creates_a_task_the_rep_is_emailed_meeting_booked_converts(
    client, sales, worker, sink, make_lead, engine
):
    lead = make_lead(first_name="Lina")
    handle = await start(client, sales, lead)
    await wait_for_step(handle, "waiting_for_case_study")
    await handle.signal(ASSET_DOWNLOADED, AssetSignal("white-paper"))
    await handle.signal(ASSET_DOWNLOADED, AssetSignal("white-paper"))  # downloaded twice: one task

    [task] = await wait_for_tasks(engine, lead.id)
    rep = sales.sales_reps[0].email
    assert (
        task.assignee == rep
        and task.status == "open"
        and task.reason == "downloaded the white-paper"
    )
    [mail] = await sink.wait_for_mail(to=rep)
    assert mail.subject == "New lead to call: Lina (downloaded the white-paper)"
    assert lead.email in mail.text and f"/tasks/{task.id}/complete" in mail.text
    assert mail.headers["X-Relance-Task"] == f"{task.id}/assigned"
    status = await handle.query(LeadNurturingJourney.status)
    assert [t.task_id for t in status.open_tasks] == [task.id]

    await handle.signal(TASK_COMPLETED, TaskSignal(task.id, "meeting_booked"))
    result: NurturingResult = await handle.result()
    assert result.outcome == "converted" and result.steps_sent == ["welcome_newsletter"]
    assert result.tasks[0].status == "done" and result.tasks[0].outcome == "meeting_booked"
    assert len(sink.mails_to(sales.sales_manager_email)) == 0


async def test_an_overdue_task_is_escalated_to_the_manager_exactly_once(
    client, time_skipping_env, sales, worker, sink, make_lead, engine
):
    lead = make_lead()
    handle = await start(client, sales, lead)
    await wait_for_step(handle, "waiting_for_case_study")
    await handle.signal(ASSET_DOWNLOADED, AssetSignal("white-paper"))
    [task] = await wait_for_tasks(engine, lead.id)
    result: NurturingResult = await handle.result()  # nobody completes the task

    assert result.outcome == "sequence_completed"
    with Session(engine) as session:
        task = session.get(SalesTask, task.id)
    assert (
        task.status == "escalated"
        and task.escalated_at is not None
        and task.escalation_notified_at is not None
    )
    due = task.due_at.replace(tzinfo=UTC)  # 2 business days after the download, in workflow time
    assert (
        abs(due - add_business_days(result.messages[0].at, 2)) < timedelta(minutes=1)
        and due.weekday() < 5
    )
    escalations = [
        m
        for m in sink.mails_to(sales.sales_manager_email)
        if m.headers["X-Relance-Task"] == f"{task.id}/escalated"
    ]
    assert len(escalations) == 1 and escalations[0].subject.startswith("Overdue sales task")
    assert result.tasks[0].status == "escalated" and result.tasks[0].escalated

    # A retried escalation (at-least-once activities) changes nothing and sends nothing.
    activities = SalesActivities(
        sales, engine, Renderer(TokenSigner("k", max_age_seconds=3600), sales.public_base_url)
    )
    env = ActivityEnvironment()
    assert (
        await asyncio.to_thread(env.run, activities.escalate_sales_task, TaskRef(task.id))
    ).escalated
    assert (
        await asyncio.to_thread(
            env.run, activities.notify_sales_task, TaskNotice(task.id, "escalated")
        )
    ).sent
    assert len(sink.mails_to(sales.sales_manager_email)) == 1


async def test_crossing_the_mql_threshold_creates_a_task_once_per_crossing(
    client, time_skipping_env, sales, worker, make_lead, engine
):
    lead = make_lead()
    handle = await start(client, sales, lead)
    await wait_for_step(handle, "waiting_for_case_study")
    for score in (30, 55, 70):  # one crossing
        await handle.signal(SCORE_CHANGED, ScoreSignal(score))
    [first] = await wait_for_tasks(engine, lead.id)
    assert first.reason == f"score 55 reached the MQL threshold ({sales.score_mql_threshold})"
    await handle.signal(SCORE_CHANGED, ScoreSignal(20))
    await handle.signal(SCORE_CHANGED, ScoreSignal(50))  # a second crossing
    tasks = await wait_for_tasks(engine, lead.id, count=2)
    assert tasks[1].reason == f"score 50 reached the MQL threshold ({sales.score_mql_threshold})"
    await handle.signal(TASK_COMPLETED, TaskSignal(first.id, "called"))  # a call changes nothing
    await handle.signal(TASK_COMPLETED, TaskSignal(tasks[1].id, "meeting_booked"))
    result = await handle.result()
    assert result.outcome == "converted" and len(result.tasks) == 2


async def test_a_lead_already_above_the_threshold_is_handed_off_at_enrollment(
    client, sales, worker, make_lead, engine
):
    lead = make_lead()
    with Session(engine) as session:
        row = session.get(Lead, lead.id)
        row.score = 60  # from other journeys' clicks and purchases
        session.add(row)
        session.commit()
    handle = await start(client, sales, lead)
    [task] = await wait_for_tasks(engine, lead.id)
    assert task.reason == f"score 60 reached the MQL threshold ({sales.score_mql_threshold})"
    await handle.signal(TASK_COMPLETED, TaskSignal(task.id, "not_interested"))
    result = await handle.result()
    assert result.outcome == "not_interested" and result.score == 60 and len(result.tasks) == 1


def test_due_dates_skip_the_weekend():
    friday = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    assert add_business_days(friday, 2) == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)  # Tuesday
    assert add_business_days(friday + DAY, 2) == datetime(
        2026, 12, 1, 10, 0, tzinfo=UTC
    )  # from Saturday
    assert add_business_days(friday - 4 * DAY, 2) == datetime(
        2026, 11, 25, 10, 0, tzinfo=UTC
    )  # Mon -> Wed


# Assignment ----------------------------------------------------------------------------------
async def test_round_robin_over_generalists_and_territory_by_lead_country(
    settings, engine, make_lead
):
    tag = uuid.uuid4().hex[:6]
    a, b = (SalesRep(email=f"{n.lower()}-{tag}@sales.example.com", name=n) for n in ("Ana", "Bo"))
    nordic = [
        SalesRep(email=f"{n.lower()}-{tag}@sales.example.com", name=n, countries=["IS"])
        for n in ("Ida", "Jon")
    ]
    configured = settings.model_copy(update={"sales_reps": [a, *nordic, b]})
    activities = SalesActivities(
        configured,
        engine,
        Renderer(TokenSigner("k", max_age_seconds=3600), settings.public_base_url),
    )
    env = ActivityEnvironment()

    def create(country: str | None) -> SalesTask:
        lead = make_lead()
        with Session(engine) as session:
            row = session.get(Lead, lead.id)
            row.country = country
            session.add(row)
            session.commit()
        due = datetime.now(UTC) + 2 * DAY
        created = env.run(
            activities.create_sales_task,
            TaskRequest(lead.id, f"nurture-{lead.id}", f"nurture-{lead.id}:t", "test", due),
        )
        again = env.run(
            activities.create_sales_task,
            TaskRequest(lead.id, f"nurture-{lead.id}", f"nurture-{lead.id}:t", "test", due),
        )
        assert again.task_id == created.task_id  # a retried creation finds its task
        with Session(engine) as session:
            return session.get(SalesTask, created.task_id)

    generalists = [create(None).assignee for _ in range(4)] + [create("DE").assignee]
    assert set(generalists) == {a.email, b.email}
    assert all(
        x != y for x, y in zip(generalists, generalists[1:], strict=False)
    )  # strictly alternating
    icelanders = [create("IS") for _ in range(3)]
    assert [t.territory for t in icelanders] == ["IS"] * 3
    assert {t.assignee for t in icelanders} == {r.email for r in nordic}
    assert icelanders[0].assignee != icelanders[1].assignee != icelanders[2].assignee


# The sequence file ---------------------------------------------------------------------------
def test_the_default_sequence_is_the_seed_scenario():
    sequence = default_sequence()
    assert [s.name for s in sequence.steps] == ALL_STEPS
    assert [s.delay_days for s in sequence.steps] == [0, 4, 4, 4, 4]
    gate = sequence.steps[3].gate
    assert gate.downloaded == "white-paper" and gate.max_loops == 2 and gate.on_exhausted == "end"


@pytest.mark.parametrize(
    "change,message",
    [
        (("max_loops: 2", "max_loops: -1"), "step 4 (demo_proposal): requires.max_loops"),
        (
            ("template: nurture_case_study\n", "template: no_such_template\n"),
            "step 2 (case_study): template 'no_such_template' not found",
        ),
        (
            ("on_exhausted: end", "on_exhausted: forever"),
            "step 4 (demo_proposal): requires.on_exhausted",
        ),
        (("name: white_paper", "name: case_study"), "two steps are named 'case_study'"),
        (
            ("delay_days: 4\n    requires", "delay_days: soon\n    requires"),
            "step 4 (demo_proposal): delay_days",
        ),
    ],
)
def test_a_bad_sequence_file_is_refused_naming_the_step(change, message):
    with pytest.raises(SequenceError, match=None) as err:
        parse_sequence(DEFAULT_FILE.read_text().replace(*change), source="nurturing.yaml")
    assert message in str(err.value) and str(err.value).startswith("nurturing.yaml: ")
