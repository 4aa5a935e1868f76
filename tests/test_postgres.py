"""The same code on PostgreSQL: migrations, sign-up, a welcome journey with a click.

Starts a throwaway PostgreSQL cluster (initdb + pg_ctl from the machine's PostgreSQL) on a
Unix socket; skipped, saying why, where no PostgreSQL server is installed — except in CI
(``RELANCE_TESTS_REQUIRE_POSTGRES=1``, set by ``.ci/run``), where that is a failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC

import httpx
import pytest
from sqlmodel import Session, col, select

from api import crud
from api.main import create_app
from api.schemas import LeadCreate
from relance.contracts.signals import CLICKED, OPENED, TrackingSignal
from relance.dev.postgres import pg_bin, throwaway_postgres
from relance.dev.seeding import make_lead_factory, unique_id
from relance.dev.serving import ServedApp, listening_socket
from relance.domain.db import make_engine
from relance.domain.models import ScoreEvent, TrackingEvent
from relance.domain.tokens import TokenSigner, TrackingToken
from relance.services.outbox import OutboxDispatcher
from relance.services.tracking import Hit, record_hits
from tests.conftest import EMAIL_CONSENT
from tests.test_outbox_stream import _count_is, signalled_messages
from tests.test_scoring import check_a_batch_of_scores
from tests.test_tracking_flood import hammer, sign_up
from tests.waiting import eventually, stored_hits
from tests.waiting import signals_received as signals
from worker import build_worker
from workflows.welcome import WelcomeInput, WelcomeJourney


def _cannot_run(why: str) -> None:
    if os.environ.get("RELANCE_TESTS_REQUIRE_POSTGRES"):
        pytest.fail(f"PostgreSQL tests are required here but {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    if not (pg_bin("initdb") and pg_bin("pg_ctl")):
        _cannot_run("no PostgreSQL server is installed (initdb/pg_ctl not found)")
    if os.geteuid() == 0 and not shutil.which("runuser"):  # PostgreSQL refuses to run as root
        _cannot_run("running as root without runuser: cannot start PostgreSQL")
    with throwaway_postgres() as url:
        yield url


def test_sign_up_on_postgres_deduplicates_by_email(postgres_url):
    engine = make_engine(postgres_url)
    data = LeadCreate(email="Lin@Example.com", first_name="Lin", consents=[EMAIL_CONSENT])
    with Session(engine) as session:
        first, created = crud.save_sign_up(session=session, data=data, default_phone_region="FR")
    with Session(engine) as session:
        again, created_again = crud.save_sign_up(
            session=session,
            data=data.model_copy(update={"email": "lin@example.com"}),
            default_phone_region="FR",
        )
    assert created and not created_again and first.id == again.id
    assert again.consents == {"email": "granted", "sms": "none", "webhook": "none"}


async def test_a_welcome_journey_runs_on_postgres(postgres_url, time_skipping_env, settings, sink):
    engine = make_engine(postgres_url)
    pg_settings = settings.model_copy(
        update={"database_url": postgres_url, "temporal_task_queue": unique_id("pg")}
    )
    with Session(engine) as session:
        lead, _ = crud.save_sign_up(
            session=session,
            data=LeadCreate(
                email=f"{unique_id('pg')}@example.com", first_name="Lin", consents=[EMAIL_CONSENT]
            ),
            default_phone_region="FR",
        )
    client = time_skipping_env.client
    async with build_worker(client, pg_settings, engine):
        handle = await client.start_workflow(
            WelcomeJourney.run,
            WelcomeInput(lead_id=lead.id),
            id=unique_id(f"welcome-{lead.id}"),
            task_queue=pg_settings.temporal_task_queue,
        )
        [mail] = await sink.wait_for_mail(to=lead.email)
        assert mail.subject == "Welcome to Relance, Lin!"

        async def recorded():  # the mail is out; the activity result lands a moment later
            status = await handle.query(WelcomeJourney.status)
            return status if status.messages else None

        status = await eventually(recorded, timeout=15, what="the welcome to be recorded")
        await handle.signal(
            CLICKED, TrackingSignal(status.messages[0].message_id, "https://example.com/guides")
        )
        result = await handle.result()
    assert (
        result.outcome == "clicked"
        and result.score == settings.scoring_rules().events["email_clicked"]
    )
    with Session(engine) as session:
        assert len(session.exec(select(ScoreEvent).where(ScoreEvent.lead_id == lead.id)).all()) == 1


def test_sales_tasks_round_robin_on_postgres_even_when_concurrent(postgres_url, settings):
    """The counter row is incremented under a row lock: 8 tasks created at once, by 8 threads,
    go 4 and 4 to two reps, each created once however often its creation is retried."""
    from concurrent.futures import ThreadPoolExecutor
    from datetime import datetime, timedelta

    from temporalio.testing import ActivityEnvironment

    from activities.sales import SalesActivities
    from relance.contracts.sales import TaskRequest
    from relance.domain.models import SalesTask
    from relance.domain.rendering import Renderer
    from relance.domain.settings import SalesRep
    from relance.domain.tokens import TokenSigner

    engine = make_engine(postgres_url)
    reps = [SalesRep(email=f"{n}@sales.example.com", name=n) for n in ("ana", "bo")]
    activities = SalesActivities(
        settings.model_copy(update={"sales_reps": reps}),
        engine,
        Renderer(TokenSigner("k", max_age_seconds=60), "http://x"),
    )
    leads = []
    with Session(engine) as session:
        for _ in range(8):
            lead, _ = crud.save_sign_up(
                session=session,
                data=LeadCreate(email=f"{unique_id('rr')}@example.com"),
                default_phone_region="FR",
            )
            leads.append(lead.id)
    due = datetime.now(UTC) + timedelta(days=2)

    def create(lead_id: str) -> str:
        request = TaskRequest(lead_id, f"nurture-{lead_id}", f"nurture-{lead_id}:t", "test", due)
        first = ActivityEnvironment().run(activities.create_sales_task, request)
        assert (
            ActivityEnvironment().run(activities.create_sales_task, request).task_id
            == first.task_id
        )
        return first.task_id

    with ThreadPoolExecutor(max_workers=8) as pool:
        task_ids = list(pool.map(create, leads))
    with Session(engine) as session:
        assignees = [session.get(SalesTask, task_id).assignee for task_id in task_ids]
    assert sorted(assignees) == ["ana@sales.example.com"] * 4 + ["bo@sales.example.com"] * 4


def test_erasure_and_export_on_postgres(postgres_url, settings):
    """PostgreSQL enforces every foreign key: the erasure deletes children before the lead."""
    from datetime import timedelta

    from sqlalchemy import func
    from sqlalchemy import select as sa_select

    from api import privacy
    from relance.domain.models import (
        Broadcast,
        BroadcastRecipient,
        Cart,
        CustomEvent,
        EnrollmentRefusal,
        Event,
        FrequencyLock,
        JourneyRun,
        ListMember,
        Message,
        MqlNotification,
        Order,
        PromoCode,
        Registration,
        SalesTask,
        SegmentTriggerMember,
        SuppressionEntry,
        TrackingEvent,
        TriggerFire,
        utcnow,
    )
    from relance.domain.suppression import email_hash
    from relance.services.erasure import erase_lead, lead_columns, tables_to_erase

    engine = make_engine(postgres_url)
    email = f"{unique_id('erase')}@example.com"
    with Session(engine) as session:
        lead, _ = crud.upsert_lead(
            session=session,
            data=LeadCreate(email=email, consents=[EMAIL_CONSENT], attributes={"plan": "pro"}),
            default_phone_region="FR",
        )
        event = Event(
            name="Webinar",
            starts_at=utcnow() + timedelta(days=3),
            join_url="https://meet.example.com/x",
        )
        message = Message(
            send_key=f"w-{lead.id}:welcome",
            lead_id=lead.id,
            workflow_id=f"w-{lead.id}",
            journey="welcome",
            step="welcome",
            channel="email",
            template="welcome",
            status="sent",
        )
        broadcast = Broadcast(
            audience_kind="list",
            audience_id="loyal-customers",
            template="nurture_welcome_newsletter",
            channel="email",
            send_at=utcnow(),
            per_hour=100,
        )
        session.add_all([event, message, broadcast])
        session.flush()
        session.add_all(
            [
                ScoreEvent(
                    lead_id=lead.id,
                    key=f"k-{lead.id}",
                    event="email_clicked",
                    points=5,
                    reason="click",
                ),
                TrackingEvent(
                    kind="clicked",
                    message_id=message.id,
                    lead_id=lead.id,
                    workflow_id=message.workflow_id,
                ),
                Cart(id=f"c-{lead.id}", lead_id=lead.id, items=[{"sku": "B-1"}]),
                Order(id=f"o-{lead.id}", lead_id=lead.id, items=[{"sku": "B-1"}], total=12.5),
                PromoCode(
                    code=unique_id("P")[:32],
                    lead_id=lead.id,
                    issued_for=f"w-{lead.id}:promo",
                    percent_off=10,
                ),
                ListMember(list_name="loyal-customers", lead_id=lead.id, reason="repeat purchase"),
                Registration(
                    event_id=event.id, lead_id=lead.id, workflow_id=f"event-{event.id}-{lead.id}"
                ),
                SalesTask(
                    task_key=f"nurture-{lead.id}:download",
                    lead_id=lead.id,
                    workflow_id=f"nurture-{lead.id}",
                    reason="downloaded the white paper",
                    due_at=utcnow() + timedelta(days=2),
                ),
                FrequencyLock(lead_id=lead.id, channel="email", version=1),
                MqlNotification(lead_id=lead.id, score=55, threshold=50, reason="clicked"),
                EnrollmentRefusal(
                    refusal_key=f"scenario-white_paper-{lead.id}:r:newsletter",
                    lead_id=lead.id,
                    workflow_id=f"scenario-white_paper-{lead.id}",
                    source="white_paper",
                    target="newsletter",
                    chain=["newsletter", "white_paper"],
                    reason="would loop",
                ),
                CustomEvent(lead_id=lead.id, name="trial_started", properties={"plan": "pro"}),
                JourneyRun(
                    workflow_id=f"w-{lead.id}",
                    run_id="run-1",
                    lead_id=lead.id,
                    journey="welcome",
                    entered_at=utcnow(),
                    checkpoints=["engaged"],
                ),
                BroadcastRecipient(broadcast_id=broadcast.id, position=1, lead_id=lead.id),
                SegmentTriggerMember(journey="birthday", segment_id="s-1", lead_id=lead.id),
                TriggerFire(
                    fire_key=f"birthday:0:{lead.id}:2027-03-15", lead_id=lead.id, journey="birthday"
                ),
            ]
        )
        session.commit()
        lead_id, event_id = lead.id, event.id

    with Session(engine) as session:
        profile, data = privacy.export_rows(session=session, lead_id=lead_id, actor="api-key:test")
    assert profile["email"] == email and all(data[t.name] for t in tables_to_erase())
    assert profile["attributes"] == {"plan": "pro"}
    assert data["orders"][0]["items"] == [{"sku": "B-1"}]

    report = erase_lead(
        engine, lead_id, actor="api-key:test", reason="test", hash_key=settings.secret_key
    )
    assert report.found and report.rows_deleted["leads"] == 1
    with Session(engine) as session:
        for table in tables_to_erase():
            for column in lead_columns(table):
                left = session.execute(
                    sa_select(func.count()).select_from(table).where(table.c[column] == lead_id)
                ).scalar()
                assert left == 0, table.name
        assert (
            session.get(SuppressionEntry, email_hash(settings.secret_key, email)).reason == "erased"
        )
        assert session.get(Event, event_id) is not None  # the event is not the lead's


def test_a_read_only_postgres_is_reported_and_its_writes_refused_clearly(postgres_url):
    """A standby, or a database set read-only: health sees it, and a write raises the error the
    API answers with a 503 (SQLSTATE 25006), not an unexplained 500."""
    from urllib.parse import quote

    from relance.domain.db import DatabaseNotWritable, accepts_writes

    with Session(make_engine(postgres_url)) as session:
        assert accepts_writes(session) is True
    read_only = make_engine(
        f"{postgres_url}&options={quote('-c default_transaction_read_only=on')}"
    )
    with Session(read_only) as session:
        assert accepts_writes(session) is False
    data = LeadCreate(email=f"{unique_id('ro')}@example.com", consents=[EMAIL_CONSENT])
    with Session(read_only) as session, pytest.raises(DatabaseNotWritable):
        crud.save_sign_up(session=session, data=data, default_phone_region="FR")
    with Session(read_only) as session:  # the pool goes on: reads still work
        assert session.exec(select(ScoreEvent).limit(1)).all() is not None


LEADS, OPENS = 24, 10  # a campaign's opens: many journeys, a few hits each


async def test_two_api_processes_share_the_tracking_outbox_on_postgres(
    postgres_url, dev_server_env, settings, sink
):
    """Two APIs on one PostgreSQL database, each with its own dispatcher, hit at the same time:
    every hit reaches its journey exactly once (counted in the journeys' histories)."""
    socks = [listening_socket("127.0.0.1", 0) for _ in range(2)]
    pg_settings = settings.model_copy(
        update={
            "database_url": postgres_url,
            "temporal_task_queue": unique_id("pg-outbox"),
            "welcome_relance_by_sms": False,
            "temporal_address": dev_server_env.client.service_client.config.target_host,
            "public_base_url": f"http://127.0.0.1:{socks[0].getsockname()[1]}",
        }
    )
    apps = [create_app(pg_settings) for _ in socks]
    apis = [
        ServedApp(app, sock=sock, lifespan="on") for app, sock in zip(apps, socks, strict=False)
    ]
    engine = make_engine(postgres_url)
    signer = TokenSigner(pg_settings.secret_key, max_age_seconds=3600)
    for app, api in zip(apps, apis, strict=False):
        await api.start()
        app.state.outbox.batch_size = (
            20  # batches smaller than the hits: the two dispatchers race for rows
        )
    try:
        async with (
            build_worker(dev_server_env.client, pg_settings, engine),
            httpx.AsyncClient(
                base_url=apis[0].url, headers={"X-API-Key": pg_settings.api_key}
            ) as http,
        ):
            leads = [
                lead_id
                for lead_id, _, _ in await asyncio.gather(
                    *(sign_up(http, sink) for _ in range(LEADS))
                )
            ]
            opens = {
                lead_id: [
                    "/t/o/"
                    + signer.sign(
                        TrackingToken("open", uuid.uuid4().hex, lead_id, f"welcome-{lead_id}")
                    )
                    for _ in range(OPENS)
                ]
                for lead_id in leads
            }  # distinct messages: each must be told
            paths = [
                opens[lead_id][i] for i in range(OPENS) for lead_id in leads
            ]  # the journeys interleaved
            results = await asyncio.gather(
                *(hammer(paths[n::2], connections=8, api=api.url) for n, api in enumerate(apis))
            )
            assert results == [{200: LEADS * OPENS // 2}] * 2

            def settled() -> bool:
                with Session(engine) as session:
                    rows = session.exec(
                        select(TrackingEvent).where(col(TrackingEvent.lead_id).in_(leads))
                    ).all()
                return len(rows) == LEADS * OPENS and all(r.delivered_at for r in rows)

            await eventually(settled, timeout=30, what="every hit to be settled")
            for lead_id in leads:
                assert (
                    await signals(dev_server_env.client, f"welcome-{lead_id}") == ["opened"] * OPENS
                )
    finally:
        for api in apis:
            await api.stop()
        engine.dispose()


async def test_two_dispatchers_leasing_one_postgres_outbox_tell_each_journey_in_order(
    postgres_url, live
):
    """Two dispatchers on one PostgreSQL database, small claims, each journey stamped as soon
    as it is settled: a journey leased by one is left out by the other even where its later
    hits are not locked, so each journey hears each of its opens once, in the order received."""
    engine = make_engine(postgres_url)
    lead = make_lead_factory(engine)()
    journeys = [f"welcome-{(await sign_up(live.http, live.sink))[0]}" for _ in range(4)]
    sent = {journey: [uuid.uuid4().hex for _ in range(25)] for journey in journeys}
    record_hits(
        engine,
        [
            Hit(TrackingToken("open", sent[journey][n], lead.id, journey), OPENED, None, None)
            for n in range(25)
            for journey in journeys  # interleaved, as a campaign's opens are
        ],
    )
    outboxes = [
        OutboxDispatcher(engine, live.temporal, batch_size=7, max_delay_seconds=0, poll_seconds=0.1)
        for _ in range(2)
    ]
    delivering = [asyncio.create_task(outbox.run()) for outbox in outboxes]
    try:
        await eventually(
            lambda: all(h.delivered_at for h in stored_hits(engine, lead.id)),
            timeout=60,
            what="the 100 hits to be settled",
        )
    finally:
        for task in delivering:
            task.cancel()
        await asyncio.gather(*delivering, return_exceptions=True)
        engine.dispose()
    for journey in journeys:
        told = await eventually(
            lambda j=journey: _count_is(signalled_messages(live.temporal, j), len(sent[j])),
            timeout=10,
            what="every open in the journey's history",
        )
        assert told == sent[journey]


def test_a_batch_of_scores_on_postgres_counts_each_key_once(postgres_url, settings):
    """The outbox's batch scoring (INSERT ... ON CONFLICT DO NOTHING, one UPDATE per lead) in
    PostgreSQL's dialect: the same counts and the same one notification as on SQLite."""
    engine = make_engine(postgres_url)
    try:
        check_a_batch_of_scores(engine, settings.score_mql_threshold)
    finally:
        engine.dispose()
