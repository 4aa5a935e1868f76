"""Journeys written as data, run by the interpreter (workflows/defined.py) on the time-skipping
server with the real activities, database and mail sink: each node type, and a definition that
does what the coded welcome does sends the same messages at the same moments."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlmodel import Session, col, select
from temporalio.client import Client, WorkflowHandle

from activities.definitions import DefinitionActivities
from relance.contracts import search_attributes as sa
from relance.contracts.definitions import AttributesChange, DefinedJourneyInput, workflow_id
from relance.contracts.signals import (
    CLICKED,
    GOAL_REACHED,
    UNSUBSCRIBED,
    GoalSignal,
    TrackingSignal,
)
from relance.domain.lists import add_member
from relance.domain.models import Lead, ListMember, Message, MqlNotification, Order, ScoreEvent
from relance.domain.scoring import apply_score
from relance.domain.segments import segment_and_stage, stage_expr
from relance.domain.topics import topics_from
from relance.services import preferences
from relance.services.definitions import DefinitionError, checked, compile_definition, start_defined
from worker import build_worker
from workflows.defined import DefinedJourney, DefinedStatus
from workflows.welcome import WelcomeInput, WelcomeJourney


@pytest.fixture
async def worker(client, settings, engine):
    async with build_worker(client, settings, engine) as running:
        yield running


def definition(*nodes: dict, **fields) -> dict:
    """A definition with a key of its own (each test's journeys apart)."""
    return {
        "key": f"t_{uuid.uuid4().hex[:10]}",
        "name": "test",
        "topic": "newsletter",
        "nodes": list(nodes),
        **fields,
    }


async def start(client: Client, settings, lead: Lead, data: dict) -> WorkflowHandle:
    """Start the checked, compiled definition for the lead, as enrollment does (typed handle)."""
    compiled = compile_definition(checked(data), version=1)
    return await client.start_workflow(
        DefinedJourney.run,
        DefinedJourneyInput(lead.id, compiled),
        id=workflow_id(compiled.key, lead.id),
        task_queue=settings.temporal_task_queue,
    )


async def status_at(handle: WorkflowHandle, step: str, timeout: float = 10.0) -> DefinedStatus:
    deadline = asyncio.get_running_loop().time() + timeout
    while (status := await handle.query(DefinedJourney.status)).step != step:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"journey at {status.step!r}, expected {step!r}")
        await asyncio.sleep(0.02)
    return status


EXIT = {"id": "done", "type": "exit"}


def message(node_id: str, template: str = "nurture_white_paper", **more) -> dict:
    return {"id": node_id, "type": "message", "template": template, "next": "done", **more}


async def test_a_message_goes_through_the_send_ledger_and_the_journey_exits(
    client, settings, worker, sink, make_lead, engine
):
    """Started as the catalogue starts it (relance/services/definitions.py start_defined)."""
    lead = make_lead()
    compiled = compile_definition(checked(definition(message("paper"), EXIT)), version=3)
    handle = await start_defined(client, settings, compiled, lead_id=lead.id)
    assert handle.id == f"journey-{compiled.key}-{lead.id}"
    result = await handle.result()  # started by its type name: the result's JSON

    assert result["outcome"] == "exited" and result["path"] == ["paper", "done"]
    assert result["version"] == 3
    [sent] = result["messages"]
    assert (sent["step"], sent["channel"], sent["template"], sent["status"]) == (
        "paper",
        "email",
        "nurture_white_paper",
        "sent",
    )
    [mail] = await sink.wait_for_mail(to=lead.email)
    with Session(engine) as session:
        [row] = session.exec(select(Message).where(Message.lead_id == lead.id)).all()
    assert row.journey == compiled.key and row.step.startswith("paper@")
    description = await handle.describe()
    assert description.typed_search_attributes.get(sa.JOURNEY) == compiled.key


async def test_no_consent_ends_the_journey_not_sent_and_nothing_goes_out(
    client, settings, worker, sink, make_lead
):
    lead = make_lead(consents=())
    data = definition(message("paper", next="later"), message("later"), EXIT)
    result = await (await start(client, settings, lead, data)).result()
    assert result.outcome == "not_sent" and "no marketing consent for email" in result.reason
    assert result.path == ["paper"] and sink.mails_to(lead.email) == []


