"""Failure tests: what happens to journeys and tracking hits when a part of the stack
dies. Each test runs its own real Temporal dev server on a SQLite file, so it can stop and
restart it (same port, same file) without disturbing the other tests.

    pytest -m failure        # just these
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.sending import RESENT
from relance.contracts import search_attributes
from relance.dev.devsink import DROP_AFTER_ACCEPT, DevSink
from relance.dev.seeding import TEST_CONVERTER, make_lead_factory
from relance.dev.serving import ServedApp, free_ports, listening_socket
from relance.domain.db import make_engine
from relance.domain.models import Message, TrackingEvent
from relance.domain.settings import Settings
from relance.services import migrate
from relance.services.temporal import bundled_binary
from tests.test_api_welcome_e2e import links, sign_up_body
from tests.waiting import eventually, signals_received, stored_hits
from workflows.welcome import WelcomeInput, WelcomeJourney

pytestmark = pytest.mark.failure

ROOT = Path(__file__).resolve().parent.parent


class RestartableTemporal:
    """A real dev server that can be stopped and started again on the same port and database."""

    def __init__(self, db_file: Path) -> None:
        self.db_file = db_file
        self.port = free_ports(1)[0]
        self.env: WorkflowEnvironment | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=bundled_binary("temporal"),
            dev_server_database_filename=str(self.db_file),
            port=self.port,
            search_attributes=search_attributes.ALL,
            data_converter=TEST_CONVERTER,
        )

    async def stop(self) -> None:
        assert self.env is not None
        await self.env.shutdown()
        self.env = None


@pytest.fixture
async def temporal(tmp_path: Path) -> AsyncIterator[RestartableTemporal]:
    server = RestartableTemporal(tmp_path / "temporal.db")
    await server.start()
    try:
        yield server
    finally:
        if server.env is not None:
            await server.stop()


@pytest.fixture
def own_settings(settings: Settings, temporal: RestartableTemporal, tmp_path: Path) -> Settings:
    """Its own database too: another test's API would deliver (and close) this test's kept hits."""
    database_url = f"sqlite:///{tmp_path / 'relance.db'}"
    migrate.upgrade(database_url)
    return settings.model_copy(
        update={
            "database_url": database_url,
            "temporal_address": temporal.address,
            "temporal_task_queue": f"failures-{uuid.uuid4().hex[:8]}",
            "welcome_relance_by_sms": False,
        }
    )


@pytest.fixture
def engine(own_settings: Settings) -> Engine:
    return make_engine(own_settings.database_url)


@pytest.fixture
def make_lead(engine: Engine):
    return make_lead_factory(engine)


# Temporal down while tracking hits arrive ---------------------------------------------------


async def test_hits_while_temporal_is_down_are_kept_and_delivered_once_it_is_back(
    temporal: RestartableTemporal,
    own_settings: Settings,
    engine: Engine,
    sink: DevSink,
    caplog: pytest.LogCaptureFixture,
):
    """Down longer than the Temporal client's own retries (about 10 s): the outbox's signal
    fails, and the outbox itself backs off, again and again, counting nothing against the hits;
    once Temporal is back, every hit reaches the journey once, in order."""
    from api.main import create_app
    from worker import build_worker

    caplog.set_level(logging.WARNING, logger="relance.services.outbox")
    sock = listening_socket("127.0.0.1", 0)
    settings = own_settings.model_copy(
        update={"public_base_url": f"http://127.0.0.1:{sock.getsockname()[1]}"}
    )
    api = ServedApp(create_app(settings), sock=sock, lifespan="on")
    await api.start()
    try:
        async with httpx.AsyncClient(
            base_url=api.url, headers={"X-API-Key": settings.api_key}
        ) as http:
            # A lead enrolled while everything runs gets the welcome email.
            worker_client = await Client.connect(temporal.address, data_converter=TEST_CONVERTER)
            async with build_worker(worker_client, settings, engine):
                email = f"outage-{uuid.uuid4().hex[:10]}@example.com"
                response = await http.post("/leads", json=sign_up_body(email, journeys=["welcome"]))
                assert response.status_code == 201, response.text
                lead_id = response.json()["lead"]["id"]
                workflow_id = f"welcome-{lead_id}"
                [mail] = await sink.wait_for_mail(to=email)
                [pixel] = links(mail.html, "o")
                click = links(mail.html, "c")[0]

            # Temporal goes down. The mail client still gets its GIF and its redirect.
            await temporal.stop()
            async with httpx.AsyncClient() as mail_client:
                opened = await mail_client.get(pixel)
                clicked = await mail_client.get(click)
            assert opened.status_code == 200 and opened.headers["content-type"] == "image/gif"
            assert clicked.status_code == 302 and clicked.headers["location"].startswith(
                "https://example.com/"
            )

            def kept() -> list[TrackingEvent]:
                return stored_hits(engine, lead_id)

            rows = await eventually(
                lambda: len(kept()) == 2 and kept(), timeout=5, what="both hits stored"
            )
            assert [r.kind for r in rows] == ["opened", "clicked"]

            def backoffs() -> list[str]:
                return [
                    r.getMessage()
                    for r in caplog.records
                    if "outbox: backing off" in r.getMessage()
                ]

            # The client gives up after its own retries; the outbox then backs off, and again,
            # longer, after its next try failed too.
            said = await eventually(
                lambda: len(backoffs()) >= 2 and backoffs(),
                timeout=60,
                what="the outbox to back off twice while Temporal is down",
                every=0.2,
            )
            assert said[:2] == [
                "outbox: backing off; the pending hits wait 0.5 s before the next try",
                "outbox: backing off; the pending hits wait 1.0 s before the next try",
            ], said
            assert any(
                "Temporal is unreachable" in r.getMessage()
                or "could not reach Temporal" in r.getMessage()
                for r in caplog.records
            ), caplog.text
            # Nothing was lost, and an outage is not counted against a hit.
            assert [(r.delivered_at, r.attempts, r.retry_at) for r in kept()] == [
                (None, 0, None)
            ] * 2

            # Temporal is back (same database): both hits reach the journey, in order, once each.
            await temporal.start()
            client = temporal.env.client
            async with build_worker(client, settings, engine):
                await eventually(
                    lambda: all(r.delivered_at for r in kept()),
                    timeout=60,
                    what="the kept hits to be delivered after the restart",
                )
                result = await asyncio.wait_for(
                    client.get_workflow_handle_for(WelcomeJourney.run, workflow_id).result(),
                    timeout=20,
                )
            assert result.outcome == "clicked" and result.opened
            assert await signals_received(client, workflow_id) == ["opened", "clicked"]
            assert [(r.delivery_note, r.signal_outcome, r.attempts) for r in kept()] == [
                (None, "signalled", 1)
            ] * 2
    finally:
        await api.stop()


# Temporal restarted while journeys wait on timers --------------------------------------------


async def test_timers_that_fall_due_while_temporal_is_down_fire_after_the_restart(
    temporal: RestartableTemporal, own_settings: Settings, engine: Engine, sink: DevSink, make_lead
):
    from worker import build_worker

    leads = [make_lead() for _ in range(3)]
    client = temporal.env.client
    async with build_worker(client, own_settings, engine):
        for lead in leads:
            await client.start_workflow(
                WelcomeJourney.run,
                WelcomeInput(
                    lead.id,
                    relance_after_hours=3 / 3600,
                    relance_by_sms=False,
                    engagement_window_days=6 / 86400,
                ),
                id=f"welcome-{lead.id}",
                task_queue=own_settings.temporal_task_queue,
            )
        for lead in leads:  # the welcome sent and recorded; the relance is due 3 s later
            await wait_for_step(
                client.get_workflow_handle(f"welcome-{lead.id}"), "waiting_for_open"
            )
    await temporal.stop()
    await asyncio.sleep(4)  # every relance timer falls due while the server is down
    await temporal.start()
    client = temporal.env.client
    async with build_worker(client, own_settings, engine):
        results = await asyncio.wait_for(
            asyncio.gather(
                *(
                    client.get_workflow_handle_for(
                        WelcomeJourney.run, f"welcome-{lead.id}"
                    ).result()
                    for lead in leads
                )
            ),
            timeout=30,
        )
    assert [r.relanced_by for r in results] == ["email"] * 3
    for lead in leads:
        mails = sink.mails_to(lead.email)
        assert len(mails) == 2 and mails[0].subject != mails[1].subject


# The worker killed in the middle of journeys ---------------------------------------------------


@dataclass
class WorkerProcess:
    process: subprocess.Popen
    log: Path

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()


async def start_worker_process(settings: Settings, log: Path) -> WorkerProcess:
    """``python worker.py`` as production runs it, configured by RELANCE_* variables only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELANCE_")}
    for name in (
        "database_url",
        "temporal_address",
        "temporal_task_queue",
        "smtp_host",
        "smtp_port",
        "secret_key",
        "public_base_url",
        "sms_provider_url",
        "sms_api_token",
        "payload_key_id",
    ):
        env[f"RELANCE_{name.upper()}"] = str(getattr(settings, name))
    env["RELANCE_PAYLOAD_KEYS"] = json.dumps(settings.payload_keys)
    env["RELANCE_SEND_WINDOW_ENABLED"] = json.dumps(
        settings.send_window_enabled
    )  # as the tests' settings: off
    out = log.open("ab")
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "worker.py")],
        cwd=log.parent,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    worker = WorkerProcess(process, log)
    await eventually(
        lambda: "ready:" in log.read_text() or process.poll() is not None,
        timeout=30,
        what="the worker to start",
    )
    assert process.poll() is None, log.read_text()
    return worker


