"""Reports people can trust: human or machine engagement, journeys' funnels, messages' rates,
experiments, a lead's timeline — exact counts from the database, never from Temporal."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from relance.contracts.definitions import DefinedJourneyInput, workflow_id
from relance.contracts.signals import CLICKED, GOAL_REACHED, OPENED, UNSUBSCRIBED, GoalSignal
from relance.dev.seeding import make_lead_factory, unique_id
from relance.domain import engagement
from relance.domain.db import make_engine
from relance.domain.engagement import classify
from relance.domain.models import (
    Consent,
    JourneyRun,
    Message,
    ScoreEvent,
    TrackingEvent,
    utcnow,
)
from relance.domain.tokens import TrackingToken
from relance.services import migrate, reports
from relance.services.definitions import checked, compile_definition
from relance.services.outbox import OutboxDispatcher
from relance.services.reports import Period
from relance.services.tracking import MACHINE_CLICK_NOTE, Hit, record_hits
from tests.waiting import eventually
from worker import build_worker
from workflows.defined import DefinedJourney

EVER = Period(datetime(2000, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC))

IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
GMAIL = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
APPLE_PROXY = "Mozilla/5.0"
SCANNER = "Mozilla/5.0 (compatible; Barracuda Sentinel link protection)"


# Human or machine -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("user_agent", "ip", "headers", "machine", "reason"),
    [
        (IPHONE, "198.51.100.7", {}, False, engagement.HUMAN),
        (FIREFOX, "2001:db8::1", {}, False, engagement.HUMAN),
        (GMAIL, "66.249.84.1", {}, False, engagement.GMAIL_PROXY),
        (APPLE_PROXY, "104.28.1.1", {}, True, engagement.APPLE_PROXY),
        (SCANNER, "198.51.100.7", {}, True, engagement.SCANNER),
        ("Mozilla/5.0 (compatible; Proofpoint URL Defense)", None, {}, True, engagement.SCANNER),
        ("Mozilla/5.0 (compatible; bingbot/2.0)", "198.51.100.7", {}, True, engagement.CRAWLER),
        (FIREFOX, "40.93.1.2", {}, True, engagement.MICROSOFT),  # Safe Links detonation
        (FIREFOX, "104.47.3.4", {}, True, engagement.MICROSOFT),
        (IPHONE, "17.58.1.1", {}, True, engagement.APPLE_NETWORK),
        (FIREFOX, "198.51.100.7", {"sec-purpose": "prefetch"}, True, engagement.PREFETCH),
        (FIREFOX, "198.51.100.7", {"x-moz": "prefetch"}, True, engagement.PREFETCH),
        (None, "198.51.100.7", {}, True, engagement.NO_USER_AGENT),
        ("  ", "198.51.100.7", {}, True, engagement.NO_USER_AGENT),
        (FIREFOX, "not an ip", {}, False, engagement.HUMAN),
    ],
)
def test_a_hit_is_classified_from_its_agent_its_address_and_its_headers(
    user_agent, ip, headers, machine, reason
):
    assert classify(user_agent=user_agent, ip=ip, headers=headers) == engagement.Engagement(
        machine, reason
    )


def test_a_hit_right_after_the_message_was_sent_is_a_machine_and_a_later_one_a_person():
    signed = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def at(seconds: float) -> engagement.Engagement:
        return classify(
            user_agent=FIREFOX,
            ip="198.51.100.7",
            signed_at=signed,
            received_at=signed + timedelta(seconds=seconds),
        )

    assert at(0.5) == engagement.Engagement(True, engagement.TOO_SOON)
    assert at(2.5) == engagement.Engagement(False, engagement.HUMAN)
    off = classify(
        user_agent=FIREFOX,
        ip="198.51.100.7",
        signed_at=signed,
        received_at=signed,
        too_fast=timedelta(0),
    )
    assert off.machine is False  # RELANCE_TRACKING_MACHINE_SECONDS=0 turns the rule off


# Statistics ----------------------------------------------------------------------------------
def test_the_two_proportion_test_and_the_interval_give_the_textbook_figures():
    z, p = reports.two_proportion_z(120, 1000, 90, 1000)
    assert z == pytest.approx(2.1883, abs=1e-3) and p == pytest.approx(0.0287, abs=1e-3)
    assert reports.two_proportion_z(0, 10, 0, 10) is None  # nobody converted: no test
    low, high = reports.wilson(12, 100)
    assert (low, high) == (pytest.approx(0.0699, abs=1e-3), pytest.approx(0.1982, abs=1e-3))
    assert reports.wilson(0, 0) is None


def test_a_ledger_step_is_shown_as_its_node_and_its_arm():
    assert reports.node_of("invite:b.email#2@260302090000") == "invite"
    assert reports.arm_of("invite:b.email#2@260302090000") == "b"
    assert reports.node_of("welcome_email") == "welcome_email"
    assert reports.arm_of("invite@260302090000") is None


# 200 journeys, scripted -----------------------------------------------------------------------
def script_of(n: int) -> str:
    """What lead ``n`` does with the invitation (one kind of behaviour per tenth)."""
    return (
        "no_consent",
        "human_click",
        "machine_open_and_click",
        "unsubscribe",
        "goal_after_open",
        "machine_click",
        "human_open",
        "goal",
        "human_click_machine_open",
        "nothing",
    )[n % 10]


def hits_of(script: str, token: TrackingToken) -> list[Hit]:
    """The hits of a script, classified as the tracking endpoints classify them."""

    def hit(kind: str, agent: str, ip: str = "198.51.100.7") -> Hit:
        seen = classify(user_agent=agent, ip=ip)
        return Hit(token, kind, agent, ip, seen.machine, seen.reason)

    return {
        "human_click": [hit(OPENED, IPHONE), hit(OPENED, IPHONE), hit(CLICKED, IPHONE)] * 2,
        "machine_open_and_click": [hit(OPENED, APPLE_PROXY), hit(CLICKED, SCANNER)],
        "unsubscribe": [hit(OPENED, GMAIL), hit(UNSUBSCRIBED, IPHONE)],
        "goal_after_open": [hit(OPENED, FIREFOX)],
        "machine_click": [hit(CLICKED, FIREFOX, ip="40.107.9.9")],
        "human_open": [hit(OPENED, GMAIL), hit(OPENED, GMAIL)],
        "human_click_machine_open": [hit(OPENED, APPLE_PROXY), hit(CLICKED, FIREFOX)],
    }.get(script, [])


EXPERIMENT_JOURNEY = {
    "name": "reports test",
    "topic": "newsletter",
    "goals": ["purchase"],
    "nodes": [
        {
            "id": "split",
            "type": "experiment",
            "arms": [
                {"name": "a", "percent": 50, "next": "invite"},
                {"name": "b", "percent": 50, "next": "invite"},
            ],
        },
        {"id": "invite", "type": "message", "template": "nurture_white_paper", "next": "click"},
        {
            "id": "click",
            "type": "wait_for",
            "event": "clicked",
            "message": "invite",
            "within": "2d",
            "then": "engaged",
            "timeout": "done",
        },
        {"id": "engaged", "type": "checkpoint", "name": "engaged", "next": "done"},
        {"id": "done", "type": "exit"},
    ],
}


async def test_two_hundred_scripted_journeys_are_reported_exactly(
    client, time_skipping_env, settings, tmp_path
):
    """Each lead does what its script says (human and machine opens and clicks, unsubscribes,
    goals); the worker keeps only a few journeys in its cache, so most are rebuilt from their
    history again and again (replays), and the retried hits count once: the reports say exactly
    what was scripted. A scanner's click is not the lead's click: that journey times out."""
    # Its own database: the live API's outbox (a session-wide fixture other modules start) would
    # otherwise settle some of these hits against its own Temporal server, where these journeys
    # do not run. The same journey key and leads on every run: the experiment's arms, and so
    # whether one of them "wins", do not change from run to run.
    database_url = f"sqlite:///{tmp_path / 'relance.db'}"
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    make_lead = make_lead_factory(engine)
    key = "t_reports_split"
    compiled = compile_definition(checked({"key": key, **EXPERIMENT_JOURNEY}), version=1)
    scripts = [script_of(n) for n in range(200)]
    leads = [
        make_lead(
            consents=() if s == "no_consent" else ("email",),
            lead_id=uuid.uuid5(uuid.NAMESPACE_URL, f"relance-reports-{n}").hex,
        )
        for n, s in enumerate(scripts)
    ]
    # Its own task queue: no other test's journey left on the shared one runs in this worker.
    own = settings.model_copy(
        update={
            "database_url": database_url,
            "worker_max_cached_workflows": 10,
            "temporal_task_queue": unique_id("reports"),
        }
    )
    async with build_worker(client, own, engine):
        handles = await asyncio.gather(
            *(
                client.start_workflow(
                    DefinedJourney.run,
                    DefinedJourneyInput(lead.id, compiled),
                    id=workflow_id(key, lead.id),
                    task_queue=own.temporal_task_queue,
                )
                for lead in leads
            )
        )

        def invitations() -> dict[str, Message]:
            with Session(engine) as session:
                rows = session.exec(
                    select(Message).where(Message.journey == key)  # type: ignore[call-overload]
                ).all()
            return {row[0].lead_id: row[0] for row in rows if row[0].status in ("sent", "skipped")}

        await eventually(lambda: len(invitations()) == 200, timeout=120, what="200 invitations")
        sent = invitations()
        for lead, script in zip(leads, scripts, strict=True):
            message = sent[lead.id]
            token = TrackingToken(
                "click", message.id, lead.id, message.workflow_id, url="https://example.com/p"
            )
            hits = hits_of(script, token)
            if hits:
                record_hits(engine, hits, suppression_key=settings.suppression_hash_key)
                record_hits(engine, hits[-1:], suppression_key=settings.suppression_hash_key)
        outbox = OutboxDispatcher(engine, client, settings=own)
        while (await outbox.deliver_batch())[0]:
            pass
        for handle, script in zip(handles, scripts, strict=True):
            if script.startswith("goal"):
                await handle.signal(GOAL_REACHED, GoalSignal("purchase", "shop"))
        # One at a time: the first waits out the 2 days (the server skips time), the rest
        # have ended by then.
        results = [await handle.result() for handle in handles]

        def ended() -> int:
            with Session(engine) as session:
                return session.exec(
                    select(func.count()).where(
                        JourneyRun.journey == key, JourneyRun.closed_at.is_not(None)
                    )
                ).one()[0]

        # Each journey records its end before its result: all 200 are there already.
        assert ended() == 200

    expected_outcomes = {
        "no_consent": "not_sent",
        "unsubscribe": "unsubscribed",
        "goal": "converted",
        "goal_after_open": "converted",
    }
    assert [r.outcome.value for r in results] == [
        expected_outcomes.get(s, "exited") for s in scripts
    ]
    report = reports.journey_report(engine, key, EVER, by_day=True)
    assert report["entered"] == 200 and report["active"] == 0
    assert report["completed"] == {
        "converted": 40,
        "exited": 120,
        "not_sent": 20,
        "unsubscribed": 20,
    }
    assert report["converted"] == 40 and report["conversion_rate"] == 0.2
    assert 0 <= report["median_seconds_to_convert"] < 86400
    # Only the lead's own clicks reach the engaged checkpoint; a scanner's does not.
    assert report["checkpoints"] == {"engaged": 40}
    assert sum(day["entered"] for day in report["days"]) == 200
    assert sum(day["converted"] for day in report["days"]) == 40
    [invite] = report["steps"].values()
    assert (invite["total"], invite["sent"], invite["skipped"]) == (200, 180, 20)

    [row] = reports.messages_report(engine, EVER, journey=key)
    assert row["template"] == "nurture_white_paper"
    assert (row["sent"], row["skipped"], row["failed"], row["deferred"]) == (180, 20, 0, 0)
    assert row["delivered"] == 180 and row["skipped_by_reason"] == {"consent": 20}
    # Human opens: the opens and clicks of people (a click is an open); machines' apart.
    human_opened = {"human_click", "unsubscribe", "goal_after_open", "human_open"}
    human_opened |= {"human_click_machine_open"}
    any_opened = human_opened | {"machine_open_and_click", "machine_click"}
    assert row["opened"] == 20 * len(human_opened)
    assert row["opened_any"] == 20 * len(any_opened)
    assert row["clicked"] == 40 and row["clicked_any"] == 80
    assert row["unsubscribed"] == 20
    assert row["open_rate"] == round(100 / 180, 4)
    assert row["click_rate"] == round(40 / 180, 4)
    assert row["click_to_open"] == round(40 / 100, 4)
    assert row["unsubscribe_rate"] == round(20 / 180, 4)

    arms = {lead.id: r.arms["split"] for lead, r in zip(leads, results, strict=True)}
    experiment = reports.experiment_report(engine, key, "split", EVER)
    for arm in ("a", "b"):
        on_arm = [n for n, lead in enumerate(leads) if arms[lead.id] == arm]
        converted = sum(results[n].outcome.value == "converted" for n in on_arm)
        sends = sum(scripts[n] != "no_consent" for n in on_arm)
        figures = experiment["arms"][arm]
        assert (figures["runs"], figures["conversions"], figures["sends"]) == (
            len(on_arm),
            converted,
            sends,
        )
        low, high = figures["interval_95"]
        assert low <= figures["conversion_rate"] <= high
    rates = {arm: experiment["arms"][arm]["conversion_rate"] for arm in ("a", "b")}
    assert experiment["leading_arm"] == max(rates, key=lambda a: (rates[a], a))
    # The conversions follow the scripts, not the arms (the same leads every run): no winner.
    assert experiment["significant"] is False, experiment

    # A scanner's click is kept, but its journey was not told.
    with Session(engine) as session:
        notes = session.exec(
            select(TrackingEvent.delivery_note).where(
                TrackingEvent.machine.is_(True),  # type: ignore[attr-defined]
                TrackingEvent.kind == CLICKED,
                TrackingEvent.lead_id.in_([lead.id for lead in leads]),  # type: ignore[attr-defined]
            )
        ).all()
    assert len(notes) == 20 * 2 * 2  # two scripts, each hit told twice
    assert {note[0] for note in notes} == {
        MACHINE_CLICK_NOTE.format(reason=engagement.SCANNER),
        MACHINE_CLICK_NOTE.format(reason=engagement.MICROSOFT),
    }


# Through the API -----------------------------------------------------------------------------
async def test_tracking_endpoints_record_a_proxy_open_and_a_scanner_click_as_machines(live):
    from relance.dev.seeding import make_lead_factory

    lead = make_lead_factory(live.engine)()
    message = Message(
        send_key=f"reports-test:{uuid.uuid4().hex}",
        lead_id=lead.id,
        workflow_id=f"journey-reports-{lead.id}",
        journey="reports",
        step="a",
        channel="email",
        template="nurture_white_paper",
        status="sent",
        sent_at=utcnow(),
    )
    with Session(live.engine) as session:
        session.add(message)
        session.commit()
        session.refresh(message)
    from relance.domain.tokens import TokenSigner

    signer = TokenSigner(live.settings.secret_key, max_age_seconds=3600)
    ids = (message.id, lead.id, message.workflow_id)
    opened = signer.sign(TrackingToken("open", *ids))
    clicked = signer.sign(TrackingToken("click", *ids, url="https://example.com/x"))
    await live.public.get(f"/t/o/{opened}", headers={"User-Agent": APPLE_PROXY})
    answer = await live.public.get(f"/t/c/{clicked}", headers={"User-Agent": SCANNER})
    assert answer.status_code == 302
    await live.public.head(f"/t/c/{clicked}", headers={"User-Agent": FIREFOX})

    def hits() -> list[TrackingEvent]:
        with Session(live.engine) as session:
            return [
                row[0]
                for row in session.exec(
                    select(TrackingEvent).where(TrackingEvent.lead_id == lead.id)
                ).all()
            ]

    await eventually(lambda: len(hits()) == 2, timeout=10, what="two hits stored")
    by_kind = {hit.kind: hit for hit in hits()}
    assert (by_kind[OPENED].machine, by_kind[OPENED].machine_reason) == (
        True,
        "apple privacy proxy",
    )
    assert (by_kind[CLICKED].machine, by_kind[CLICKED].machine_reason) == (True, "security scanner")
    assert by_kind[CLICKED].delivery_note == MACHINE_CLICK_NOTE.format(reason="security scanner")
    with Session(live.engine) as session:
        stamped = session.get(Message, message.id)
        assert stamped.opened_at is not None and stamped.human_opened_at is None
        assert stamped.clicked_at is not None and stamped.human_clicked_at is None

    timeline = (await live.http.get(f"/leads/{lead.id}/timeline")).json()
    kinds = [entry["type"] for entry in timeline["entries"]]
    assert "tracking.opened" in kinds and "tracking.clicked" in kinds and "message.sent" in kinds
    machine = [e for e in timeline["entries"] if e["type"].startswith("tracking.")]
    assert all(e["machine"] for e in machine)


async def test_reports_need_the_api_key_and_refuse_a_bad_range(live):
    assert (await live.public.get("/reports/journeys")).status_code == 401
    ok = await live.http.get("/reports/journeys", params={"start": "2026-01-01"})
    assert ok.status_code == 200 and isinstance(ok.json(), list)
    for params in (
        {"start": "2026-02-01", "end": "2026-01-01"},
        {"start": "yesterday"},
        {"start": "1990-01-01", "end": "2026-01-01"},
        {"by": "week"},
    ):
        bad = await live.http.get("/reports/messages", params=params)
        assert bad.status_code == 422, params
        assert bad.json()["detail"]
    empty = await live.http.get(f"/reports/journeys/nobody_{uuid.uuid4().hex[:6]}")
    assert empty.status_code == 200 and empty.json()["entered"] == 0
    assert (await live.http.get("/reports/journeys/bad key!")).status_code == 422
    experiment = await live.http.get("/reports/experiments/none/split", params={"by": "day"})
    assert experiment.status_code == 200 and experiment.json()["leading_arm"] is None


async def test_a_leads_timeline_pages_through_everything_newest_first(live):
    """Support's question: why didn't she get it? The skip's reason is on her timeline."""
    from relance.dev.seeding import make_lead_factory

    lead = make_lead_factory(live.engine)()
    base = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    with Session(live.engine) as session:
        session.add(
            JourneyRun(
                workflow_id=f"journey-x-{lead.id}",
                run_id="r1",
                lead_id=lead.id,
                journey="x",
                entered_at=base,
                closed_at=base + timedelta(hours=5),
                outcome="not_sent",
                reason="b not sent: no marketing consent for email",
            )
        )
        for n in range(7):
            session.add(
                Message(
                    send_key=f"journey-x-{lead.id}:{n}",
                    lead_id=lead.id,
                    workflow_id=f"journey-x-{lead.id}",
                    journey="x",
                    step=f"s{n}",
                    channel="email",
                    template="nurture_white_paper",
                    status="skipped",
                    reason="no marketing consent for email",
                    created_at=base + timedelta(hours=1),  # the same moment: ids order them
                )
            )
        session.add(
            Consent(
                lead_id=lead.id,
                channel="email",
                status="withdrawn",
                recorded_at=base + timedelta(minutes=30),
            )
        )
        session.add(
            ScoreEvent(lead_id=lead.id, key=uuid.uuid4().hex, event="e", points=5, reason="r")
        )
        session.commit()
    seen: list[dict] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await live.http.get(f"/leads/{lead.id}/timeline", params=params)).json()
        seen += page["entries"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    ids = [entry["id"] for entry in seen]
    assert len(ids) == len(set(ids)) == 1 + 1 + 7 + 2 + 1  # granted at sign-up, withdrawn
    times = [entry["at"] for entry in seen]
    assert times == sorted(times, reverse=True)
    left = next(entry for entry in seen if entry["type"] == "journey.left")
    assert left["reason"] == "b not sent: no marketing consent for email"
    skipped = [entry for entry in seen if entry["type"] == "message.skipped"]
    assert len(skipped) == 7 and skipped[0]["reason"] == "no marketing consent for email"
    bad = await live.http.get(f"/leads/{lead.id}/timeline", params={"cursor": "bm9wZQ"})
    assert bad.status_code == 422
    assert (await live.http.get("/leads/nobody/timeline")).status_code == 404


def test_a_journey_run_told_twice_is_one_row_and_its_end_completes_it(engine, make_lead):
    """A retried activity (the worker died before Temporal heard it finished) writes the same
    row again: entered once, ended once."""
    from activities.runs import JourneyRunActivities
    from relance.contracts.runs import JourneyRunRecord

    lead = make_lead()
    entered = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    record = JourneyRunRecord(f"journey-x-{lead.id}", "run-1", lead.id, "x", entered)
    runs = JourneyRunActivities(engine)
    runs.record_journey_run(record)
    runs.record_journey_run(record)
    ended = JourneyRunRecord(
        record.workflow_id,
        "run-1",
        lead.id,
        "x",
        entered,
        closed_at=entered + timedelta(hours=2),
        outcome="converted",
        reason="goal reached: purchase (shop)",
        goal="purchase",
        checkpoints=["engaged"],
        arms={"split": "b"},
    )
    runs.record_journey_run(ended)
    runs.record_journey_run(ended)
    runs.record_journey_run(JourneyRunRecord(record.workflow_id, "run-2", lead.id, "x", entered))
    with Session(engine) as session:
        rows = [
            row[0]
            for row in session.exec(
                select(JourneyRun).where(JourneyRun.lead_id == lead.id).order_by(JourneyRun.run_id)  # type: ignore[arg-type]
            ).all()
        ]
    assert [(r.run_id, r.outcome, r.goal) for r in rows] == [
        ("run-1", "converted", "purchase"),
        ("run-2", None, None),  # a re-entry is a run of its own
    ]
    assert rows[0].checkpoints == ["engaged"] and rows[0].arms == {"split": "b"}