async def test_a_delay_waits_its_duration(client, settings, worker, make_lead):
    lead = make_lead()
    data = definition(
        message("first", next="pause"),
        {"id": "pause", "type": "delay", "duration": "2d", "next": "second"},
        message("second", "nurture_case_study"),
        EXIT,
    )
    result = await (await start(client, settings, lead, data)).result()
    first, second = result.messages
    assert second.at - first.at == pytest.approx(timedelta(days=2), abs=timedelta(seconds=5))


async def test_a_delay_until_a_local_time_on_a_weekday_in_the_lead_zone(
    client, settings, worker, make_lead, engine
):
    lead = make_lead()
    with Session(engine) as session:
        session.get(Lead, lead.id).time_zone = "Asia/Tokyo"
        session.commit()
    data = definition(
        {
            "id": "monday_9",
            "type": "delay",
            "until": {"time": "09:00", "weekdays": ["mon"]},
            "next": "paper",
        },
        message("paper"),
        EXIT,
    )
    result = await (await start(client, settings, lead, data)).result()
    local = result.messages[0].at.astimezone(ZoneInfo("Asia/Tokyo"))
    assert (local.isoweekday(), local.hour) == (1, 9) and local.minute == 0


async def test_wait_for_a_click_takes_then_and_without_one_timeout_at_its_time(
    client, settings, worker, make_lead
):
    def journey() -> dict:
        return definition(
            message("invite", next="click"),
            {
                "id": "click",
                "type": "wait_for",
                "event": "clicked",
                "message": "invite",
                "within": "48h",
                "then": "engaged",
                "timeout": "relance",
            },
            {"id": "engaged", "type": "checkpoint", "name": "engaged", "next": "done"},
            message("relance", "welcome_relance"),
            EXIT,
        )

    clicker, silent = make_lead(), make_lead()
    handle = await start(client, settings, clicker, journey())
    status = await status_at(handle, "wait_for:click")
    await handle.signal(CLICKED, TrackingSignal(status.messages[0].message_id, "https://x.org"))
    clicked = await handle.result()
    assert clicked.path == ["invite", "click", "engaged", "done"]
    assert clicked.checkpoints == ["engaged"] and len(clicked.messages) == 1

    quiet = await (await start(client, settings, silent, journey())).result()
    assert quiet.path == ["invite", "click", "relance", "done"]
    invite, relance = quiet.messages
    assert relance.at - invite.at == pytest.approx(timedelta(hours=48), abs=timedelta(seconds=5))


async def test_wait_for_a_signal_by_name(client, settings, worker, make_lead):
    lead = make_lead()
    data = definition(
        {
            "id": "attended",
            "type": "wait_for",
            "event": "signal",
            "signal": "webinar_attended",
            "within": "7d",
            "then": "thanks",
            "timeout": "done",
        },
        message("thanks", "nurture_case_study"),
        EXIT,
    )
    handle = await start(client, settings, lead, data)
    await status_at(handle, "wait_for:attended")
    await handle.signal("some_other_signal")  # not the one waited for
    await handle.signal("webinar_attended")
    result = await handle.result()
    assert result.path == ["attended", "thanks", "done"]
    assert result.decisions == ["attended: the signal webinar_attended came -> then"]


async def test_a_condition_reads_the_lead_and_says_why(client, settings, worker, make_lead, engine):
    test = {"all": [{"score": {"gte": 10}}, {"consent": "email"}, {"not": {"in_list": "vip"}}]}
    data = lambda: definition(  # noqa: E731
        {"id": "fit", "type": "condition", "if": test, "then": "yes", "else": "no"},
        {"id": "yes", "type": "checkpoint", "name": "fit", "next": "done"},
        {"id": "no", "type": "checkpoint", "name": "unfit", "next": "done"},
        EXIT,
    )
    hot, vip = make_lead(), make_lead()
    with Session(engine) as session:
        for lead in (hot, vip):
            session.get(Lead, lead.id).score = 12
        add_member(session, list_name="vip", lead_id=vip.id, reason="test")
        session.commit()

    for lead, taken in ((hot, "fit"), (vip, "unfit")):
        handle = await start(client, settings, lead, data())
        result = await handle.result()
        assert result.checkpoints == [taken]
        status = await handle.query(DefinedJourney.status)
    [why] = status.decisions
    assert why == (
        "fit: (score >= 10: yes (score 12) and consent for email: yes (granted) and "
        "not (in list vip: yes (a member))) -> else"
    )