async def test_a_worker_killed_mid_journey_is_replaced_and_every_email_goes_out_once(
    temporal: RestartableTemporal,
    own_settings: Settings,
    engine: Engine,
    sink: DevSink,
    make_lead,
    tmp_path: Path,
):
    client = temporal.env.client
    leads = [make_lead() for _ in range(12)]
    log = tmp_path / "worker.log"
    first = await start_worker_process(own_settings, log)
    try:
        for lead in leads:
            await client.start_workflow(
                WelcomeJourney.run,
                WelcomeInput(
                    lead.id,
                    relance_after_hours=2 / 3600,
                    relance_by_sms=False,
                    engagement_window_days=4 / 86400,
                ),
                id=f"welcome-{lead.id}",
                task_queue=own_settings.temporal_task_queue,
            )
        # Kill it as soon as a few welcomes are out: others are being sent or wait on their timers.
        await eventually(
            lambda: sum(len(sink.mails_to(lead.email)) for lead in leads) >= 3,
            timeout=30,
            what="the first welcome emails",
        )
        first.kill()
        killed_at = sum(len(sink.mails_to(lead.email)) for lead in leads)
        assert killed_at < 2 * len(leads), "the worker finished everything before it was killed"

        second = await start_worker_process(own_settings, log)
        try:
            # An activity that died with the worker is retried once its 60 s start-to-close passes.
            results = await asyncio.wait_for(
                asyncio.gather(
                    *(
                        client.get_workflow_handle_for(
                            WelcomeJourney.run, f"welcome-{lead.id}"
                        ).result()
                        for lead in leads
                    )
                ),
                timeout=150,
            )
        finally:
            second.stop()
    finally:
        first.stop()

    assert [r.outcome for r in results] == ["no_reaction"] * len(leads)
    for lead in leads:
        with Session(engine) as session:
            rows = session.exec(select(Message).where(Message.lead_id == lead.id)).all()
        assert sorted(r.step for r in rows) == ["relance_email", "welcome"]
        assert all(r.status == "sent" for r in rows)
        # Every step reached the mailbox once, under the Message-ID of its row. A send the kill
        # cut between the SMTP server's acceptance and the ledger's record is sent again with
        # the same Message-ID (SMTP cannot say whether it arrived), and its row says so.
        received = [m.message["Message-ID"] for m in sink.mails_to(lead.email)]
        message_ids = {r.id: f"<{r.id}@{own_settings.mail_domain}>" for r in rows}
        assert set(received) == set(message_ids.values())
        for row in rows:
            copies = received.count(message_ids[row.id])
            assert copies == 1 or (copies == 2 and row.reason == RESENT), (
                row.step,
                copies,
                row.reason,
            )


