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
from sqlmodel import Session, select
from temporalio.client import Client, WorkflowHandle

from relance.contracts import search_attributes as sa
from relance.contracts.definitions import DefinedJourneyInput, workflow_id
from relance.contracts.signals import (
    CLICKED,
    GOAL_REACHED,
    UNSUBSCRIBED,
    GoalSignal,
    TrackingSignal,
)
from relance.domain.lists import add_member
from relance.domain.models import Lead, ListMember, Message, ScoreEvent
from relance.services.definitions import checked, compile_definition, start_defined
from worker import build_worker
from workflows.defined import DefinedJourney, DefinedStatus
from workflows.welcome import WelcomeInput, WelcomeJourney


@pytest.fixture
async def worker(client, settings, engine):
    async with build_worker(client, settings, engine) as running:
        yield running


def definition(*nodes: dict, **fields) -> dict:
    """A definition with a key of its own (each test's journeys apart)."""
    return {"key": f"t_{uuid.uuid4().hex[:10]}", "name": "test", "nodes": list(nodes), **fields}


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
