"""The birthday journey (config/journeys/birthday.yaml) and the building blocks it brought to
journeys as data: a message with a single-use promo code, the ``promo_used`` condition, and
redirects that run (the enrollment path, with their guards). Through the API, a worker on the
time-skipping server, the real database and mail sink."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from sqlmodel import Session, select

from relance.domain.conditions import Test as Rules
from relance.domain.models import EnrollmentRefusal, PromoCode
from relance.domain.segment_query import PROMO_IN_SEGMENT, Compiler, RuleError
from relance.services.definitions import check, known_templates, parse

ROOT = Path(__file__).resolve().parent.parent
CODE = re.compile(r"\bBDAY-[A-Z0-9]{8}\b")
EXIT = {"id": "done", "type": "exit"}


async def enroll(api, lead_id: str, key: str) -> dict:
    response = await api.post(f"/leads/{lead_id}/journeys/{key}")
    assert response.status_code == 201, response.text
    return response.json()


async def result_after(client, time_skipping_env, answer: dict, wait: timedelta) -> dict:
    """The run's result once ``wait`` went by (a handle not started by the test's client skips
    no time of its own)."""
    await time_skipping_env.sleep(wait)
    return await client.get_workflow_handle(answer["workflow_id"], run_id=answer["run_id"]).result()


async def published_birthday(api) -> str:
    """config/journeys/birthday.yaml published under a key of the test's own (the shipped key
    may be paused or archived by another test of the same database)."""
    data = yaml.safe_load((ROOT / "config/journeys/birthday.yaml").read_text())
    data["key"] = f"birthday_{uuid.uuid4().hex[:10]}"
    await publish(api, data)
    return data["key"]


async def birthday_code(sink, email: str) -> str:
    [mail] = await sink.wait_for_mail(to=email)
    assert mail.subject.startswith("Happy birthday")
    [code] = set(CODE.findall(mail.text))
    return code


# The birthday journey --------------------------------------------------------------------------
async def test_an_unused_birthday_code_is_reminded_three_days_later_with_the_same_code(
    api, client, time_skipping_env, worker, sink, make_lead, engine, settings
):
    key = await published_birthday(api)
    lead = make_lead()
    answer = await enroll(api, lead.id, key)
    code = await birthday_code(sink, lead.email)
    with Session(engine) as session:
        promo = session.get(PromoCode, code)
        assert (promo.lead_id, promo.percent_off, promo.redeemed_at) == (lead.id, 15, None)
        assert promo.expires_at - promo.created_at == timedelta(days=10)

    result = await result_after(client, time_skipping_env, answer, timedelta(days=4))
    assert result["outcome"] == "exited"
    assert result["path"] == ["birthday_email", "three_days", "used", "reminder", "done"]
    assert result["decisions"] == [
        "used: promo code of birthday_email redeemed: no (not redeemed) -> else"
    ]
    first, reminder = result["messages"]
    assert reminder["at"] > first["at"]
    mails = sink.mails_to(lead.email)
    assert [m.subject.startswith("Your birthday gift") for m in mails] == [False, True]
    assert set(CODE.findall(mails[1].text)) == {code}  # the same code, not a second one
    with Session(engine) as session:
        assert len(session.exec(select(PromoCode).where(PromoCode.lead_id == lead.id)).all()) == 1


async def test_a_birthday_code_used_in_a_purchase_stops_the_reminder(
    api, client, time_skipping_env, worker, sink, make_lead, engine, settings
):
    key = await published_birthday(api)
    lead = make_lead()
    answer = await enroll(api, lead.id, key)
    code = await birthday_code(sink, lead.email)
    order = {"id": f"o-{uuid.uuid4().hex[:8]}", "total": 40.0, "promo_code": code}
    bought = await api.post(
        "/events/track", json={"type": "purchase", "lead": lead.id, "order": order}
    )
    assert bought.status_code == 202, bought.text

    result = await result_after(client, time_skipping_env, answer, timedelta(days=4))
    assert result["path"] == ["birthday_email", "three_days", "used", "done"]
    assert result["decisions"] == [
        "used: promo code of birthday_email redeemed: yes (redeemed) -> then"
    ]
    assert [m["template"] for m in result["messages"]] == ["birthday"]
    sent = (await api.get(f"/leads/{lead.id}/messages")).json()
    assert "birthday_reminder" not in [m["template"] for m in sent]


async def test_a_promo_code_is_single_use_and_only_the_lead_s(api, make_lead, engine):
    """A second order with the code, or another lead's order, is refused 422 naming the field;
    the refused order is not stored."""
    lead, other = make_lead(), make_lead()
    with Session(engine) as session:
        session.add(PromoCode(code="BDAY-TEST2345", lead_id=lead.id, issued_for="t", percent_off=5))
        session.commit()

    def purchase(lead_id: str, order_id: str) -> dict:
        order = {"id": order_id, "total": 10.0, "promo_code": "BDAY-TEST2345"}
        return {"type": "purchase", "lead": lead_id, "order": order}

    foreign = await api.post("/events/track", json=purchase(other.id, "o-foreign"))
    assert foreign.status_code == 422
    [problem] = foreign.json()["detail"]
    assert problem["loc"] == ["body", "order", "promo_code"]
    assert "no promo code of this lead" in problem["msg"]
    assert (await api.post("/events/track", json=purchase(lead.id, "o-first"))).status_code == 202
    again = await api.post("/events/track", json=purchase(lead.id, "o-second"))
    assert again.status_code == 422 and "already used" in again.json()["detail"][0]["msg"]
    orders = (await api.get(f"/leads/{lead.id}/timeline")).text
    assert "o-second" not in orders


def test_the_birthday_definition_is_checked_clean(settings):
    definition = parse(yaml.safe_load((ROOT / "config/journeys/birthday.yaml").read_text()))
    found = check(definition, templates=known_templates(), lead_schema=settings.lead_schema())
    assert found == []
    [trigger] = definition.triggers
    assert trigger.kind == "date"
    assert trigger.model_dump(exclude_none=True) == {
        "date": {"attribute": "birthday", "every_year": True, "at": "09:00", "offset_days": 0}
    }
    assert definition.rules.cooldown_days == 360


def test_promo_used_naming_a_node_without_a_promo_is_a_problem_naming_the_node():
    definition = parse(
        {
            "key": "t_promo",
            "name": "t",
            "topic": "newsletter",
            "nodes": [
                {"id": "hello", "type": "message", "template": "birthday", "next": "used"},
                {
                    "id": "used",
                    "type": "condition",
                    "if": {"promo_used": "hello"},
                    "then": "done",
                    "else": "again",
                },
                {
                    "id": "again",
                    "type": "message",
                    "template": "birthday",
                    "promo_of": "nope",
                    "next": "done",
                },
                EXIT,
            ],
        }
    )
    problems = [str(p) for p in check(definition)]
    assert (
        "node used: its condition asks whether the promo code of 'hello' was used, but that is "
        "no message node with a promo" in problems
    )
    assert (
        "node again: it repeats the promo code of 'nope', which is no message node with a promo"
        in problems
    )


def test_a_segment_may_not_use_promo_used(settings):
    rules = Rules.model_validate({"all": [{"score": {"gte": 1}}, {"promo_used": "hello"}]})
    with pytest.raises(RuleError) as refused:
        Compiler(settings).check(rules)
    assert [str(p) for p in refused.value.problems] == [f"all[1].promo_used: {PROMO_IN_SEGMENT}"]


async def test_a_segment_with_promo_used_is_refused_422(api):
    response = await api.post(
        "/segments", json={"name": "used codes", "rules": {"promo_used": "birthday_email"}}
    )
    assert response.status_code == 422
    assert "a segment may not" in response.text


# Redirects -------------------------------------------------------------------------------------
def _key() -> str:
    return f"t_{uuid.uuid4().hex[:10]}"


async def publish(api, data: dict) -> None:
    assert (await api.post("/journeys", json=data)).status_code == 201, data
    published = await api.post(f"/journeys/{data['key']}/publish")
    assert published.status_code == 201, published.text


def redirecting(key: str, target: str, guard: str, **fields) -> dict:
    return {
        "key": key,
        "name": "redirects",
        "topic": "newsletter",
        "nodes": [
            {"id": "paper", "type": "message", "template": "nurture_white_paper", "next": "on"},
            {"id": "on", "type": "redirect", "journey": target, "guard": guard},
        ],
        **fields,
    }


def one_email(key: str) -> dict:
    return {
        "key": key,
        "name": "target",
        "topic": "newsletter",
        "nodes": [
            {"id": "case", "type": "message", "template": "nurture_case_study", "next": "done"},
            EXIT,
        ],
    }


async def test_a_redirect_enrolls_into_its_target_and_the_once_guard_refuses_a_second_time(
    api, client, time_skipping_env, worker, sink, make_lead, engine
):
    source, target = _key(), _key()
    await publish(api, one_email(target))
    await publish(api, redirecting(source, target, "once", rules={"cooldown_days": 0}))
    lead = make_lead()

    first = await result_after(
        client, time_skipping_env, await enroll(api, lead.id, source), timedelta(days=2)
    )
    assert (first["outcome"], first["redirected_to"]) == ("redirected", target)
    await time_skipping_env.sleep(timedelta(days=2))
    inner = await client.get_workflow_handle(f"journey-{target}-{lead.id}").result()
    assert inner["outcome"] == "exited" and [m["template"] for m in inner["messages"]] == [
        "nurture_case_study"
    ]

    second = await result_after(
        client, time_skipping_env, await enroll(api, lead.id, source), timedelta(days=2)
    )
    assert second["outcome"] == "redirect_refused"
    assert "the once guard: the lead already went through" in second["reason"]
    with Session(engine) as session:
        [refusal] = session.exec(
            select(EnrollmentRefusal).where(EnrollmentRefusal.lead_id == lead.id)
        ).all()
    assert (refusal.source, refusal.target, refusal.chain) == (source, target, [source])


async def test_a_redirect_back_to_where_the_lead_came_from_is_refused_at_run_time(
    api, client, time_skipping_env, worker, sink, make_lead
):
    """A → B → A: the chain refuses the way back (the came_from guard holds while running)."""
    a, b = _key(), _key()
    await publish(api, redirecting(a, b, "came_from"))
    await publish(api, redirecting(b, a, "came_from"))
    lead = make_lead()
    first = await result_after(
        client, time_skipping_env, await enroll(api, lead.id, a), timedelta(days=2)
    )
    assert first["outcome"] == "redirected"
    await time_skipping_env.sleep(timedelta(days=2))
    back = await client.get_workflow_handle(f"journey-{b}-{lead.id}").result()
    assert back["outcome"] == "redirect_refused"
    assert f"enrolling into {a} would loop: {a} -> {b} -> {a}" in back["reason"]