# The SMTP server down or refusing ---------------------------------------------------------------


@pytest.fixture
async def smtp_case(
    dev_server_env: WorkflowEnvironment, settings: Settings, engine: Engine, make_lead
):
    """A welcome journey on the dev server (real time, real retries) against its own SMTP server,
    started by the test (so it can start late or misbehave)."""
    from worker import build_worker

    @dataclass
    class Case:
        settings: Settings
        client: Client

        async def welcome(self):
            lead = make_lead()
            handle = await self.client.start_workflow(
                WelcomeJourney.run,
                WelcomeInput(lead.id, relance_by_sms=False),
                id=f"welcome-{lead.id}",
                task_queue=self.settings.temporal_task_queue,
            )
            return lead, handle

        def messages(self, lead) -> list[Message]:
            with Session(engine) as session:
                return list(session.exec(select(Message).where(Message.lead_id == lead.id)).all())

    case_settings = settings.model_copy(
        update={
            "smtp_port": free_ports(1)[0],
            "temporal_task_queue": f"smtp-{uuid.uuid4().hex[:8]}",
        }
    )
    async with build_worker(dev_server_env.client, case_settings, engine):
        yield Case(case_settings, dev_server_env.client)


async def send_attempts(client: Client, workflow_id: str) -> list[int]:
    """The attempt number of every started send_email activity, from the journey's history."""
    sends, attempts = set(), []
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            if event.activity_task_scheduled_event_attributes.activity_type.name == "send_email":
                sends.add(event.event_id)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            if started.scheduled_event_id in sends:
                attempts.append(started.attempt)
    return attempts