async def test_an_experiment_puts_the_arm_on_the_message_and_a_holdout_gets_nothing(
    client, settings, worker, make_lead
):
    key = f"t_{uuid.uuid4().hex[:10]}"
    data = {
        "key": key,
        "name": "subject test",
        "topic": "newsletter",
        "nodes": [
            {
                "id": "subject",
                "type": "experiment",
                "arms": [{"name": "a", "percent": 45, "next": "mail"}],
                "holdout": {"name": "hold", "percent": 55, "next": "done"},
            },
            message("mail"),
            EXIT,
        ],
    }
    arms = {}
    for _ in range(8):  # enough leads for both: each has a 1 in 2^8 chance to miss
        lead = make_lead()
        result = await (await start(client, settings, lead, data)).result()
        arm = result.arms["subject"]
        arms.setdefault(arm, result)
        if arm == "a":
            assert [m.step for m in result.messages] == ["mail:a"]
        else:
            assert result.messages == [] and result.path == ["subject", "done"]
    assert set(arms) == {"a", "hold"}


async def test_an_update_adds_score_points_once_and_puts_the_lead_on_a_list(
    client, settings, worker, make_lead, engine
):
    lead = make_lead()
    data = definition(
        {
            "id": "tag",
            "type": "update",
            "score_event": "email_clicked",
            "add_to_list": "webinar_hot",
            "next": "done",
        },
        EXIT,
    )
    await (await start(client, settings, lead, data)).result()
    points = settings.scoring_rules().events["email_clicked"]
    with Session(engine) as session:
        assert session.get(Lead, lead.id).score == points
        [event] = session.exec(select(ScoreEvent).where(ScoreEvent.lead_id == lead.id)).all()
        assert "tag" in event.reason
        assert session.exec(
            select(ListMember).where(
                ListMember.lead_id == lead.id, ListMember.list_name == "webinar_hot"
            )
        ).one()


async def test_a_goal_node_converts_at_once_and_a_goal_reached_ends_the_wait(
    client, settings, worker, make_lead
):
    lead = make_lead()
    data = definition({"id": "won", "type": "goal", "goal": "signed_up"})
    result = await (await start(client, settings, lead, data)).result()
    assert (result.outcome, result.goal) == ("converted", "signed_up")

    other = make_lead()
    data = definition(
        {"id": "long", "type": "delay", "duration": "30d", "next": "done"},
        EXIT,
        goals=["purchase"],
    )
    handle = await start(client, settings, other, data)
    await status_at(handle, "delay:long")
    await handle.signal(GOAL_REACHED, GoalSignal("purchase", "api:purchase"))
    result = await handle.result()
    assert (result.outcome, result.goal) == ("converted", "purchase")
    assert result.path == ["long"]


async def test_an_unsubscribe_ends_the_journey(client, settings, worker, make_lead, sink):
    lead = make_lead()
    data = definition(
        {"id": "pause", "type": "delay", "duration": "1d", "next": "mail"}, message("mail"), EXIT
    )
    handle = await start(client, settings, lead, data)
    await status_at(handle, "delay:pause")
    await handle.signal(UNSUBSCRIBED, TrackingSignal("x"))
    result = await handle.result()
    assert result.outcome == "unsubscribed" and result.messages == []


async def test_best_channel_goes_by_sms_when_the_lead_accepts_it(
    client, settings, worker, make_lead, sink
):
    lead = make_lead(consents=("email", "sms"), phone="+33611122233")
    data = definition(
        message("relance", "welcome_relance", channel="best", channels=["sms", "email"]), EXIT
    )
    result = await (await start(client, settings, lead, data)).result()
    [sent] = result.messages
    assert (sent.step, sent.channel) == ("relance", "sms")
    assert await sink.wait_for_sms(to="+33611122233")


# A definition equivalent to a coded journey ------------------------------------------------------
# The welcome as a definition (also what python -m bench defined compares with the coded one).
WELCOME_AS_DATA = yaml.safe_load(
    (Path(__file__).parent / "definitions" / "welcome_as_data.yaml").read_text()
)["nodes"]