async def wait_for_step(handle, step: str, timeout: float = 15.0):
    return await eventually(lambda: _step_is(handle, step), timeout=timeout, what=f"step {step}")


async def _step_is(handle, step: str):
    status = await handle.query(WelcomeJourney.status)
    return status if status.step == step else None


async def test_smtp_down_at_first_the_send_retries_until_it_is_up(smtp_case):
    lead, handle = await smtp_case.welcome()
    # Connection refused, retried after 1 s, 2 s...: the mail server starts once a retry is pending.
    await eventually(
        lambda: _retried(smtp_case.client, handle.id),
        timeout=30,
        what="a second attempt while the mail server is not up yet",
    )
    async with DevSink(smtp_port=smtp_case.settings.smtp_port, http_port=0) as late_sink:
        [mail] = await late_sink.wait_for_mail(to=lead.email, timeout=15)
        await wait_for_step(handle, "waiting_for_open")
    [row] = smtp_case.messages(lead)
    assert (
        row.status == "sent"
        and mail.message["Message-ID"] == f"<{row.id}@{smtp_case.settings.mail_domain}>"
    )
    assert max(await send_attempts(smtp_case.client, handle.id)) >= 2
    await handle.terminate("test over")  # waiting on its timer, no activity running


async def test_smtp_4xx_is_retried_with_backoff_and_sent_once(smtp_case):
    async with DevSink(smtp_port=smtp_case.settings.smtp_port, http_port=0) as sink:
        sink.fail_next("451 4.3.0 Try again later", "421 4.7.0 Too many connections")
        lead, handle = await smtp_case.welcome()
        await wait_for_step(handle, "waiting_for_open")
        assert len(sink.mails_to(lead.email)) == 1 and sink.faults == []
    [row] = smtp_case.messages(lead)
    # Both earlier attempts got a refusal answer: the server certainly did not take them, and the
    # row says so (not "sent again", which would claim a copy may be out).
    assert row.status == "sent" and row.reason != RESENT
    assert (
        row.reason.startswith("sent on attempt 3;")
        and "421: 4.7.0 Too many connections" in row.reason
    )
    assert await send_attempts(smtp_case.client, handle.id) == [3]
    await handle.terminate("test over")


async def test_smtp_stopped_then_back_records_what_happened_not_a_resend(smtp_case):
    """The mail server goes down for a while and comes back: the messages waiting meanwhile go
    out once each, and their rows say that the earlier attempts could not reach the server."""
    port = smtp_case.settings.smtp_port
    async with DevSink(smtp_port=port, http_port=0) as sink:
        lead, handle = await smtp_case.welcome()
        await sink.wait_for_mail(to=lead.email, timeout=15)
        await wait_for_step(handle, "waiting_for_open")
    # Down: these journeys' sends are refused and retried.
    waiting = [await smtp_case.welcome() for _ in range(3)]
    for _, other in waiting:
        await eventually(
            lambda other=other: _retried(smtp_case.client, other.id),
            timeout=30,
            what="a second attempt while the mail server is down",
        )
    async with DevSink(smtp_port=port, http_port=0) as back:
        for other_lead, other in waiting:
            await back.wait_for_mail(to=other_lead.email, timeout=30)
            await wait_for_step(other, "waiting_for_open", timeout=30)
        for other_lead, other in waiting:
            [mail] = back.mails_to(other_lead.email)  # once each
            [row] = smtp_case.messages(other_lead)
            assert (
                row.status == "sent"
                and mail.message["Message-ID"] == f"<{row.id}@{smtp_case.settings.mail_domain}>"
            )
            attempt = max(await send_attempts(smtp_case.client, other.id))
            assert row.reason != RESENT and row.reason.startswith(f"sent on attempt {attempt};"), (
                row.reason
            )
            assert "could not reach the mail server" in row.reason
    [first] = smtp_case.messages(lead)
    assert (
        first.status == "sent" and first.reason is None
    )  # sent at the first attempt: nothing to say
    for _, other in [(lead, handle), *waiting]:
        await other.terminate("test over")


async def _retried(client: Client, workflow_id: str) -> bool:
    """The journey's send is pending on its second attempt at least (the history shows attempts
    only once an activity is over)."""
    description = await client.get_workflow_handle(workflow_id).describe()
    return any(
        p.activity_type.name == "send_email" and p.attempt >= 2
        for p in description.raw_description.pending_activities
    )


async def test_accepted_but_dropped_before_the_reply_is_sent_again_under_the_same_message_id(
    smtp_case,
):
    async with DevSink(smtp_port=smtp_case.settings.smtp_port, http_port=0) as sink:
        sink.fail_next(DROP_AFTER_ACCEPT)
        lead, handle = await smtp_case.welcome()
        await wait_for_step(handle, "waiting_for_open")
        copies = sink.mails_to(lead.email)
    [row] = smtp_case.messages(lead)
    assert row.status == "sent" and row.reason == RESENT
    assert [m.message["Message-ID"] for m in copies] == [
        f"<{row.id}@{smtp_case.settings.mail_domain}>"
    ] * 2
    assert copies[0].subject == copies[1].subject
    await handle.terminate("test over")


async def test_a_permanent_5xx_marks_the_message_failed_and_the_journey_ends_cleanly(smtp_case):
    async with DevSink(smtp_port=smtp_case.settings.smtp_port, http_port=0) as sink:
        sink.fail_next("550 5.1.1 No such mailbox")
        lead, handle = await smtp_case.welcome()
        result = await asyncio.wait_for(handle.result(), timeout=15)
        assert sink.mails_to(lead.email) == []
    assert result.outcome == "not_sent" and "550" in result.reason
    [row] = smtp_case.messages(lead)
    assert row.status == "failed" and "No such mailbox" in row.reason
    assert await send_attempts(smtp_case.client, handle.id) == [1]  # never retried


# The SMS provider down, then back -----------------------------------------------------------------