@pytest.mark.parametrize("consents", [("email",), ("email", "sms")])
async def test_the_welcome_as_data_sends_what_the_coded_welcome_sends_when_it_does(
    client, settings, worker, make_lead, consents
):
    """A new contact who never reacts: the welcome email at once, the relance 48 h later on the
    best channel; the same templates, channels and moments (the workflow time since the start)."""

    def timeline(messages, started):
        return (
            [(m.template, m.channel, m.status) for m in messages],
            [(m.at - started).total_seconds() for m in messages],
        )

    coded_lead = make_lead(consents=consents, phone="+33600000001" if "sms" in consents else None)
    coded = await client.start_workflow(
        WelcomeJourney.run,
        WelcomeInput(lead_id=coded_lead.id, engagement_window_days=7),
        id=f"welcome-equivalence-{coded_lead.id}",
        task_queue=settings.temporal_task_queue,
    )
    coded_result = await coded.result()
    coded_start = (await coded.describe()).start_time

    data_lead = make_lead(consents=consents, phone="+33600000002" if "sms" in consents else None)
    defined = await start(client, settings, data_lead, definition(*WELCOME_AS_DATA))
    defined_result = await defined.result()
    defined_start = (await defined.describe()).start_time

    what, when = timeline(defined_result.messages, defined_start)
    coded_what, coded_when = timeline(coded_result.messages, coded_start)
    assert what == coded_what
    # The same moments, give or take the real time the activities took (the time-skipping
    # server's clock runs while they do: a second or two on a loaded machine).
    assert when == pytest.approx(coded_when, abs=10)
    assert len(coded_result.messages) == 2
    assert all(m.at.tzinfo is not None for m in coded_result.messages)
    assert coded_start.tzinfo == UTC or coded_start.utcoffset() == timedelta(0)


# What the ledger checks at the moment of sending ------------------------------------------------
async def test_a_lead_who_joins_an_excluded_list_after_entering_gets_no_more_messages(
    client, settings, worker, make_lead, engine, sink
):
    """The definition's own exclusions (its ``rules``) are checked by the send ledger before each
    marketing message, as a coded journey's are: not only when the lead enters."""
    lead = make_lead()
    data = definition(
        message("first", next="pause"),
        {"id": "pause", "type": "delay", "duration": "1d", "next": "second"},
        message("second", "nurture_case_study"),
        EXIT,
        rules={"exclude": ["list:unsubscribed_from_webinars"]},
    )
    handle = await start(client, settings, lead, data)
    await status_at(handle, "delay:pause")
    with Session(engine) as session:
        add_member(session, list_name="unsubscribed_from_webinars", lead_id=lead.id, reason="t")
        session.commit()
    result = await handle.result()
    assert result.outcome == "excluded"
    first, second = result.messages
    assert first.status == "sent" and second.status == "skipped"
    assert "excluded: " in second.reason and "unsubscribed_from_webinars" in second.reason
    assert len(sink.mails_to(lead.email)) == 1


# Topics, multi-way splits, attributes set, delays until a date attribute -------------------------
TOPICS = topics_from(Path(__file__).resolve().parents[1] / "config" / "topics.yaml")


def turn_off(engine, lead: Lead, topic: str) -> None:
    """The lead turns a topic off on the preference page."""
    with Session(engine) as session:
        preferences.save(
            session,
            session.get(Lead, lead.id),
            TOPICS,
            preferences.Change(topics={topic: False}),
            preferences.Evidence("preference page, message m-1"),
        )


async def test_a_message_goes_through_the_topic_gate_of_its_own_topic_or_the_definitions(
    client, settings, worker, make_lead, engine, sink
):
    """A lead who turned "offers" off: the definition's messages are about offers (inherited),
    so the first is skipped with the topic reason; a message naming "newsletter" still goes."""
    lead = make_lead()
    turn_off(engine, lead, "offers")
    inherited = definition(message("paper"), EXIT, topic="offers")
    result = await (await start(client, settings, lead, inherited)).result()
    assert result.outcome == "not_sent"
    assert result.reason == "paper not sent: the lead turned this topic off: offers"
    [skipped] = result.messages
    assert skipped.status == "skipped"

    own = definition(message("paper", topic="newsletter"), EXIT, topic="offers")
    sent = await (await start(client, settings, lead, own)).result()
    assert sent.outcome == "exited" and sent.messages[0].status == "sent"
    with Session(engine) as session:
        rows = session.exec(
            select(Message.journey, Message.topic, Message.status).where(Message.lead_id == lead.id)
        ).all()
    assert sorted((t, s) for _, t, s in rows) == [("newsletter", "sent"), ("offers", "skipped")]
    assert len(sink.mails_to(lead.email)) == 1