async def test_sms_provider_down_then_back_records_what_happened(
    dev_server_env, settings, engine, make_lead, sink
):
    """The relance SMS is due while the SMS provider does not answer: it goes out once it is
    back, and its row says the earlier attempts could not reach the provider (not "sent again")."""
    from worker import build_worker

    sms_port = free_ports(1)[0]
    own = settings.model_copy(
        update={
            "sms_provider_url": f"http://127.0.0.1:{sms_port}/sms",
            "temporal_task_queue": f"sms-{uuid.uuid4().hex[:8]}",
        }
    )
    phone = f"+3363{uuid.uuid4().int % 10**7:07d}"
    lead = make_lead(consents=("email", "sms"), phone=phone)
    client = dev_server_env.client
    async with build_worker(client, own, engine):
        handle = await client.start_workflow(
            WelcomeJourney.run,
            WelcomeInput(lead.id, relance_after_hours=1 / 3600),
            id=f"welcome-{lead.id}",
            task_queue=own.temporal_task_queue,
        )

        async def sms_retried() -> bool:
            description = await handle.describe()
            return any(
                p.activity_type.name == "send_sms" and p.attempt >= 2
                for p in description.raw_description.pending_activities
            )

        await eventually(
            sms_retried, timeout=30, what="a second attempt of the SMS while the provider is down"
        )
        async with DevSink(smtp_port=0, http_port=sms_port, sms_token=own.sms_api_token) as back:
            [sms] = await back.wait_for_sms(to=phone, timeout=30)
            await wait_for_step(handle, "waiting_for_click", timeout=30)
        await handle.terminate("test over")
    with Session(engine) as session:
        row = session.exec(
            select(Message).where(Message.lead_id == lead.id, Message.step == "relance_sms")
        ).one()
    assert row.status == "sent" and sms.reference == row.id
    assert "could not reach the SMS provider" in row.reason and "sent again" not in row.reason, (
        row.reason
    )
    assert row.reason.startswith(f"sent on attempt {row.attempts};") and row.attempts >= 2, (
        row.reason
    )


# The worker killed in the middle of a broadcast ------------------------------------------------


async def test_a_worker_killed_mid_broadcast_is_replaced_and_every_recipient_gets_it_once(
    temporal: RestartableTemporal,
    own_settings: Settings,
    engine: Engine,
    sink: DevSink,
    make_lead,
    tmp_path: Path,
):
    """SIGKILL in the middle of a wave: the wave is retried by the next worker, the recipients
    it had done are settled in the send ledger and get nothing again, the others get it: no one
    missing, no one twice (a message the kill cut between the mail server's acceptance and the
    ledger's record goes again under its Message-ID, by which mailboxes drop the copy, and its
    row says so)."""
    from relance.domain.audiences import Audience
    from relance.domain.db import session_scope
    from relance.domain.lists import add_member
    from relance.services import broadcasts

    leads = [make_lead() for _ in range(200)]
    with session_scope(engine) as session:
        for lead in leads:
            add_member(session, list_name="killed-mid-broadcast", lead_id=lead.id, reason="test")
    with Session(engine) as session:
        broadcast = broadcasts.create(
            session,
            broadcasts.BroadcastSpec(
                Audience("list", "killed-mid-broadcast"),
                "nurture_welcome_newsletter",
                per_hour=1_000_000,  # waves back to back: the kill falls inside one
            ),
        )

    def arrived() -> int:
        return sum(len(sink.mails_to(lead.email)) for lead in leads)

    client = temporal.env.client
    log = tmp_path / "worker.log"
    first = await start_worker_process(own_settings, log)
    try:
        handle = await broadcasts.start(client, own_settings, broadcast)
        await eventually(lambda: arrived() >= 30, timeout=60, what="the first messages")
        first.kill()
        assert arrived() < len(leads), "the broadcast finished before the worker was killed"
        second = await start_worker_process(own_settings, log)
        try:
            # The wave that died with the worker is retried once its heartbeat times out (30 s).
            result = await asyncio.wait_for(handle.result(), timeout=150)
        finally:
            second.stop()
    finally:
        first.stop()

    assert (result["status"], result["counts"]["sent"]) == ("completed", len(leads))
    attempts = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attempts.append(event.activity_task_started_event_attributes.attempt)
    assert max(attempts) >= 2, "the kill fell between waves: nothing was retried"
    for lead in leads:
        with Session(engine) as session:
            [row] = session.exec(select(Message).where(Message.lead_id == lead.id)).all()
        assert row.status == "sent"
        received = [m.message["Message-ID"] for m in sink.mails_to(lead.email)]
        assert set(received) == {f"<{row.id}@{own_settings.mail_domain}>"}, "missing"
        assert len(received) == 1 or (len(received) == 2 and row.reason == RESENT), (
            len(received),
            row.reason,
        )