async def test_a_switch_takes_the_first_case_that_holds_else_its_default_and_says_why(
    client, settings, worker, make_lead, engine
):
    def data() -> dict:
        return definition(
            {
                "id": "tier",
                "type": "switch",
                "cases": [
                    {"if": {"score": {"gte": 50}}, "next": "hot"},
                    {"if": {"score": {"gte": 20}}, "next": "warm"},
                ],
                "default": "cold",
            },
            {"id": "hot", "type": "checkpoint", "name": "hot", "next": "done"},
            {"id": "warm", "type": "checkpoint", "name": "warm", "next": "done"},
            {"id": "cold", "type": "checkpoint", "name": "cold", "next": "done"},
            EXIT,
        )

    results = {}
    for score in (60, 25, 5):
        lead = make_lead()
        with Session(engine) as session:
            session.get(Lead, lead.id).score = score
            session.commit()
        handle = await start(client, settings, lead, data())
        results[score] = await handle.result()
    assert {s: r.checkpoints for s, r in results.items()} == {
        60: ["hot"],
        25: ["warm"],
        5: ["cold"],
    }
    assert results[60].decisions == ["tier: case 1: score >= 50: yes (score 60) -> case 1"]
    assert results[25].decisions == [
        "tier: case 1: score >= 50: no (score 25); case 2: score >= 20: yes (score 25) -> case 2"
    ]
    assert results[5].decisions[0].endswith("case 2: score >= 20: no (score 5) -> default")


async def test_an_update_sets_custom_attributes_as_the_api_writes_them(
    client, settings, worker, make_lead, engine
):
    lead = make_lead()
    with Session(engine) as session:
        session.get(Lead, lead.id).attributes = {"job_title": "buyer", "plan": "free"}
        session.commit()
    data = definition(
        {
            "id": "upgrade",
            "type": "update",
            "set": {"plan": "pro", "company_size": 120, "job_title": None},
            "next": "done",
        },
        EXIT,
    )
    result = await (await start(client, settings, lead, data)).result()
    assert result.path == ["upgrade", "done"]
    with Session(engine) as session:
        assert session.get(Lead, lead.id).attributes == {"plan": "pro", "company_size": 120}


async def test_an_update_raises_the_stage_and_a_stage_only_moves_forward(
    client, settings, worker, make_lead, engine
):
    """Sales accepted the lead: the journey marks it sql, and the API's stage (and its filter)
    say so; a customer marked mql by the same kind of node stays a customer."""
    accepted, customer = make_lead(), make_lead()
    with Session(engine) as session:
        session.add(Order(id=f"o-{uuid.uuid4().hex}", lead_id=customer.id, items=[]))
        session.commit()
        assert segment_and_stage(session, accepted.id, settings)[1] in ("subscriber", "lead")
    raise_to = definition(
        {"id": "accepted", "type": "update", "stage": "sql", "next": "done"}, EXIT
    )
    lower = definition({"id": "nurtured", "type": "update", "stage": "mql", "next": "done"}, EXIT)
    raised = await (await start(client, settings, accepted, raise_to)).result()
    kept = await (await start(client, settings, customer, lower)).result()
    assert raised.decisions == ["accepted: stage sql"]
    assert kept.decisions == ["nurtured: stage customer (already at mql or beyond)"]
    with Session(engine) as session:
        assert segment_and_stage(session, accepted.id, settings)[1] == "sql"
        assert segment_and_stage(session, customer.id, settings)[1] == "customer"
        in_sql = session.exec(select(Lead.id).where(stage_expr(settings) == "sql")).all()
        assert accepted.id in in_sql and customer.id not in in_sql


async def test_a_lead_a_journey_qualifies_is_told_to_sales_once(
    client, settings, worker, make_lead, engine
):
    """Raised to mql (or past it), the lead reaches sales as a score crossing would: one MQL
    notification, saying which journey; not again when it is raised again, nor when its score
    reaches the threshold later. A lead already qualified by its facts brings none."""
    lead, customer = make_lead(), make_lead()
    with Session(engine) as session:
        session.add(Order(id=f"o-{uuid.uuid4().hex}", lead_id=customer.id, items=[]))
        session.commit()
    qualify = definition({"id": "webinar", "type": "update", "stage": "mql", "next": "done"}, EXIT)
    handle = await start(client, settings, lead, qualify)
    await handle.result()
    await (await start(client, settings, customer, qualify)).result()
    again = definition({"id": "accepted", "type": "update", "stage": "sql", "next": "done"}, EXIT)
    await (await start(client, settings, lead, again)).result()
    with Session(engine) as session:
        apply_score(
            session,
            lead_id=lead.id,
            event="demo",
            key=f"demo-{lead.id}",
            reason="asked for a demo",
            points=settings.score_mql_threshold + 10,
            mql_threshold=settings.score_mql_threshold,
        )
        session.commit()
        told = session.exec(
            select(MqlNotification).where(col(MqlNotification.lead_id).in_([lead.id, customer.id]))
        ).all()
    assert [(n.lead_id, n.reason) for n in told] == [
        (lead.id, f"stage raised to mql by {handle.id}")
    ]


def test_an_update_to_a_stage_that_does_not_exist_is_refused_at_check():
    with pytest.raises(DefinitionError) as refused:
        checked(definition({"id": "x", "type": "update", "stage": "vip", "next": "done"}, EXIT))
    assert "x" in str(refused.value)


def test_setting_the_same_attributes_again_changes_nothing(settings, engine, make_lead):
    """The activity retried (the worker lost its answer): the same values written again."""
    lead = make_lead()
    activities = DefinitionActivities(settings, engine)
    change = AttributesChange(lead.id, {"plan": "starter", "renewal_date": "2027-03-01"})
    assert activities.set_lead_attributes(change).changed == ["plan", "renewal_date"]
    assert activities.set_lead_attributes(change).changed == []
    with Session(engine) as session:
        assert session.get(Lead, lead.id).attributes == {
            "plan": "starter",
            "renewal_date": "2027-03-01",
        }


async def test_a_delay_until_a_date_attribute_less_30_days_at_9_in_the_lead_zone(
    client, settings, worker, make_lead, engine, time_skipping_env
):
    """30 days before the renewal date, 09:00 in Tokyo; a lead with no renewal date, or whose
    moment has passed, goes on at once, and the node says so."""
    now = await time_skipping_env.get_current_time()
    today = now.astimezone(ZoneInfo("Asia/Tokyo")).date()
    leads = {}
    for name, renewal in (
        ("due", today + timedelta(days=40)),
        ("passed", today - timedelta(days=3)),
        ("none", None),
    ):
        lead = leads[name] = make_lead()
        with Session(engine) as session:
            row = session.get(Lead, lead.id)
            row.time_zone = "Asia/Tokyo"
            row.attributes = {"renewal_date": renewal.isoformat()} if renewal else {}
            session.commit()

    def data() -> dict:
        return definition(
            {
                "id": "before",
                "type": "delay",
                "until_date": {"attribute": "renewal_date", "offset_days": -30, "at": "09:00"},
                "next": "paper",
            },
            message("paper", kind="transactional"),
            EXIT,
        )

    results = {}
    for name, lead in leads.items():
        handle = await start(client, settings, lead, data())
        results[name] = (await handle.result(), (await handle.describe()).start_time)
    due, _ = results["due"]
    local = due.messages[0].at.astimezone(ZoneInfo("Asia/Tokyo"))
    assert (local.date(), local.hour, local.minute) == (today + timedelta(days=10), 9, 0)
    assert due.decisions == []
    for name, says in (
        ("passed", f"before: renewal_date -30 d at 09:00 ({today - timedelta(days=33)} "
         "Asia/Tokyo) has passed -> next"),
        ("none", "before: no renewal_date for the lead -> next"),
    ):  # fmt: skip
        result, started = results[name]
        assert result.decisions == [says] and result.path == ["before", "paper", "done"]
        assert result.messages[0].at - started < timedelta(minutes=5)
